"""RELAY (0x08) layouts: the second byte is the operation, every field fixed-size and big-endian.

| op | name | after type and op | size | sent by |
| --- | --- | --- | --- | --- |
| 0x01 | HELLO | nonce (16), flags (1), zero (15) | 34 | client, first |
| 0x02 | CHALLENGE | nonce (16), cookie (16) | 34 | relay, statelessly |
| 0x03 | ALLOCATE | nonce, cookie, lifetime (u16), SPKI size (u16), SPKI, signature | 38+ | client |
| 0x04 | ALLOCATED | nonce, allocation (8), lifetime (u16), reflexive address [, other] | 34 / 46 [52] | relay |
| 0x05 | REFRESH | allocation (8), lifetime (u16; 0 releases) | 12 | owner |
| 0x06 | REFRESHED | allocation (8), lifetime (u16) | 12 | relay |
| 0x07 | PERMIT | allocation (8), peer address | 16 / 28 | owner |
| 0x08 | PERMITTED | allocation (8), peer address | 16 / 28 | relay |
| 0x09 | ERROR | request op (1), code (1), reference (8) | 12 | relay, to a proven address |
| 0x0a | DATA | allocation (8), payload | 10 + payload | owner, permitted peer, relay |
| 0x0b | KNOCK | allocation (8), knock cookie (6; zero: ask for one), [token (8)], [zero (12)] | 16 / 28 [24 / 36] | knocker |
| 0x0c | KNOCKED | allocation (8), the knocker's address | 16 / 28 | relay, to the owner |
| 0x0d | KNOCK_COOKIE | allocation (8), knock cookie (6) | 16 | relay, to the knocker |
| 0x0e | PATH_CHALLENGE | nonce (8), tag (16) | 26 | a call's peer, to a new address of the other |
| 0x0f | PATH_RESPONSE | nonce (8), tag (16) | 26 | that peer, to the challenge's source |
| 0x10 | HOLD | allocation (8), token (8), payload | 18 + payload | owner |
| 0x11 | CLAIM | allocation (8), token (8), zero (pad) | 18+ (94 sent) | knocker |

The signature of ALLOCATE covers `SIGNED_LABEL | nonce | cookie | lifetime`. Every answer is
at most the size of the request it answers; a relay forwards a DATA datagram unchanged. A KNOCK
is first sent with a zero cookie; the relay answers KNOCK_COOKIE to its source, and only a KNOCK
echoing that cookie from that source proves the address (server.py says why 6 bytes).
PATH_CHALLENGE / PATH_RESPONSE are never a request to a relay: they are a call's path
validation (QUIC's, RFC 9000 §8.2) before it moves to a direct address (sent there) or to a new
relay path (the payload of DATA over it); the tag is HMAC-SHA-256 under the
sender's session key for that direction (`path_tag`), so only the call's peer makes or answers
one. Parsers return None for anything malformed; they never raise.

HOLD (session 10, docs/protocol.md §21 "Held first DATA"): the owner hands the relay the first
DATA of a call before anyone may receive it, with a token (`hold_token`: the caller's and the
callee's node IDs and the allocation, so both ends compute it and no offer changes); the relay
keeps it, one per allocation, and sends it as DATA (unchanged payload) to the first knocker
whose echo both proves its address (the cookie) and carries that token (a 24-byte echo, 36 to
an IPv6 relay address: the token after the cookie, then the pad); it never answers a HOLD.

CLAIM (session 10, later: the held DATA one round trip earlier): a knocker sends it with its
first bare KNOCK, carrying the token, zero-padded to `CLAIM_SIZE`; a relay holding DATA for
that token sends it at once, as DATA, to the CLAIM's source if it is at most `CLAIM_FACTOR` (3)
times the CLAIM's size, and grants nothing: that source becomes the permitted peer only when
its (plain) KNOCK echo proves the address. Why 3x and not 1x: a forged offer (42 bytes) may
name any address as its relay, and the knocker's datagrams to it (two bare KNOCKs and the
CLAIM: 16 + 94 + 16 = 126) stay within 3x the offer, the project's bound on what a request
draws towards an unproven address (QUIC's, RFC 9000 §8.1); a CLAIM large enough for a 1x answer
to a ~275-byte held KEY_REQ would make that offer draw 7x. So each hop is at most 3x, the
relay's once per HOLD and only for a source that knew the token. A relay that predates CLAIM
drops it (an unknown op), and the echo stays the 16 / 28 bytes every relay knows: the knocker
no longer sends the 24-byte token echo, which such a relay dropped as malformed (a relay still
takes one, from a session-10 knocker).

An address is IPv4 and port (6 bytes, as in ROUTE_RES) or IPv6 and port (18 bytes): the
datagram's size says which (the second size in the table).

The relay's address in the other family (a dual-stack relay's: what an IPv4-only owner offers
an IPv6-only callee, and the other way; docs/protocol.md §21, "Across address families"): a
HELLO whose flags byte has the `WANT_OTHER` bit (1) asks for it, the relay binds the flag into
its CHALLENGE cookie (it stays stateless), and the ALLOCATED answering an ALLOCATE with that cookie
ends with it when the relay has one: 18 bytes after a 6-byte reflexive address, 6 after an
18-byte one, so 52 bytes either way; the reflexive address is in the family the datagram
travelled (`allocated_fields`). An older relay ignores the flag (the byte was zero), an older
client never sets it, so neither meets a 52-byte ALLOCATED. A knocker whose relay is at an IPv6
address pads its KNOCKs with 12 zero bytes (28), so that the 28-byte KNOCKED an echo draws is
no larger than the echo; an IPv4 exchange is byte for byte what it was.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import NamedTuple

from ..session.wire import MAX_PACKET, MAX_SPKI

RELAY = 0x08
HELLO, CHALLENGE, ALLOCATE, ALLOCATED = 0x01, 0x02, 0x03, 0x04
REFRESH, REFRESHED, PERMIT, PERMITTED, ERROR, DATA = 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A
KNOCK, KNOCKED, KNOCK_COOKIE = 0x0B, 0x0C, 0x0D
PATH_CHALLENGE, PATH_RESPONSE = 0x0E, 0x0F
HOLD = 0x10
CLAIM = 0x11
NAMES = {HELLO: "HELLO", CHALLENGE: "CHALLENGE", ALLOCATE: "ALLOCATE", ALLOCATED: "ALLOCATED",
         REFRESH: "REFRESH", REFRESHED: "REFRESHED", PERMIT: "PERMIT", PERMITTED: "PERMITTED",
         ERROR: "ERROR", DATA: "DATA", KNOCK: "KNOCK", KNOCKED: "KNOCKED",
         KNOCK_COOKIE: "KNOCK_COOKIE", PATH_CHALLENGE: "PATH_CHALLENGE",
         PATH_RESPONSE: "PATH_RESPONSE", HOLD: "HOLD", CLAIM: "CLAIM"}

NONCE_SIZE = COOKIE_SIZE = 16
ID_SIZE = 8  # allocation number: random, a capability an off-path attacker cannot guess
ADDR_SIZE = 6  # IPv4 and port, as in ROUTE_RES
ADDR6_SIZE = 18  # IPv6 and port
V6_EXTRA = ADDR6_SIZE - ADDR_SIZE  # what an IPv6 address adds to a message (and a KNOCK's pad)
WANT_OTHER = 0x01  # HELLO's flags: tell me your address in the other family (in ALLOCATED)
ALLOCATED_OTHER = 28 + ADDR_SIZE + ADDR6_SIZE  # 52: ALLOCATED with both addresses
KNOCK_COOKIE_SIZE = 6  # where KNOCK had six zero bytes: no answer outgrows a 16-byte KNOCK
NO_COOKIE = bytes(KNOCK_COOKIE_SIZE)
PATH_NONCE_SIZE, PATH_TAG_SIZE = 8, 16
TOKEN_SIZE = 8  # a HOLD's token, and a KNOCK echo's that claims it
HOLD_LABEL = b"kadtalk/1 relay hold"
PATH_LABEL = b"kadtalk/1 path validation"
HEADER = 2 + ID_SIZE  # what DATA adds to a payload
MAX_PAYLOAD = MAX_PACKET  # the largest session datagram (MEDIA / SIGNAL / KEY messages fit too)
MAX_SIGNATURE = 1024  # RSA-8192
MAX_ALLOCATE = 38 + MAX_SPKI + MAX_SIGNATURE
SIGNED_LABEL = b"kadtalk/1 relay allocate"
# fixed sizes; ALLOCATE and DATA are variable (checked by their parsers)
SIZES = {HELLO: 34, CHALLENGE: 34, ALLOCATED: 34, REFRESH: 12, REFRESHED: 12, PERMIT: 16,
         PERMITTED: 16, ERROR: 12, KNOCK: 16, KNOCKED: 16, KNOCK_COOKIE: 16,
         PATH_CHALLENGE: 26, PATH_RESPONSE: 26}
# ... and the sizes of the same messages carrying an IPv6 address (KNOCK: padded to match)
SIZES6 = {op: SIZES[op] + V6_EXTRA for op in (ALLOCATED, PERMIT, PERMITTED, KNOCK, KNOCKED)}
# a KNOCK echo carrying a HOLD's token: 24 bytes, 36 padded for an IPv6 relay address
KNOCK_TOKEN, KNOCK6_TOKEN = SIZES[KNOCK] + TOKEN_SIZE, SIZES6[KNOCK] + TOKEN_SIZE
HOLD_HEADER = HEADER + TOKEN_SIZE  # what HOLD adds to a payload (and CLAIM's fields' size)
CLAIM_SIZE = 94  # a CLAIM as sent: 3x a 42-byte offer, less the knocker's two bare KNOCKs
CLAIM_FACTOR = 3  # a CLAIM draws a held DATA of at most 3x its size: 282 bytes for CLAIM_SIZE,
#   a KEY_REQ of up to 272 (a P-256 identity's ~263, an Ed25519 one's ~208; not RSA's)

# ERROR codes
BAD_SIGNATURE, RELAY_FULL, QUOTA, FORBIDDEN_PEER, UNPROVEN_PEER = 1, 2, 3, 4, 5
ERROR_NAMES = {BAD_SIGNATURE: "bad_signature", RELAY_FULL: "relay_full", QUOTA: "quota",
               FORBIDDEN_PEER: "forbidden_peer", UNPROVEN_PEER: "unproven_peer"}

_U16 = struct.Struct(">H")


class Allocate(NamedTuple):
    nonce: bytes
    cookie: bytes
    lifetime: int
    spki: bytes
    signature: bytes


def well_formed(data: bytes) -> bool:
    """The layout rule of the table above (the relay's and the fuzz target's one check)."""
    if len(data) < 2 or data[0] != RELAY:
        return False
    op = data[1]
    if op == DATA:
        return is_data(data)
    if op == ALLOCATE:
        return parse_allocate(data) is not None
    size = len(data)
    if op == HOLD or op == CLAIM:
        return HOLD_HEADER <= size <= HOLD_HEADER + MAX_PAYLOAD
    return SIZES.get(op) == size or SIZES6.get(op) == size or (
        op == ALLOCATED and size == ALLOCATED_OTHER) or (
        op == KNOCK and (size == KNOCK_TOKEN or size == KNOCK6_TOKEN))


def is_data(data: bytes) -> bool:
    """A well-formed DATA: the one layout check on a relay's forwarding path."""
    return HEADER <= len(data) <= HEADER + MAX_PAYLOAD and data[0] == RELAY and data[1] == DATA


