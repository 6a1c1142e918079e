"""Contact registries: small integer handles for (node ID, address) pairs.

Routing tables and lookups hold handles, never (ID, address) objects, so that a million simulated
tables fit in memory. Both registries expose `ids` and `addrs`, indexable by handle.

- `ContactRegistry` is a real node's own registry: IPv4 (host, port) tuples, handles recycled
  by `retain` once nothing refers to them, so a flood of fake IDs cannot grow it without bound.
- The simulator's shared registry (kadtalk.sim.registry) has the same surface and serves every
  simulated node at once.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Hashable, Iterable

from ..addresses import subnet_key

_PORT = struct.Struct(">H")


def ipv4_to_wire(addr: tuple[str, int]) -> bytes:
    return socket.inet_aton(addr[0]) + _PORT.pack(addr[1])


def ipv4_from_wire(data: bytes) -> tuple[str, int] | None:
    """The (host, port) in 6 wire bytes, or None when no peer could be reached there."""
    port = (data[4] << 8) | data[5]
    if port == 0:
        return None
    ip = ipaddress.IPv4Address(data[:4])
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return (str(ip), port)


def route_wire(addr: tuple[str, int]) -> bytes | None:
    """ROUTE_RES's 6 bytes for an IPv4 address; None for IPv6, which ROUTE_RES cannot carry
    (its contacts travel in the IPv6 extension, kadtalk.node.routing.route6)."""
    return None if ":" in addr[0] else ipv4_to_wire(addr)


def usable_ipv4(addr: tuple[str, int]) -> bool:
    """Whether a (host, port) could be a peer: the same rule as for addresses on the wire."""
    try:
        return ipv4_from_wire(ipv4_to_wire(addr)) is not None
    except (OSError, TypeError, struct.error, IndexError):
        return False


class ContactRegistry:
    """Handles for one real node: (id, (host, port)) pairs, recycled when unreferenced."""

    __slots__ = ("ids", "addrs", "_index", "_free", "_at")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.addrs: list[tuple[str, int] | None] = []
        self._index: dict[tuple[int, tuple[str, int]], int] = {}
        self._free: list[int] = []
        self._at: dict[tuple[str, int], list[int]] = {}  # address -> its handles (one ID, mostly)

    recycles = True  # `retain` frees handles (kadtalk.node.layer.Registry)
    addr_to_wire = staticmethod(route_wire)
    addr_from_wire = staticmethod(ipv4_from_wire)

    @staticmethod
    def subnet(addr: tuple[str, int]) -> Hashable:
        """The /24 network of an IPv4 address ('192.0.2' for 192.0.2.7), the /48 of an IPv6 one."""
        return subnet_key(addr[0])

    def intern(self, node_id: int, addr: tuple[str, int]) -> int:
        key = (node_id, addr)
        handle = self._index.get(key)
        if handle is None:
            if self._free:
                handle = self._free.pop()
                self.ids[handle] = node_id
                self.addrs[handle] = addr
            else:
                handle = len(self.ids)
                self.ids.append(node_id)
                self.addrs.append(addr)
            self._index[key] = handle
            self._at.setdefault(addr, []).append(handle)
        return handle

    def handles_at(self, addr: tuple[str, int]) -> list[int]:
        """Every handle with this address (the table holds at most one ID per address)."""
        return self._at.get(addr, [])

    def retain(self, live: Iterable[int]) -> int:
        """Free every handle not in `live`; return how many were freed."""
        keep = set(live)
        freed = 0
        for key, handle in list(self._index.items()):
            if handle not in keep:
                del self._index[key]
                at = self._at[key[1]]
                at.remove(handle)
                if not at:
                    del self._at[key[1]]
                self.addrs[handle] = None
                self._free.append(handle)
                freed += 1
        return freed

    def __len__(self) -> int:
        return len(self._index)
