"""Where a relay may send: the rule that keeps it from being aimed at special addresses.

A relay forwards only to the one peer address its allocation's owner permitted, and refuses to
permit any address a datagram must never be sent to from a public host on someone else's word:
unspecified (0.0.0.0/8), loopback, multicast, broadcast and the rest of 240.0.0.0/4, link-local,
port 0, the relay's own IPs (any port: a client must not reach services on the relay's host)
and the owner itself. Private and shared ranges (RFC 1918, 100.64.0.0/10) are refused too unless
`RelaySettings.forward_private` (a relay on a LAN, the tests' memory network): a public relay
must not be a way into its own network (TURN's SSRF concern, RFC 8656 section 21.1.3).
Addresses travel as ROUTE_RES contacts do (IPv4, port: 6 bytes), or as IPv6 and port (18
bytes; docs/protocol.md section 21, "IPv6"): the field's size says which. `Codec` is how: the
daemon's (host, port) tuples by default; a node hands its contact registry's wire form (the
simulator's integer addresses are 10.0.0.0 + i, port 5004 or a flow port: sim/registry.py), so
the same rules run on what the addresses are on the wire. An IPv6 (host, port) tuple (canonical
compressed, as the UDP driver spells it) always travels in 18 bytes.

IPv6 rules, the IPv4 ones carried over: unspecified, loopback, IPv4-mapped and -compatible
(::/96: IPv4 travels in 6 bytes, one spelling per address), IPv4-translated (::ffff:0:0:0/96,
SIIT), discard-only (100::/64), link-local (fe80::/10) and multicast (ff00::/8) are refused;
unique-local (fc00::/7), the old site-local (fec0::/10), local-use NAT64 (64:ff9b:1::/48) and
benchmarking (2001:2::/48, unused by the project's tests and testbed) count as private. An IPv4
address embedded by the well-known NAT64 prefix (64:ff9b::/96), 6to4 (2002::/16) or Teredo
(2001::/32: the client's address, its bits inverted) is judged by the IPv4 rules, the relay's
own IPv4 addresses included (a translator or tunnel would deliver there); so is each place
RFC 6052 may put one in a local-use NAT64 address, against the relay's own addresses (the
prefix length is the operator's). Documentation and IPv4 benchmarking ranges (2001:db8::/32,
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15) are allowed: the project's tests
and namespace testbed use them as public addresses, and the Internet routes none of them
(docs/security.md). A host counts as its /64 (`host`: node/addresses.py's rule: one machine may
use any address of its /64), so the caps per host and the relay's own addresses
(`forbidden_self`) cover the whole /64.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, Iterable

from ..routing.contacts import ipv4_from_wire, ipv4_to_wire

PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
SPECIAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))
PRIVATE6 = tuple(ipaddress.ip_network(n) for n in (
    "fc00::/7", "fec0::/10", "64:ff9b:1::/48", "2001:2::/48"))
SPECIAL6 = tuple(ipaddress.ip_network(n) for n in (
    "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "100::/64", "fe80::/10", "ff00::/8"))
V6_SIZE = 18  # IPv6 (16) and port (2)
NAT64 = bytes.fromhex("0064ff9b0000000000000000")  # 64:ff9b::/96, an IPv4 address after it
LOCAL_NAT64 = bytes.fromhex("0064ff9b0001")  # 64:ff9b:1::/48, any RFC 6052 prefix length in it
TEREDO = bytes.fromhex("20010000")  # 2001::/32: server IPv4, flags, port, client IPv4 (inverted)


def to_wire6(addr: Any) -> bytes | None:
    """The 18 wire bytes of an (IPv6, port) address in its one (canonical) spelling, or None."""
    if type(addr) is not tuple or len(addr) != 2 or type(addr[0]) is not str \
            or type(addr[1]) is not int or not 0 < addr[1] < 65536:
        return None
    try:
        packed = socket.inet_pton(socket.AF_INET6, addr[0])
    except (OSError, ValueError, UnicodeError):
        return None
    if socket.inet_ntop(socket.AF_INET6, packed) != addr[0]:
        return None  # "2001:DB8::1", "2001:db8:0::1", a scope ("%eth0"): not the one spelling
    return packed + addr[1].to_bytes(2, "big")


def from_wire6(data: bytes) -> tuple[str, int] | None:
    """The (IPv6, port) in 18 wire bytes; None for port 0."""
    port = (data[16] << 8) | data[17]
    return (socket.inet_ntop(socket.AF_INET6, bytes(data[:16])), port) if port else None


def _embedded_ipv4(packed: bytes) -> bytes | None:
    """The IPv4 address a NAT64 (64:ff9b::/96), 6to4 (2002::/16) or Teredo (2001::/32) address
    stands for: where a translator or tunnel would deliver."""
    if packed[:12] == NAT64:
        return packed[12:16]
    if packed[:2] == b"\x20\x02":
        return packed[2:6]
    if packed[:4] == TEREDO:
        return bytes(b ^ 0xFF for b in packed[12:16])
    return None


def _local_nat64_ipv4(packed: bytes) -> tuple[bytes, ...]:
    """Every IPv4 address a local-use NAT64 address (64:ff9b:1::/48) may embed: RFC 6052 puts
    it after a /48, /56, /64 or /96 prefix, skipping bits 64-71."""
    if packed[:6] != LOCAL_NAT64:
        return ()
    return (packed[6:8] + packed[9:11], packed[7:8] + packed[9:12], packed[9:13], packed[12:16])


def _forbidden_ipv4(ip: ipaddress.IPv4Address, forward_private: bool) -> str | None:
    if any(ip in net for net in SPECIAL):
        return "forbidden_peer"
    if not forward_private and any(ip in net for net in PRIVATE):
        return "forbidden_private"
    return None


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
        if type(addr) is tuple and len(addr) == 2 and type(addr[0]) is str and ":" in addr[0]:
            return to_wire6(addr)  # IPv6: 18 bytes, whatever the registry's form for IPv4
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
        """The address in a 6-byte (IPv4) or 18-byte (IPv6) field; None if unusable."""
        if len(data) == V6_SIZE:
            return from_wire6(data)
        registry = self._registry
        return from_wire(data) if registry is None else registry.addr_from_wire(data)

    def host(self, addr: Any) -> bytes | None:
        """What the caps count `addr` as: its IPv4 address (4 bytes), or its IPv6 /64 (8
        bytes); None if it has no wire form."""
        wire = self.to_wire(addr)
        return None if wire is None else wire[:8] if len(wire) == V6_SIZE else wire[:4]

    def forbidden(self, peer: Any, owner: Any, own: Iterable[Any],
                  forward_private: bool) -> str | None:
        """Why the relay must not send to `peer` for `owner` (a drop reason), or None."""
        wire = self.to_wire(peer)
        if wire is None:
            return "forbidden_peer"
        if len(wire) == V6_SIZE:
            ip6 = ipaddress.IPv6Address(wire[:16])
            if any(ip6 in net for net in SPECIAL6):
                return "forbidden_peer"
            if not forward_private and any(ip6 in net for net in PRIVATE6):
                return "forbidden_private"
            embedded = _embedded_ipv4(wire[:16])
            refused = None if embedded is None else _forbidden_ipv4(
                ipaddress.IPv4Address(embedded), forward_private)
            hosts = {wire[:8]}.union(_local_nat64_ipv4(wire[:16]))
            if embedded is not None:
                hosts.add(embedded)  # its IPv4 counts as a host too: the relay's own, say
        else:
            refused = _forbidden_ipv4(ipaddress.IPv4Address(wire[:4]), forward_private)
            hosts = {wire[:4]}
        if refused is not None:
            return refused
        if peer == owner or any(self.host(a) in hosts for a in own):
            return "forbidden_self"  # the owner, or any port of the relay's host (IPv6: its /64)
        return None

IPV4 = Codec()  # the daemon's addresses, and the relay layer's default


def forbidden(peer: Any, owner: Any, own: Iterable[Any], forward_private: bool) -> str | None:
    """Why the relay must not send to `peer` for `owner` (a drop reason), or None ((host,
    port) addresses: `Codec.forbidden`)."""
    return IPV4.forbidden(peer, owner, own, forward_private)
