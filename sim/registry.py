"""The simulator's contact registry: one for every simulated node.

Simulated node i has address i and handle i, so an honest contact costs nothing to intern. A
(ID, address) pair that is not an honest node's (an attacker claiming an ID, say) gets an extra
handle past the end. On the wire, address i is the IPv4 address 10.0.0.0 + i, port 5004.

Flow addresses: a node behind a symmetric NAT (sim/nat.py) is seen by each peer at another
port. The simulator names that outside port "address i as seen through flow port p":
the int `i | p << 24`, on the wire 10.0.0.0 + i, port p, for p in `FLOW_PORTS`. The driver
(transport/sim.py) hands NAT traversal datagrams of such a node in from its flow address, so
an address probe reports it and a rendezvous forwards it, as on a real network; a datagram
sent to a flow address reaches the node only through the flow's own peer.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any, Iterable, Sequence

from kadtalk.node.routing.messages import ENTRY_CACHE, ROUTE_RES
from kadtalk.node.routing.route6 import ROUTE6_RES, answer_formats

_FIRST = (bytes((ROUTE_RES,)), bytes((ROUTE6_RES,)))  # an answer's first byte, by ipv6
SIM_PORT = 5004
_BASE = 10 << 24  # 10.0.0.0/8
_WIRE = struct.Struct(">IH")
MAX_NODES = 1 << 24
FLOW_PORTS = range(40_000, 60_000)  # outside ports of symmetric NATs' flows (never SIM_PORT)
WIRE_CACHE = 1 << 18  # addresses whose wire form is remembered (~170 bytes each: ~45 MB a full
# cache; 1 << 16 overflowed at 10^5 peers with NAT flows, 22 % of the relay-load run's CPU)


def flow_address(addr: int, port: int) -> int:
    """`addr` as seen through its symmetric NAT's outside `port`."""
    return addr | port << 24


def split_flow(addr: int) -> tuple[int, int]:
    """(node address, port) of any simulated address (SIM_PORT for a plain one)."""
    return addr & (MAX_NODES - 1), (addr >> 24) or SIM_PORT


class SharedRegistry:
    __slots__ = ("ids", "addrs", "_extra", "_extra_at", "subnets", "_kept", "_nodes")

    def __init__(self, ids: list[int], subnets: Sequence[int] | None = None):
        """`subnets[addr]`: the /24 network address `addr` sits in, for the per-/24 bucket limit
        (default: the wire address's, addr >> 8)."""
        if len(ids) > MAX_NODES:
            raise ValueError(f"at most {MAX_NODES} simulated nodes")
        self.ids = ids
        self.addrs = list(range(len(ids)))
        self._nodes = len(ids)  # honest nodes: handle = address, for good (`intern`)
        self._extra: dict[tuple[int, int], int] | None = None
        self._extra_at: dict[int, list[int]] | None = None  # address -> its extra handles
        self.subnets = subnets
        self._kept: tuple[tuple[Any, dict[int, bytes]], ...] | None = None

    def answer_format(self, responder: int, ipv6: bool) -> tuple[bytes, Any, dict[int, bytes]]:
        """(header up to the target, entry address codec, handle -> its entry bytes) of
        `responder`'s ROUTE_RES (ROUTE6_RES if `ipv6`) answers, for messages.encode_handles:
        every node of the simulation keeps its entries here, once (handles are never given to
        another contact). Bounded as messages.entry_cache is: emptied when full."""
        kept = self._kept
        if kept is None or len(kept[ipv6][1]) >= ENTRY_CACHE:
            formats = answer_formats(0, self.addr_to_wire)
            kept = self._kept = tuple((codec, {}) for _, codec in formats)
        codec, entries = kept[ipv6]
        return _FIRST[ipv6] + responder.to_bytes(20, "big"), codec, entries

    def subnet(self, addr: int) -> int:
        return addr >> 8 if self.subnets is None else self.subnets[addr]

    def intern(self, node_id: int, addr: int) -> int:
        # an honest node's own contact (about 6 calls a datagram in a join): addrs[addr] is addr
        # below `_nodes`; above it, a handle whose address is its number is an extra's
        if addr < self._nodes and self.ids[addr] == node_id:
            return addr
        ids = self.ids
        if self._extra is None:
            self._extra, self._extra_at = {}, {}
        key = (node_id, addr)
        handle = self._extra.get(key)
        if handle is None:
            handle = self._extra[key] = len(ids)
            ids.append(node_id)
            self.addrs.append(addr)
            self._extra_at.setdefault(addr, []).append(handle)
        return handle

    def handles_at(self, addr: int) -> list[int]:
        """Every handle with this address: the node's own (handle = address) and any other ID
        claimed there (adversaries, forged requests)."""
        own = [addr] if addr < len(self.ids) and self.addrs[addr] == addr else []
        extra = self._extra_at.get(addr) if self._extra_at else None
        return own + extra if extra else own

    def __len__(self) -> int:
        return len(self.ids)

    recycles = False  # every honest node keeps its handle for good (kadtalk.node.layer.Registry)
    # Addresses are integers (IPv4) only: node code's IPv6-only views may skip their search
    # (`TableView.rendezvous6`, every keep-alive; a registry without the flag may hold IPv6).
    holds_ipv6 = False

    def retain(self, live: Iterable[int]) -> int:
        """Nothing to free: the routing layer never calls this (`recycles` is False)."""
        return 0

    # The codec converts every contact of every answer (about 11 conversions a datagram in
    # a join): memoised, they cost a dict look-up (issue 15 item 2).
    @staticmethod
    @lru_cache(maxsize=WIRE_CACHE)
    def addr_to_wire(addr: int) -> bytes:
        if addr < MAX_NODES:
            return _WIRE.pack(_BASE + addr, SIM_PORT)
        node, port = split_flow(addr)
        return _WIRE.pack(_BASE + node, port)

    @staticmethod
    @lru_cache(maxsize=WIRE_CACHE)
    def addr_from_wire(data: bytes) -> int | None:
        ip, port = _WIRE.unpack(data)
        addr = ip - _BASE
        if not 0 <= addr < MAX_NODES:
            return None
        if port == SIM_PORT:
            return addr
        return flow_address(addr, port) if port in FLOW_PORTS else None
