"""Where a relay may send: the rule that keeps it from being aimed at special addresses.

A relay forwards only to the one peer address its allocation's owner permitted, and refuses to
permit any address a datagram must never be sent to from a public host on someone else's word:
unspecified (0.0.0.0/8), loopback, multicast, broadcast and the rest of 240.0.0.0/4, link-local,
port 0, the relay's own IPs (any port: a client must not reach services on the relay's host)
and the owner itself. Private and shared ranges (RFC 1918, 100.64.0.0/10) are refused too unless
`RelaySettings.forward_private` (a relay on a LAN, the tests' memory network): a public relay
must not be a way into its own network (TURN's SSRF concern, RFC 8656 section 21.1.3).
Addresses travel as ROUTE_RES contacts do (IPv4, port: 6 bytes). `Codec` is how: the
daemon's (host, port) tuples by default; a node hands its contact registry's wire form (the
simulator's integer addresses are 10.0.0.0 + i, port 5004 or a flow port: sim/registry.py), so
the same rules run on what the addresses are on the wire.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any, Iterable

from ..routing.contacts import ipv4_from_wire, ipv4_to_wire

PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))


def to_wire(addr: Any) -> bytes | None:
    """The 6 wire bytes of an (IPv4, port) address, or None for anything else."""
    if type(addr) is not tuple or len(addr) != 2 or type(addr[0]) is not str \
            or type(addr[1]) is not int or not 0 < addr[1] < 65536:
        return None
    try:
        wire = ipv4_to_wire(addr)
    except (OSError, ValueError, TypeError):
        return None
    return wire if ipv4_from_wire(wire) == addr else None  # one spelling per address


def from_wire(data: bytes) -> Any | None:
    return ipv4_from_wire(data)


class Codec:
    """A node's addresses in relay datagrams: `to_wire` (None for an address that has no one
    6-byte spelling), `from_wire`, the `host` an address is on (the caps count hosts) and
    `forbidden`. `registry` (kadtalk.node.layer.Registry: addr_to_wire / addr_from_wire)
    gives the wire form; without one, the daemon's (IPv4 host, port) tuples."""

    __slots__ = ("_registry",)

    def __init__(self, registry: Any = None):
        self._registry = registry

    def to_wire(self, addr: Any) -> bytes | None:
        registry = self._registry
        if registry is None:
            return to_wire(addr)
        try:
            wire = registry.addr_to_wire(addr)
        except (OSError, ValueError, TypeError, IndexError, OverflowError, struct.error):
            return None
        if type(wire) is not bytes or len(wire) != 6:
            return None
        return wire if registry.addr_from_wire(wire) == addr else None  # one spelling

    def from_wire(self, data: bytes) -> Any | None:
        registry = self._registry
        return from_wire(data) if registry is None else registry.addr_from_wire(data)

    def host(self, addr: Any) -> bytes | None:
        """The IPv4 address (4 bytes) `addr` is on; None if it has no wire form."""
        wire = self.to_wire(addr)
        return None if wire is None else wire[:4]

    def forbidden(self, peer: Any, owner: Any, own: Iterable[Any],
                  forward_private: bool) -> str | None:
        """Why the relay must not send to `peer` for `owner` (a drop reason), or None."""
        wire = self.to_wire(peer)
        if wire is None:
            return "forbidden_peer"
        ip = ipaddress.IPv4Address(wire[:4])
        if any(ip in net for net in SPECIAL):
            return "forbidden_peer"
        if not forward_private and any(ip in net for net in PRIVATE):
            return "forbidden_private"
        if peer == owner or any(self.host(a) == wire[:4] for a in own):
            return "forbidden_self"
        return None


IPV4 = Codec()  # the daemon's addresses, and the relay layer's default


def forbidden(peer: Any, owner: Any, own: Iterable[Any], forward_private: bool) -> str | None:
    """Why the relay must not send to `peer` for `owner` (a drop reason), or None ((host,
    port) addresses: `Codec.forbidden`)."""
    return IPV4.forbidden(peer, owner, own, forward_private)
