"""ROUTE_REQ / ROUTE_RES codec, byte-compatible with nanotalk.

ROUTE_REQ: type 0x00, origin id (20), target id (20) = 41 bytes; anything after byte 41 is padding
(padding lets a responder that limits its answers to a multiple of the request size answer in full).
ROUTE_RES: type 0x01, responder id (20), target id (20), then entries of
{id (20), IPv4 (4), port (2, big-endian)}.

IDs are Python ints (160-bit, big-endian on the wire) so that XOR distances are one operation.
Addresses are opaque to this module: the caller passes functions that turn an address into its
6 wire bytes and back (returning None for an address nobody can use).

An answer's contacts are encoded once and remembered (`entry_cache`): a node answers from the
same few hundred table entries again and again, and building each entry (ID to bytes, address
to bytes) was a third of a node's CPU per answer (issue 15).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

ROUTE_REQ = 0x00
ROUTE_RES = 0x01

ID_BYTES = 20
ID_BITS = 160
REQUEST_SIZE = 1 + 2 * ID_BYTES  # 41
RESPONSE_HEADER = REQUEST_SIZE
CONTACT_SIZE = ID_BYTES + 6  # 26
MAX_CONTACTS = 20  # nanotalk's k; a response never carries more
MAX_REQUEST_SIZE = RESPONSE_HEADER + MAX_CONTACTS * CONTACT_SIZE  # padding never exceeds a full answer

Addr = Hashable


class MalformedMessage(ValueError):
    """A routing datagram that does not parse; `reason` is a short counter name."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# Frozen dataclasses whose __init__ sets the slots through their descriptors: the generated
# one looks up `object.__setattr__` for every field, and a join makes one message a datagram
# (about half as costly this way; issue 15 item 2). Still frozen: assigning a field raises.


@dataclass(frozen=True, slots=True, init=False)
class RouteRequest:
    origin: int
    target: int
    size: int = field(default=REQUEST_SIZE, compare=False)  # bytes on the wire, padding included
    ipv6: bool = field(default=False, compare=False)  # asks for ROUTE6_RES (route6.py)

    def __init__(self, origin: int, target: int, size: int = REQUEST_SIZE,
                 ipv6: bool = False) -> None:
        set_origin, set_target, set_size, set_ipv6 = _REQUEST_SLOTS
        set_origin(self, origin)
        set_target(self, target)
        set_size(self, size)
        set_ipv6(self, ipv6)


@dataclass(frozen=True, slots=True, init=False)
class RouteResponse:
    responder: int
    target: int
    contacts: Sequence[tuple[int, Any]]  # (id, address) pairs, closest first
    ipv6: bool = field(default=False, compare=False)  # sent as ROUTE6_RES (route6.py)

    def __init__(self, responder: int, target: int, contacts: Sequence[tuple[int, Any]],
                 ipv6: bool = False) -> None:
        set_responder, set_target, set_contacts, set_ipv6 = _RESPONSE_SLOTS
        set_responder(self, responder)
        set_target(self, target)
        set_contacts(self, contacts)
        set_ipv6(self, ipv6)


_REQUEST_SLOTS = tuple(getattr(RouteRequest, name).__set__
                       for name in ("origin", "target", "size", "ipv6"))
_RESPONSE_SLOTS = tuple(getattr(RouteResponse, name).__set__
                        for name in ("responder", "target", "contacts", "ipv6"))


def id_to_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(ID_BYTES, "big")


def id_from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "big")


_REQ_HEAD, _RES_HEAD = bytes((ROUTE_REQ,)), bytes((ROUTE_RES,))  # a datagram's first byte


def encode_request(msg: RouteRequest, padding: int | None = None) -> bytes:
    """The request's 41 bytes, then `padding` zero bytes (default: up to `msg.size`)."""
    if padding is None:
        padding = msg.size - REQUEST_SIZE
    data = _REQ_HEAD + msg.origin.to_bytes(ID_BYTES, "big") + msg.target.to_bytes(ID_BYTES, "big")
    return data + bytes(padding) if padding else data


ENTRY_CACHE = 1 << 16  # contacts whose entry one address codec remembers (~170 bytes each)
_CODECS = 16  # address codecs remembered at once (tests make their own)
_entries: dict[Callable[[Any], bytes | None], dict[tuple[int, Any], bytes]] = {}


def entry_cache(addr_to_wire: Callable[[Any], bytes | None]) -> dict[tuple[int, Any], bytes]:
    """(ID, address) -> its entry (ID bytes, then `addr_to_wire`'s; b"" for an address the
    format cannot carry), filled as contacts are first sent. Bounded: emptied when full, so a
    10^6-node simulation holds at most ENTRY_CACHE entries per codec, not one per contact."""
    cache = _entries.get(addr_to_wire)
    if cache is None or len(cache) >= ENTRY_CACHE:
        if cache is None and len(_entries) >= _CODECS:
            _entries.clear()
        cache = _entries[addr_to_wire] = {}
    return cache


_REJECTED: tuple = ()  # a decoded entry whose address `addr_from_wire` rejects
# an answer of n entries split into its n entries' bytes by one C call (a list of 20 slices
# was a fifth of `decode`'s time, issue 15 item 2)
_SPLIT = tuple(struct.Struct(f"{CONTACT_SIZE}s" * n).unpack_from for n in range(MAX_CONTACTS + 1))
_decoded: dict[Callable[[bytes], Any], dict[bytes, tuple]] = {}


