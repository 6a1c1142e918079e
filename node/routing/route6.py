"""The IPv6 routing extension: ROUTE6_RES (0x0b), contacts whose addresses may be IPv6.

ROUTE_REQ / ROUTE_RES stay nanotalk's, IPv4 only. A node that can reach IPv6 peers puts the
four ASCII bytes "IPv6" at the start of its ROUTE_REQ's padding (a receiver ignores padding,
whatever it holds: docs/protocol.md section 3) and pads the request to ROUTE6_REQUEST_SIZE;
a responder that speaks the extension answers such a request with ROUTE6_RES instead of
ROUTE_RES: the same header and the same k closest contacts, each address family-tagged
(kadtalk.node.addresses: IPv4 7 bytes, IPv6 19). A responder that does not (nanotalk, older
kadtalk) answers ROUTE_RES as ever, so asking costs nothing and needs no negotiation.
docs/protocol.md section 23 is the specification.

The other address (section 23; authenticated since session 12): a dual-stack node names itself
at its IPv6 address, last, in its ROUTE6_RES to a marked request that came over IPv4
(`RoutingLayer._serve`); the requester takes that entry (`own_entry`) as an announce only from an
answer to its keyed request (the answer proved the entry's IPv4 address) and with other
addresses on (`RoutingSettings.other_addresses`), probes that address (`refused` ones aside)
and, answered there by that ID, keeps it beside the entry (`OtherAddresses`) and names the
entry there in ROUTE6_RES to requests over IPv6. Requests carry no announce (their padding is
padding, whatever it holds).

Decoding returns the routing layer's own message objects (RouteRequest with `ipv6` set,
RouteResponse with `ipv6` set), so everything past the codec is the same code for both.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Callable

from .. import addresses
from ..relay.addresses import SPECIAL6
from .messages import (
    ID_BYTES,
    MAX_CONTACTS,
    REQUEST_SIZE,
    RESPONSE_HEADER,
    ROUTE_REQ,
    ROUTE_RES,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    encode_entries,
)
from .messages import decode as decode_route
from .messages import encode_request as plain_request
from .messages import encode_response as plain_response

ROUTE6_RES = 0x0B
MARKER = b"IPv6"  # the padding's first bytes in a request that asks for ROUTE6_RES
CONTACT6_SIZE = ID_BYTES + addresses.WIRE_V6  # 39: the largest entry
MAX_ROUTE6_SIZE = RESPONSE_HEADER + MAX_CONTACTS * CONTACT6_SIZE  # 821
# A request this large may be answered in full (k = 20 IPv6 contacts) at the 3x amplification
# limit even when an address probe (41 bytes) goes out with the answer: 3 x 288 - 41 >= 821.
ROUTE6_REQUEST_SIZE = -(-(MAX_ROUTE6_SIZE + REQUEST_SIZE) // 3)  # 288


def encode_request(msg: RouteRequest) -> bytes:
    """A ROUTE_REQ asking for ROUTE6_RES: the marker, then zeros up to ROUTE6_REQUEST_SIZE
    (or the request's own size, when larger). A bare request (an address probe) stays bare."""
    head = bytes((ROUTE_REQ,)) + msg.origin.to_bytes(ID_BYTES, "big") + msg.target.to_bytes(
        ID_BYTES, "big")
    if msg.size <= REQUEST_SIZE:
        return head
    return head + MARKER + bytes(max(msg.size, ROUTE6_REQUEST_SIZE) - REQUEST_SIZE - len(MARKER))


def asks_route6(data: bytes) -> bool:
    """Whether a ROUTE_REQ datagram asks for ROUTE6_RES."""
    return data[REQUEST_SIZE:REQUEST_SIZE + len(MARKER)] == MARKER


@lru_cache(maxsize=16)
def _tagged(addr_to_wire: Callable[[Any], bytes | None] | None) -> Callable[[Any], bytes | None]:
    """ROUTE6_RES's address encoding: a (host, port) tuple as `addresses.to_wire` has it;
    any other address (the simulator's integers) in the registry's 6-byte IPv4 form, as
    ROUTE_RES carries it, behind the family byte 0x04. One function per registry codec, so
    messages.entry_cache keeps one cache for it."""
    def wire(addr: Any) -> bytes | None:
        if type(addr) is tuple or addr_to_wire is None:
            return addresses.to_wire(addr)
        data = addr_to_wire(addr)
        return bytes((addresses.FAMILY_V4,)) + data if data is not None and len(data) == 6 else None
    return wire


def encode_response(msg: RouteResponse,
                    addr_to_wire: Callable[[Any], bytes | None] | None = None) -> bytes:
    """ROUTE6_RES: type, responder, target, then {ID, family-tagged address} per contact;
    a contact whose address has no encoding (an unusable one) is left out; entries are
    remembered as ROUTE_RES's are (messages.entry_cache). `addr_to_wire`: the registry's
    IPv4 form for addresses that are not (host, port) tuples (`_tagged`)."""
    return encode_entries([bytes((ROUTE6_RES,)), msg.responder.to_bytes(ID_BYTES, "big"),
                           msg.target.to_bytes(ID_BYTES, "big")], msg.contacts,
                          _tagged(addr_to_wire))


def answer_formats(responder: int, addr_to_wire: Callable[[Any], bytes | None],
                   ) -> tuple[tuple[bytes, Callable[[Any], bytes | None]], ...]:
    """(header up to the target, entry address codec) of `responder`'s ROUTE_RES and ROUTE6_RES
    answers, in that order: with messages.encode_handles, the bytes `encode` makes of a
    RouteResponse (the target's 20 bytes, then the entries, follow the header)."""
    head = responder.to_bytes(ID_BYTES, "big")
    return ((bytes((ROUTE_RES,)) + head, addr_to_wire),
            (bytes((ROUTE6_RES,)) + head, _tagged(addr_to_wire)))


def decode_response(data: bytes, max_contacts: int = MAX_CONTACTS, ipv6: bool = True,
                    addr_from_wire: Callable[[bytes], Any] | None = None,
                    ) -> tuple[RouteResponse, int]:
    """Parse a ROUTE6_RES; return (message, contacts skipped as unusable: `ipv6` False, a node
    that cannot reach IPv6 peers, skips IPv6 ones too). MalformedMessage ('truncated',
    'bad_family', 'oversized', 'unknown_type') for anything else. `addr_from_wire`: the
    registry's reading of an IPv4 entry's 6 bytes (as ROUTE_RES's), if given."""
    size = len(data)
    if size and data[0] != ROUTE6_RES:
        raise MalformedMessage("unknown_type")
    if size < RESPONSE_HEADER:
        raise MalformedMessage("truncated")
    if size > MAX_ROUTE6_SIZE:
        raise MalformedMessage("oversized")
    contacts = []
    skipped = count = 0
    offset = RESPONSE_HEADER
    while offset < size:
        count += 1
        if count > max_contacts:
            raise MalformedMessage("oversized")
        node_id = int.from_bytes(data[offset:offset + ID_BYTES], "big")
        if offset + ID_BYTES >= size:
            raise MalformedMessage("truncated")
        family = offset + ID_BYTES
        try:
            addr, offset = addresses.from_wire(data, family)
        except ValueError as error:
            raise MalformedMessage(str(error)) from None
        if addr is not None and addr_from_wire is not None and data[family] == addresses.FAMILY_V4:
            addr = addr_from_wire(data[family + 1:offset])  # the registry's form, as ROUTE_RES
        if addr is None or (not ipv6 and addresses.is_ipv6(addr)):
            skipped += 1
        else:
            contacts.append((node_id, addr))
    msg = RouteResponse(int.from_bytes(data[1:21], "big"), int.from_bytes(data[21:41], "big"),
                        tuple(contacts), True)
    return msg, skipped


def decode(data: bytes, addr_from_wire: Callable[[bytes], Any], max_contacts: int = MAX_CONTACTS,
           ipv6: bool = True) -> tuple[RouteRequest | RouteResponse, int]:
    """Any routing datagram (ROUTE_REQ, ROUTE_RES, ROUTE6_RES); the surface of
    messages.decode, with `ipv6` set on a request that asks for ROUTE6_RES. `ipv6` False:
    IPv6 contacts are skipped (counted as unusable), as this node could not reach them."""
    if data[:1] == b"\x0b":
        return decode_response(data, max_contacts, ipv6, addr_from_wire)
    msg, skipped = decode_route(data, addr_from_wire, max_contacts)
    if type(msg) is RouteRequest and len(data) > REQUEST_SIZE and asks_route6(data):
        msg = RouteRequest(msg.origin, msg.target, msg.size, True)
    return msg, skipped


def mark(datagram: bytes) -> bytes:
    """A ROUTE_REQ datagram made to ask for ROUTE6_RES (`encode_request`'s marker and size);
    a bare request (an address probe) or anything else unchanged. An IPv4-only node marks its
    call lookups' requests so that a dual-stack responder names an IPv6-only callee
    (docs/protocol.md section 23, "Across address families")."""
    if len(datagram) <= REQUEST_SIZE or datagram[0] != ROUTE_REQ or asks_route6(datagram):
        return datagram
    return datagram[:REQUEST_SIZE] + MARKER + bytes(
        max(len(datagram), ROUTE6_REQUEST_SIZE) - REQUEST_SIZE - len(MARKER))


def entry_of(data: bytes, node_id: int) -> Any | None:
    """The address a ROUTE6_RES datagram gives `node_id` (IPv4 or IPv6), None if it names none
    or is malformed: never raises. The responder's own entry (its announce, `own_entry`) is not
    a contact it names."""
    try:
        msg, _ = decode_response(data)
    except MalformedMessage:
        return None
    if node_id == msg.responder:
        return None
    return next((addr for contact, addr in msg.contacts if contact == node_id), None)


def encode(msg: RouteRequest | RouteResponse, addr_to_wire: Callable[[Any], bytes | None],
           ipv6: bool) -> bytes:
    """A message's datagram: ROUTE6_RES for a response to a request that asked for it, a
    marked ROUTE_REQ from a node with IPv6 (`ipv6`), else nanotalk's formats."""
    if type(msg) is RouteRequest:
        return encode_request(msg) if ipv6 else plain_request(msg)
    return encode_response(msg, addr_to_wire) if msg.ipv6 else plain_response(msg, addr_to_wire)


# -- the other address: a dual-stack node's IPv6 address, named in its own answers ------------

OTHER_LIMIT = 4096  # entries whose IPv6 address a node keeps (the oldest forgotten first)
OTHER_REFRESH = 600.0  # an announce of a kept address is probed again after this long (s)
OTHER_LIFETIME = 7200.0  # a kept address is named for this long after its last proof (s)


def own_entry(contacts: Any, responder: int) -> tuple[Any, Any | None]:
    """A ROUTE6_RES's contacts split into those it names (the responder's own entries left out:
    a responder naming itself tells a lookup nothing new) and the IPv6 address of the
    responder's first own entry at IPv6, its announce (None: none). `contacts` itself when
    the responder is not among them."""
    if not any(node_id == responder for node_id, _ in contacts):
        return contacts, None
    announce = next((addr for node_id, addr in contacts
                     if node_id == responder and addresses.is_ipv6(addr)), None)
    return [c for c in contacts if c[0] != responder], announce


# Announced addresses never probed (`refused`): the relay's special IPv6 ranges (unspecified,
# loopback, IPv4-mapped and -compatible, SIIT, discard-only, link-local, multicast) and NAT64's
# (a translator would deliver the probe to an IPv4 address of the announcer's choosing).
REFUSED6 = SPECIAL6 + tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))