def address_field(data: bytes, offset: int) -> bytes:
    """The address a PERMIT / PERMITTED / KNOCKED (offset 10) or ALLOCATED (28) carries: 6
    bytes, or 18 in the message's IPv6 size."""
    return data[offset:offset + (ADDR6_SIZE if len(data) == SIZES6.get(data[1]) else ADDR_SIZE)]


def hello(nonce: bytes, flags: int = 0) -> bytes:
    return bytes((RELAY, HELLO)) + nonce + bytes((flags,)) + bytes(COOKIE_SIZE - 1)


def hello_tag(nonce: bytes, want_other: bool) -> bytes:
    """What a CHALLENGE cookie is minted over: the HELLO's nonce, and the flag when set (an
    ALLOCATE echoing that cookie asked for the relay's other address; old cookies unchanged)."""
    return nonce + bytes((WANT_OTHER,)) if want_other else nonce


def challenge(nonce: bytes, cookie: bytes) -> bytes:
    return bytes((RELAY, CHALLENGE)) + nonce + cookie


def signed_part(nonce: bytes, cookie: bytes, lifetime: int) -> bytes:
    return SIGNED_LABEL + nonce + cookie + _U16.pack(lifetime)


def allocate(nonce: bytes, cookie: bytes, lifetime: int, spki: bytes, signature: bytes) -> bytes:
    return (bytes((RELAY, ALLOCATE)) + nonce + cookie + _U16.pack(lifetime)
            + _U16.pack(len(spki)) + spki + signature)


