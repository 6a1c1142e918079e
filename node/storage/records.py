"""Storage keys, value ids and signed records: the rules both a storer and a reader apply.

    mailbox key = SHA-1("kadtalk/1 mailbox" | recipient ID (20) | epoch (u32))
    prekey key  = SHA-1("kadtalk/1 prekey" | node ID (20))
    value id    = SHA-256("kadtalk/1 value id" | key | author ID | kind | sequence (u32))[:16]

The epoch is the wall-clock day (Unix seconds // `epoch_length`), so a mailbox moves to other
storers every day: squatting the IDs next to one key holds a mailbox for one epoch only. A
storer cannot invert the hash: it sees the key, not the recipient. It can check a prekey's key
(it is derived from the author's own ID), and a DELETE's (the deleter shows its key and the
epoch); a mailbox value's key only its recipient can check, and it does on reading (the
author's signature covers the key). The value id names (key, author, kind, sequence), not the
body: an author cannot make two values with one id, and copies of a value are one value.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from ..identity import node_id_of, verify
from . import wire

MAILBOX_LABEL = b"kadtalk/1 mailbox"
PREKEY_LABEL = b"kadtalk/1 prekey"
VID_LABEL = b"kadtalk/1 value id"


def mailbox_key(recipient_id: bytes, epoch: int) -> bytes:
    return hashlib.sha1(MAILBOX_LABEL + recipient_id + struct.pack(">I", epoch)).digest()


def prekey_key(node_id: bytes) -> bytes:
    return hashlib.sha1(PREKEY_LABEL + node_id).digest()


def epoch_of(wall: float, epoch_length: int) -> int:
    return int(wall // epoch_length)


def value_id(key: bytes, author: bytes, kind: int, sequence: int) -> bytes:
    return hashlib.sha256(VID_LABEL + key + author + struct.pack(">BI", kind, sequence)).digest()[
        :wire.VID_SIZE]


@dataclass(frozen=True, slots=True)
class Value:
    """A record as read (its signature checked): what fetches report."""

    vid: bytes
    key: bytes
    kind: int
    author: bytes  # the author's node ID = SHA-1(spki)
    spki: bytes
    expiry: int  # Unix seconds
    sequence: int
    body: bytes
    raw: bytes  # the record's bytes, as stored and republished


def make(identity, key: bytes, kind: int, expiry: int, sequence: int, body: bytes) -> bytes:
    """A record signed by `identity` (kadtalk.node.identity.Identity)."""
    signature = identity.sign(wire.signed_value(key, kind, expiry, sequence, body))
    return wire.record(kind, expiry, sequence, identity.public_der, body, signature)


def read(key: bytes, raw: bytes, check_signature: bool = True) -> Value | None:
    """The record `raw` stored under `key`, if well-formed, of a known kind, signed by its
    author, and (a prekey) under its author's prekey key with a 32-byte body; else None."""
    rec = wire.parse_record(raw)
    if rec is None or rec.kind not in wire.KINDS:
        return None
    author = node_id_of(rec.spki)
    if rec.kind == wire.PREKEY and (key != prekey_key(author) or len(rec.body) != 32):
        return None
    if check_signature and not verify(
            rec.spki, rec.signature,
            wire.signed_value(key, rec.kind, rec.expiry, rec.sequence, rec.body)):
        return None
    return Value(value_id(key, author, rec.kind, rec.sequence), key, rec.kind, author, rec.spki,
                 rec.expiry, rec.sequence, rec.body, raw)


def make_delete(identity, epoch: int, vids: list[bytes]) -> bytes:
    """A DELETE of `vids` from `identity`'s mailbox of `epoch` (the recipient's acknowledgement)."""
    key = mailbox_key(identity.node_id, epoch)
    signature = identity.sign(wire.signed_delete(key, epoch, vids))
    return wire.delete(key, epoch, vids, identity.public_der, signature)


def delete_valid(request: wire.Delete) -> bool:
    """Only the mailbox's owner may delete: the key is the deleter's own mailbox key for that
    epoch, and the deleter's signature covers key, epoch and value ids."""
    return (mailbox_key(node_id_of(request.spki), request.epoch) == request.key
            and verify(request.spki, request.signature,
                       wire.signed_delete(request.key, request.epoch, request.vids)))
