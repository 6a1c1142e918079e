"""The IPv6 routing extension: ROUTE6_RES (0x0b), contacts whose addresses may be IPv6.

ROUTE_REQ / ROUTE_RES stay nanotalk's, IPv4 only. A node that can reach IPv6 peers puts the
four ASCII bytes "IPv6" at the start of its ROUTE_REQ's padding (a receiver ignores padding,
whatever it holds: docs/protocol.md section 3) and pads the request to ROUTE6_REQUEST_SIZE;
a responder that speaks the extension answers such a request with ROUTE6_RES instead of
ROUTE_RES: the same header and the same k closest contacts, each address family-tagged
(kadtalk.node.addresses: IPv4 7 bytes, IPv6 19). A responder that does not (nanotalk, older
kadtalk) answers ROUTE_RES as ever, so asking costs nothing and needs no negotiation.
docs/protocol.md section 23 is the specification.

Decoding returns the routing layer's own message objects (RouteRequest with `ipv6` set,
RouteResponse with `ipv6` set), so everything past the codec is the same code for both.
"""

from __future__ import annotations

from typing import Any, Callable

from .. import addresses
from .messages import (
    ID_BYTES,
    MAX_CONTACTS,
    REQUEST_SIZE,
    RESPONSE_HEADER,
    ROUTE_REQ,
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


def encode_response(msg: RouteResponse) -> bytes:
    """ROUTE6_RES: type, responder, target, then {ID, family-tagged address} per contact;
    a contact whose address has no encoding (the simulator's, an unusable one) is left out;
    entries are remembered as ROUTE_RES's are (messages.entry_cache)."""
    return encode_entries([bytes((ROUTE6_RES,)), msg.responder.to_bytes(ID_BYTES, "big"),
                           msg.target.to_bytes(ID_BYTES, "big")], msg.contacts, addresses.to_wire)


def decode_response(data: bytes, max_contacts: int = MAX_CONTACTS,
                    ipv6: bool = True) -> tuple[RouteResponse, int]:
    """Parse a ROUTE6_RES; return (message, contacts skipped as unusable: `ipv6` False, a node
    that cannot reach IPv6 peers, skips IPv6 ones too). MalformedMessage ('truncated',
    'bad_family', 'oversized', 'unknown_type') for anything else."""
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
        try:
            addr, offset = addresses.from_wire(data, offset + ID_BYTES)
        except ValueError as error:
            raise MalformedMessage(str(error)) from None
        if addr is None or (not ipv6 and ":" in addr[0]):
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
        return decode_response(data, max_contacts, ipv6)
    msg, skipped = decode_route(data, addr_from_wire, max_contacts)
    if type(msg) is RouteRequest and len(data) > REQUEST_SIZE and asks_route6(data):
        msg = RouteRequest(msg.origin, msg.target, msg.size, True)
    return msg, skipped


def encode(msg: RouteRequest | RouteResponse, addr_to_wire: Callable[[Any], bytes | None],
           ipv6: bool) -> bytes:
    """A message's datagram: ROUTE6_RES for a response to a request that asked for it, a
    marked ROUTE_REQ from a node with IPv6 (`ipv6`), else nanotalk's formats."""
    if type(msg) is RouteRequest:
        return encode_request(msg) if ipv6 else plain_request(msg)
    return encode_response(msg) if msg.ipv6 else plain_response(msg, addr_to_wire)
