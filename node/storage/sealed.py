"""Sealed boxes: a message for a recipient's signed prekey, from an authenticated sender.

X3DH's one-way core (Signal's "X3DH" specification, with the prekey as the recipient's only DH
key): the sender makes an ephemeral X25519 key, and

    shared      = X25519(ephemeral, prekey)
    key | nonce = HKDF-SHA-256(shared, salt = ephemeral public | prekey, info = "kadtalk/1
                  sealed" | recipient ID, 44 bytes)  (an ephemeral key per box: the nonce once)
    box         = 0x01 | ephemeral public (32) | AES-256-GCM(key, nonce, inner, aad = 0x01 |
                  ephemeral public | recipient ID | prekey)
    inner       = u16 SPKI size | sender SPKI | u16 signature size | signature | plaintext
    signature   = sender identity's signature over "kadtalk/1 sealed" | recipient ID | prekey |
                  ephemeral public | plaintext

So a storer sees ciphertext and its size only; the recipient learns who sent it from inside the
box (the signature binds the sender to this recipient, prekey and ephemeral key: a box cannot be
re-addressed). Forward secrecy comes from the prekey's rotation: once its private half is
dropped, boxes sealed to it cannot be opened. `open_box` raises SealedError, never anything
else, for any box it cannot open.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..identity import node_id_of, verify
from ..session.wire import MAX_SPKI

VERSION = 1
LABEL = b"kadtalk/1 sealed"
OVERHEAD = 1 + 32 + 16  # version, ephemeral key, GCM tag (plus the inner SPKI and signature)
_U16 = struct.Struct(">H")
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SealedError(Exception):
    """The box cannot be opened: malformed, not for this prekey, altered, or badly signed."""


class Opened(NamedTuple):
    sender: bytes  # the sender's node ID = SHA-1(spki)
    spki: bytes
    plaintext: bytes


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(*_RAW)


def _keys(shared: bytes, ephemeral: bytes, prekey: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 44, ephemeral + prekey, LABEL + recipient).derive(shared)
    return okm[:32], okm[32:]


def seal(prekey: bytes, recipient: bytes, sender, plaintext: bytes,
         ephemeral: X25519PrivateKey | None = None) -> bytes:
    """Seal `plaintext` for the holder of `prekey` (32-byte X25519 public key) whose node ID is
    `recipient`, signed by `sender` (an Identity). `ephemeral` only for test vectors."""
    eph = ephemeral or X25519PrivateKey.generate()
    eph_pub = public_bytes(eph)
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(prekey))
    except ValueError as e:  # not 32 bytes, or a low-order point (all-zero secret)
        raise SealedError(f"unusable prekey: {e}") from None
    key, nonce = _keys(shared, eph_pub, prekey, recipient)
    signature = sender.sign(LABEL + recipient + prekey + eph_pub + plaintext)
    inner = (_U16.pack(len(sender.public_der)) + sender.public_der + _U16.pack(len(signature))
             + signature + plaintext)
    head = bytes((VERSION,)) + eph_pub
    return head + AESGCM(key).encrypt(nonce, inner, head + recipient + prekey)


def open_box(prekey: X25519PrivateKey, recipient: bytes, box: bytes) -> Opened:
    """Open a box sealed to `prekey`'s public half for `recipient` (our node ID)."""
    if len(box) < OVERHEAD or box[0] != VERSION:
        raise SealedError("not a sealed box")
    head, eph_pub = box[:33], box[1:33]
    prekey_pub = public_bytes(prekey)
    try:
        shared = prekey.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        key, nonce = _keys(shared, eph_pub, prekey_pub, recipient)
        inner = AESGCM(key).decrypt(nonce, box[33:], head + recipient + prekey_pub)
    except (ValueError, InvalidTag):
        raise SealedError("not for this prekey, or altered") from None
    if len(inner) < 4:
        raise SealedError("inner part truncated")
    spki_len = _U16.unpack_from(inner)[0]
    at = 2 + spki_len
    if not 0 < spki_len <= MAX_SPKI or at + 2 > len(inner):
        raise SealedError("inner part malformed")
    sig_end = at + 2 + _U16.unpack_from(inner, at)[0]
    if sig_end > len(inner):
        raise SealedError("inner part malformed")
    spki, signature, plaintext = inner[2:at], inner[at + 2:sig_end], inner[sig_end:]
    if not verify(spki, signature, LABEL + recipient + prekey_pub + eph_pub + plaintext):
        raise SealedError("bad sender signature")
    return Opened(node_id_of(spki), spki, plaintext)