def parse_allocate(data: bytes) -> Allocate | None:
    if len(data) < 38 or len(data) > MAX_ALLOCATE or data[:2] != bytes((RELAY, ALLOCATE)):
        return None
    (spki_len,) = _U16.unpack_from(data, 36)
    end = 38 + spki_len
    if not 0 < spki_len <= MAX_SPKI or not 0 < len(data) - end <= MAX_SIGNATURE:
        return None
    (lifetime,) = _U16.unpack_from(data, 34)
    return Allocate(data[2:18], data[18:34], lifetime, data[38:end], data[end:])


def allocated(nonce: bytes, alloc: bytes, lifetime: int, reflexive: bytes,
              other: bytes = b"") -> bytes:
    """ALLOCATED; `other`: the relay's address in the other family than `reflexive`'s (18
    bytes after a 6-byte reflexive address, 6 after an 18-byte one), asked for by the HELLO."""
    return bytes((RELAY, ALLOCATED)) + nonce + alloc + _U16.pack(lifetime) + reflexive + other


def allocated_fields(data: bytes, ipv6: bool) -> tuple[bytes, bytes | None]:
    """(reflexive, other) address fields of a well-formed ALLOCATED that travelled over IPv6
    (`ipv6`) or IPv4: a 52-byte one carries both, its reflexive address in that family."""
    if len(data) == ALLOCATED_OTHER:
        cut = 28 + (ADDR6_SIZE if ipv6 else ADDR_SIZE)
        return data[28:cut], data[cut:]
    return address_field(data, 28), None