def refused(addr: tuple[str, int], entry: Any) -> bool:
    """Whether the IPv6 address `addr`, announced by the table entry at `entry`, must be neither
    probed nor kept (REFUSED6). Loopback (::1) only from an entry on IPv4 loopback: a datagram
    from 127.0.0.0/8 comes from this host. Unique-local (fc00::/7: the simulator's addresses)
    and documentation (2001:db8::/32: the tests' and the namespace testbed's public addresses)
    are allowed, as the relay's rule has them."""
    ip = ipaddress.IPv6Address(addr[0])
    if ip.is_loopback:
        return not (type(entry) is tuple and type(entry[0]) is str and entry[0].startswith("127."))
    return any(ip in net for net in REFUSED6)


class OtherAddresses:
    """Table entries' proven IPv6 addresses: entry handle -> (handle of the same ID at its IPv6
    address, when that address last answered a probe by that ID); and when each entry was last
    asked for its announce (`ask`). At most OTHER_LIMIT of each, the oldest forgotten first;
    the routing layer drops the ones of handles it frees."""

    __slots__ = ("_of", "_asked")

    def __init__(self) -> None:
        self._of: dict[int, tuple[int, float]] = {}
        self._asked: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._of)

    def get(self, entry: int, now: float) -> int:
        """The handle `entry` is named at to an IPv6 requester, -1 if none (or its proof is
        older than OTHER_LIFETIME)."""
        other = self._of.get(entry)
        return other[0] if other is not None and now - other[1] < OTHER_LIFETIME else -1

    def wants(self, entry: int, addr: Any, addrs: Any, now: float) -> bool:
        """Whether an announce of `addr` by `entry` is worth a probe: no address kept, another
        one, or its proof OTHER_REFRESH old."""
        other = self._of.get(entry)
        return other is None or addrs[other[0]] != addr or now - other[1] >= OTHER_REFRESH

    def due(self, entry: int, now: float) -> bool:
        """Whether to ask `entry` for its announce: none proven, and it not asked, within the
        last OTHER_REFRESH."""
        other = self._of.get(entry)
        if other is not None and now - other[1] < OTHER_REFRESH:
            return False
        asked = self._asked.get(entry)
        return asked is None or now - asked >= OTHER_REFRESH

    def ask(self, entry: int, now: float) -> None:
        asked = self._asked
        if entry in asked:
            del asked[entry]  # renewed: forgotten last
        elif len(asked) >= OTHER_LIMIT:
            del asked[next(iter(asked))]
        asked[entry] = now

    def prove(self, entry: int, other: int, now: float) -> None:
        of = self._of
        if entry in of:
            del of[entry]  # renewed: forgotten last
        elif len(of) >= OTHER_LIMIT:
            del of[next(iter(of))]
        of[entry] = (other, now)

    def name(self, handles: list[int], now: float, requester: int) -> list[int]:
        """An answer's handles for a requester that asked over IPv6: each entry at its proven
        IPv6 address where it has one; the requester itself left out."""
        of = self._of
        named = []
        for handle in handles:
            other = of.get(handle)
            if other is not None and now - other[1] < OTHER_LIFETIME:
                handle = other[0]
            if handle != requester:
                named.append(handle)
        return named

    def retain(self, live: set[int]) -> None:
        """Forget the addresses of entries not in `live`, and add the kept ones' handles to it
        (a freed handle may name another contact next)."""
        of, asked = self._of, self._asked
        for entry in [e for e in of if e not in live]:
            del of[entry]
        for entry in [e for e in asked if e not in live]:
            del asked[entry]
        live.update(other for other, _ in of.values())
