"""STORAGE (0x0a) layouts: the second byte is the operation, integers big-endian.

| op | name | after type and op | size |
| --- | --- | --- | --- |
| 0x01 | STORE | key (20), record | 22 + record |
| 0x02 | STORED | key (20), value id (16), status (1) | 39 |
| 0x03 | FIND_VALUE | key (20), nonce (8), cursor (u16), zero padding (3 or more) | 35 to 1,400 |
| 0x04 | FOUND | key, nonce, total (u16), next (u16), count (u8), records, contacts | 35+ |
| 0x05 | DELETE | key, epoch (u32), count (u8), value ids (16 each), SPKI size, SPKI, sig. | 29+ |

FOUND's records are each u16 size | record; its contacts (26 bytes each, as in ROUTE_RES)
follow when the key holds no value.
| 0x06 | DELETED | key (20), removed (u8) | 23 |

A record (the stored value, signed by its author):
kind (1) | expiry (u32, Unix seconds) | sequence (u32) | SPKI size (u16) | SPKI | body size (u16)
| body | signature (the rest), the signature over `VALUE_LABEL | key | kind | expiry | sequence |
body`. Parsers return None for anything malformed; they never raise.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..session.wire import MAX_SPKI

STORAGE = 0x0A
STORE, STORED, FIND_VALUE, FOUND, DELETE, DELETED = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
NAMES = {STORE: "STORE", STORED: "STORED", FIND_VALUE: "FIND_VALUE", FOUND: "FOUND",
         DELETE: "DELETE", DELETED: "DELETED"}
PREKEY, MAILBOX = 1, 2  # record kinds
KINDS = (PREKEY, MAILBOX)
# STORED status
OK, DUPLICATE, QUOTA, FULL, GONE, STALE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {OK: "stored", DUPLICATE: "duplicate", QUOTA: "quota", FULL: "full",
                GONE: "deleted", STALE: "stale"}

KEY_SIZE, VID_SIZE, NONCE_SIZE, CONTACT_SIZE = 20, 16, 8, 26
MAX_SIGNATURE = 1024  # RSA-8192
MAX_ANSWER = 1400  # the largest FOUND (and FIND_VALUE): fits an Ethernet MTU with IPv6 headers
FIND_SIZE = 35  # the smallest FIND_VALUE: as large as an empty FOUND
FOUND_HEADER = 35
MAX_RECORD = MAX_ANSWER - FOUND_HEADER - 2  # one record always fits a full page: 1,363
MAX_VIDS = 32  # value ids per DELETE
NO_MORE = 0xFFFF  # FOUND's `next` when the page is the last
VALUE_LABEL = b"kadtalk/1 value"
DELETE_LABEL = b"kadtalk/1 delete"
RECORD_HEADER = 11  # kind, expiry, sequence, SPKI size
STORED_SIZE, DELETED_SIZE = 39, 23

_U16, _U32 = struct.Struct(">H"), struct.Struct(">I")
_HEAD = struct.Struct(">BIIH")


class Record(NamedTuple):
    kind: int
    expiry: int
    sequence: int
    spki: bytes
    body: bytes
    signature: bytes


class Found(NamedTuple):
    key: bytes
    nonce: bytes
    total: int
    next: int
    records: tuple[bytes, ...]
    contacts: tuple[bytes, ...]  # 26-byte entries: ID (20), IPv4 (4), port (2)


class Delete(NamedTuple):
    key: bytes
    epoch: int
    vids: tuple[bytes, ...]
    spki: bytes
    signature: bytes


def signed_value(key: bytes, kind: int, expiry: int, sequence: int, body: bytes) -> bytes:
    return VALUE_LABEL + key + _HEAD.pack(kind, expiry, sequence, 0)[:9] + body


def record(kind: int, expiry: int, sequence: int, spki: bytes, body: bytes,
           signature: bytes) -> bytes:
    return _HEAD.pack(kind, expiry, sequence, len(spki)) + spki + _U16.pack(len(body)) + body \
        + signature


def parse_record(data: bytes) -> Record | None:
    if not RECORD_HEADER + 2 < len(data) <= MAX_RECORD:
        return None
    kind, expiry, sequence, spki_len = _HEAD.unpack_from(data)
    body_at = RECORD_HEADER + spki_len + 2
    if not 0 < spki_len <= MAX_SPKI or body_at > len(data):
        return None
    (body_len,) = _U16.unpack_from(data, body_at - 2)
    end = body_at + body_len
    if not 0 < len(data) - end <= MAX_SIGNATURE:
        return None
    return Record(kind, expiry, sequence, data[RECORD_HEADER:body_at - 2], data[body_at:end],
                  data[end:])


def store(key: bytes, rec: bytes) -> bytes:
    return bytes((STORAGE, STORE)) + key + rec


def stored(key: bytes, vid: bytes, status: int) -> bytes:
    return bytes((STORAGE, STORED)) + key + vid + bytes((status,))


def find_value(key: bytes, nonce: bytes, cursor: int, size: int = FIND_SIZE) -> bytes:
    head = bytes((STORAGE, FIND_VALUE)) + key + nonce + _U16.pack(cursor)
    return head + bytes(max(0, min(size, MAX_ANSWER) - len(head)))


def found(key: bytes, nonce: bytes, total: int, next_cursor: int, records: list[bytes],
          contacts: list[bytes] = ()) -> bytes:
    parts = [bytes((STORAGE, FOUND)), key, nonce, _U16.pack(total), _U16.pack(next_cursor),
             bytes((len(records),))]
    for rec in records:
        parts += (_U16.pack(len(rec)), rec)
    return b"".join(parts) + b"".join(contacts)


def parse_found(data: bytes) -> Found | None:
    if not FOUND_HEADER <= len(data) <= MAX_ANSWER or data[:2] != bytes((STORAGE, FOUND)):
        return None
    total, nxt = _U16.unpack_from(data, 30)[0], _U16.unpack_from(data, 32)[0]
    at, records = FOUND_HEADER, []
    for _ in range(data[34]):
        if at + 2 > len(data):
            return None
        end = at + 2 + _U16.unpack_from(data, at)[0]
        if end > len(data):
            return None
        records.append(data[at + 2:end])
        at = end
    if (len(data) - at) % CONTACT_SIZE:
        return None
    contacts = tuple(data[i:i + CONTACT_SIZE] for i in range(at, len(data), CONTACT_SIZE))
    return Found(data[2:22], data[22:30], total, nxt, tuple(records), contacts)


def signed_delete(key: bytes, epoch: int, vids: tuple[bytes, ...] | list[bytes]) -> bytes:
    return DELETE_LABEL + key + _U32.pack(epoch) + b"".join(vids)


def delete(key: bytes, epoch: int, vids: list[bytes] | tuple[bytes, ...], spki: bytes,
           signature: bytes) -> bytes:
    return (bytes((STORAGE, DELETE)) + key + _U32.pack(epoch) + bytes((len(vids),))
            + b"".join(vids) + _U16.pack(len(spki)) + spki + signature)


def parse_delete(data: bytes) -> Delete | None:
    if len(data) < 29 or data[:2] != bytes((STORAGE, DELETE)):
        return None
    count = data[26]
    at = 27 + VID_SIZE * count
    if not 0 < count <= MAX_VIDS or at + 2 > len(data):
        return None
    (spki_len,) = _U16.unpack_from(data, at)
    end = at + 2 + spki_len
    if not 0 < spki_len <= MAX_SPKI or not 0 < len(data) - end <= MAX_SIGNATURE:
        return None
    vids = tuple(data[i:i + VID_SIZE] for i in range(27, at, VID_SIZE))
    return Delete(data[2:22], _U32.unpack_from(data, 22)[0], vids, data[at + 2:end], data[end:])


def deleted(key: bytes, removed: int) -> bytes:
    return bytes((STORAGE, DELETED)) + key + bytes((min(removed, 255),))


def well_formed(data: bytes) -> bool:
    """The layout rule of the table above (the layer's and the fuzz target's one check)."""
    if len(data) < 2 or data[0] != STORAGE:
        return False
    op = data[1]
    if op == STORE:
        return parse_record(data[22:]) is not None
    if op == STORED:  # an unknown status is malformed: a client names every refusal it reports
        return len(data) == STORED_SIZE and data[-1] in STATUS_NAMES
    if op == FIND_VALUE:
        return FIND_SIZE <= len(data) <= MAX_ANSWER
    if op == FOUND:
        return parse_found(data) is not None
    if op == DELETE:
        return parse_delete(data) is not None
    if op == DELETED:
        return len(data) == DELETED_SIZE
    return False


def u16(data: bytes, offset: int) -> int:
    return _U16.unpack_from(data, offset)[0]