def decoded_entries(addr_from_wire: Callable[[bytes], Any]) -> dict[bytes, tuple]:
    """The decoding side of `entry_cache`: a ROUTE_RES entry's 26 bytes -> (ID, address), or
    _REJECTED for an address `addr_from_wire` rejects, filled as entries are first read (a node
    hears the same few thousand contacts again and again; reading each entry was a third of
    the decoder's time, issue 15). Bounded as `entry_cache` is. `addr_from_wire` must be a
    function of its bytes alone, as `addr_to_wire` of its address."""
    cache = _decoded.get(addr_from_wire)
    if cache is None or len(cache) >= ENTRY_CACHE:
        if cache is None and len(_decoded) >= _CODECS:
            _decoded.clear()
        cache = _decoded[addr_from_wire] = {}
    return cache


def encode_entries(parts: list[bytes], contacts: Sequence[tuple[int, Any]],
                   addr_to_wire: Callable[[Any], bytes | None]) -> bytes:
    """`parts` (a header), then each contact's entry, joined; a contact whose address
    `addr_to_wire` cannot encode (None: IPv6 in ROUTE_RES) is left out."""
    cache = _entries.get(addr_to_wire)  # entry_cache(addr_to_wire), its common case inline
    if cache is None or len(cache) >= ENTRY_CACHE:
        cache = entry_cache(addr_to_wire)
    first = len(parts)
    parts += map(cache.get, contacts)  # the look-ups in C; a miss is None, which join refuses
    try:
        return b"".join(parts)
    except TypeError:  # a contact not sent before (the common case raises nothing to check)
        pass
    for i, contact in enumerate(contacts, first):
        if parts[i] is None:
            wire = addr_to_wire(contact[1])
            entry = b"" if wire is None else contact[0].to_bytes(ID_BYTES, "big") + wire
            parts[i] = cache[contact] = entry
    return b"".join(parts)


def encode_handles(parts: list[bytes], handles: Sequence[int], kept: dict[int, bytes],
                   ids: Sequence[int], addrs: Sequence[Any],
                   addr_to_wire: Callable[[Any], bytes | None]) -> bytes:
    """`encode_entries` for contacts given as registry handles (`ids[h]`, `addrs[h]`), each
    entry kept in `kept` by handle: a node's answer then joins its table's entries without
    building an (ID, address) pair per contact or hashing one (issue 15). The caller owns
    `kept` (one per format) and must empty it whenever its registry gives a handle to another
    contact."""
    first = len(parts)
    parts += map(kept.get, handles)
    try:
        return b"".join(parts)
    except TypeError:  # a handle not sent before
        pass
    for i, handle in enumerate(handles, first):
        if parts[i] is None:
            parts[i] = kept[handle] = encode_entries([], ((ids[handle], addrs[handle]),),
                                                     addr_to_wire)
    return b"".join(parts)


def encode_response(msg: RouteResponse, addr_to_wire: Callable[[Any], bytes | None]) -> bytes:
    return encode_entries([_RES_HEAD, msg.responder.to_bytes(ID_BYTES, "big"),
                           msg.target.to_bytes(ID_BYTES, "big")], msg.contacts, addr_to_wire)


def encode(
    msg: RouteRequest | RouteResponse, addr_to_wire: Callable[[Any], bytes], padding: int | None = None
) -> bytes:
    if type(msg) is RouteRequest:
        return encode_request(msg, padding)
    return encode_response(msg, addr_to_wire)


def decode(
    data: bytes, addr_from_wire: Callable[[bytes], Any], max_contacts: int = MAX_CONTACTS
) -> tuple[RouteRequest | RouteResponse, int]:
    """Parse one routing datagram; return (message, contacts skipped as unusable).

    Raises MalformedMessage for anything that is not a well-formed ROUTE_REQ or ROUTE_RES.
    Contacts whose address `addr_from_wire` rejects are left out, not fatal.
    """
    size = len(data)
    if size < REQUEST_SIZE:
        raise MalformedMessage("truncated")
    kind = data[0]
    if kind == ROUTE_REQ:
        if size > MAX_REQUEST_SIZE:
            raise MalformedMessage("oversized")
        origin, target = int.from_bytes(data[1:21], "big"), int.from_bytes(data[21:41], "big")
        return RouteRequest(origin, target, size), 0
    if kind != ROUTE_RES:
        raise MalformedMessage("unknown_type")
    body = size - RESPONSE_HEADER
    if body % CONTACT_SIZE:
        raise MalformedMessage("bad_length")
    count = body // CONTACT_SIZE
    if count > max_contacts:
        raise MalformedMessage("oversized")
    cache = _decoded.get(addr_from_wire)  # decoded_entries(addr_from_wire), its common case
    if cache is None or len(cache) >= ENTRY_CACHE:
        cache = decoded_entries(addr_from_wire)
    entries = (_SPLIT[count](data, RESPONSE_HEADER) if count <= MAX_CONTACTS else
               [data[offset:offset + CONTACT_SIZE]
                for offset in range(RESPONSE_HEADER, size, CONTACT_SIZE)])
    # each entry read once, then a look-up; a miss (None) or a rejected one (()) is falsy
    contacts = tuple(filter(None, map(cache.get, entries)))
    skipped = 0
    if len(contacts) < len(entries):
        read = []
        for entry in entries:
            contact = cache.get(entry)
            if contact is None:
                addr = addr_from_wire(entry[ID_BYTES:])
                contact = cache[entry] = (_REJECTED if addr is None
                                          else (int.from_bytes(entry[:ID_BYTES], "big"), addr))
            if contact:
                read.append(contact)
            else:
                skipped += 1
        contacts = tuple(read)
    msg = RouteResponse(
        int.from_bytes(data[1:21], "big"), int.from_bytes(data[21:41], "big"), contacts
    )
    return msg, skipped