def refresh(alloc: bytes, lifetime: int, op: int = REFRESH) -> bytes:
    return bytes((RELAY, op)) + alloc + _U16.pack(lifetime)


def permit(alloc: bytes, peer: bytes, op: int = PERMIT) -> bytes:
    return bytes((RELAY, op)) + alloc + peer


def error(request_op: int, code: int, reference: bytes) -> bytes:
    return bytes((RELAY, ERROR, request_op, code)) + reference[:ID_SIZE]


def knock(alloc: bytes, cookie: bytes = NO_COOKIE, op: int = KNOCK, ipv6: bool = False,
          token: bytes = b"") -> bytes:
    """KNOCK (or KNOCK_COOKIE: `op`); `ipv6`: padded for a relay at an IPv6 address (a KNOCK
    only), whose KNOCKED then carries an 18-byte address; `token` (an echo's: 8 bytes, or
    none) claims the DATA the owner held for it (HOLD)."""
    return bytes((RELAY, op)) + alloc + cookie + token + (bytes(V6_EXTRA) if ipv6 else b"")


def knock_token(data: bytes) -> bytes | None:
    """The token a well-formed KNOCK carries (after its cookie), None if it has none."""
    size = len(data)
    return data[16:24] if size == KNOCK_TOKEN or size == KNOCK6_TOKEN else None


def hold(alloc: bytes, token: bytes, payload: bytes) -> bytes:
    """HOLD: the owner's first DATA for the knocker that will claim it with `token`."""
    return bytes((RELAY, HOLD)) + alloc + token + payload


def claim(alloc: bytes, token: bytes, size: int = CLAIM_SIZE) -> bytes:
    """CLAIM: the held DATA for `token`, zero-padded to `size` (the largest DATA it takes)."""
    head = bytes((RELAY, CLAIM)) + alloc + token
    return head + bytes(max(0, size - len(head)))


def hold_token(alloc: bytes, caller: bytes, callee: bytes) -> bytes:
    """The token of a call's held KEY_REQ: SHA-256 over a label, the allocation and the two
    node IDs (20 bytes each), cut to 8 bytes. Both ends know all three from the offer (no
    offer changes); it is not secret from the offer's rendezvous, it binds the held DATA to
    the call's callee (the previous callee's consent knocks, or anyone who learnt the
    allocation from an earlier offer, do not claim it)."""
    return hashlib.sha256(HOLD_LABEL + alloc + caller + callee).digest()[:TOKEN_SIZE]


def knocked(alloc: bytes, knocker: bytes) -> bytes:
    return bytes((RELAY, KNOCKED)) + alloc + knocker


def path_tag(key: bytes, op: int, nonce: bytes) -> bytes:
    """A PATH_CHALLENGE's or PATH_RESPONSE's tag under a session's key for one direction (the
    label and the op keep it apart from anything else that key makes)."""
    return hmac.new(bytes(key), PATH_LABEL + bytes((op,)) + nonce,
                    hashlib.sha256).digest()[:PATH_TAG_SIZE]


def path_check(op: int, nonce: bytes, key: bytes) -> bytes:
    return bytes((RELAY, op)) + nonce + path_tag(key, op, nonce)


def path_check_valid(data: bytes, key: bytes) -> bool:
    nonce = data[2:2 + PATH_NONCE_SIZE]
    return hmac.compare_digest(path_tag(key, data[1], nonce), data[2 + PATH_NONCE_SIZE:])


def data(alloc: bytes, payload: bytes) -> bytes:
    return bytes((RELAY, DATA)) + alloc + payload


def u16(data: bytes, offset: int) -> int:
    return _U16.unpack_from(data, offset)[0]
