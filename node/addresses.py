"""IP addresses as node code sees them: the keys that limits count by, and a family-tagged
wire encoding for extensions that carry IPv6.

An address is a (host, port) tuple: IPv4 as "192.0.2.7", IPv6 in canonical compressed form
("2001:db8::7"; the UDP driver turns IPv4-mapped IPv6 into plain IPv4, so one peer has one
spelling). Where a limit counts a host, an IPv6 address counts by its /64: one host (or one
LAN) usually holds a whole /64 and may pick new addresses in it at will (privacy addresses, RFC
8981), so counting single IPv6 addresses would let one machine pose as 2^64 hosts. Where a
limit counts an IPv4 /24 (one operator's network), IPv6 counts a /48 (a site's usual
allocation). Anything else (the simulator's integer addresses, malformed strings) is its own
key, never an error.

Wire encoding (docs/protocol.md section 23): family (1: 0x04 or 0x06), address (4 or 16),
port (2, big-endian): 7 or 19 bytes.
"""

from __future__ import annotations

import socket
from typing import Any, Hashable

FAMILY_V4, FAMILY_V6 = 0x04, 0x06
WIRE_V4, WIRE_V6 = 7, 19  # bytes of an encoded address, family byte included
_AF = {FAMILY_V4: (socket.AF_INET, 4), FAMILY_V6: (socket.AF_INET6, 16)}
_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped


def is_ipv6(addr: Any) -> bool:
    """Whether an address is an IPv6 (host, port) tuple."""
    return type(addr) is tuple and len(addr) == 2 and type(addr[0]) is str and ":" in addr[0]


def text(addr: Any) -> str:
    """An address for people and logs: "192.0.2.7:5004", "[2001:db8::7]:5004" (the brackets
    keep the port apart, RFC 3986; `transport.udp.parse_hostport` reads both back)."""
    if type(addr) is tuple and len(addr) == 2:
        host, port = addr
        return f"[{host}]:{port}" if type(host) is str and ":" in host else f"{host}:{port}"
    return str(addr)


def prefix(host: Any, bits: int) -> Hashable:
    """The network of the first `bits` bits of an IPv6 host, as 'net::/bits'; the host
    unchanged when it is not an IPv6 address string (no error: limits must not crash)."""
    if type(host) is not str or ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return host
    whole, rest = divmod(bits, 8)
    kept = packed[:whole]
    if rest and whole < 16:
        kept += bytes((packed[whole] & (0xFF << (8 - rest)) & 0xFF,))
    return socket.inet_ntop(socket.AF_INET6, kept + bytes(16 - len(kept))) + f"/{bits}"


def host_key(host: Any) -> Hashable:
    """What a per-host limit counts: an IPv4 host itself, an IPv6 host's /64."""
    return prefix(host, 64)


def subnet_key(host: Any) -> Hashable:
    """What a per-network limit counts: an IPv4 /24 ('192.0.2' for 192.0.2.7, as the routing
    table's `max_per_subnet` always has), an IPv6 /48."""
    if type(host) is str and ":" not in host:
        return host.rpartition(".")[0]
    return prefix(host, 48)


def usable(family: int, packed: bytes, port: int) -> bool:
    """Whether a peer could be reached there: ROUTE_RES's rule for IPv4 (not 0.0.0.0,
    255.255.255.255, multicast, port 0); for IPv6 not ::, multicast (ff00::/8), link-local
    (fe80::/10: it needs an interface to mean anything), nor IPv4-mapped (sent as IPv4)."""
    if port == 0:
        return False
    if family == FAMILY_V4:
        return packed not in (bytes(4), b"\xff" * 4) and not 224 <= packed[0] <= 239
    return not (packed == bytes(16) or packed[0] == 0xFF
                or (packed[0] == 0xFE and packed[1] & 0xC0 == 0x80) or packed[:12] == _MAPPED)


def to_wire(addr: Any) -> bytes | None:
    """The 7 or 19 wire bytes of an (IPv4 or IPv6, port) address; None for anything else
    (the simulator's addresses, a malformed host, an unusable address)."""
    if type(addr) is not tuple or len(addr) != 2 or type(addr[0]) is not str \
            or type(addr[1]) is not int or not 0 < addr[1] < 65536:
        return None
    family = FAMILY_V6 if ":" in addr[0] else FAMILY_V4
    try:
        packed = socket.inet_pton(_AF[family][0], addr[0])
    except (OSError, ValueError):
        return None
    if not usable(family, packed, addr[1]):
        return None
    return bytes((family,)) + packed + addr[1].to_bytes(2, "big")


def from_wire(data: bytes, offset: int = 0) -> tuple[tuple[str, int] | None, int]:
    """(address or None when unusable, offset after it); ValueError when the bytes are cut
    short or the family is neither 0x04 nor 0x06 (the datagram is malformed)."""
    if offset >= len(data) or data[offset] not in _AF:
        raise ValueError("bad_family")
    family = data[offset]
    af, size = _AF[family]
    end = offset + 1 + size + 2
    if end > len(data):
        raise ValueError("truncated")
    packed = data[offset + 1:offset + 1 + size]
    port = (data[end - 2] << 8) | data[end - 1]
    if not usable(family, packed, port):
        return None, end
    return (socket.inet_ntop(af, packed), port), end
