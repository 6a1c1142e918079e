"""docs/vectors/storage.json is what the generator makes, and its keys, value id, signatures
and sealed box check out with hashlib and cryptography's primitives alone."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kadtalk.node.storage import vectors

FILE = Path(__file__).resolve().parents[3] / "docs" / "vectors" / "storage.json"
DATA = json.loads(FILE.read_text())


def test_the_file_is_what_the_generator_makes():
    assert vectors.main(["--check", str(FILE)]) == 0


def test_keys_and_value_id_from_their_definitions():
    bob, alice = bytes.fromhex(DATA["bob"]["node_id"]), bytes.fromhex(DATA["alice"]["node_id"])
    keys = DATA["keys"]
    assert hashlib.sha1(bytes.fromhex(DATA["bob"]["spki"])).digest() == bob
    assert keys["epoch"] == DATA["wall_clock"] // 86_400
    assert hashlib.sha1(b"kadtalk/1 prekey" + bob).hexdigest() == keys["prekey_key"]
    mailbox = hashlib.sha1(b"kadtalk/1 mailbox" + bob + struct.pack(">I", keys["epoch"]))
    assert mailbox.hexdigest() == keys["mailbox_key"]
    vid = hashlib.sha256(b"kadtalk/1 value id" + mailbox.digest() + alice + bytes((2,))
                         + struct.pack(">I", 1)).digest()[:16]
    assert vid.hex() == keys["value_id"]


def test_the_mailbox_store_is_signed_by_alice_over_the_documented_fields():
    store = bytes.fromhex(next(m["hex"] for m in DATA["messages"]
                               if m["name"] == "STORE" and m["from"] == "alice"))
    key, rec = store[2:22], store[22:]
    kind, expiry, sequence, spki_len = struct.unpack_from(">BIIH", rec)
    spki = rec[11:11 + spki_len]
    (body_len,) = struct.unpack_from(">H", rec, 11 + spki_len)
    body = rec[13 + spki_len:13 + spki_len + body_len]
    signature = rec[13 + spki_len + body_len:]
    assert (kind, expiry, sequence) == (2, DATA["wall_clock"] + 7 * 86_400, 1)
    assert spki.hex() == DATA["alice"]["spki"] and body.hex() == DATA["sealed"]["box"]
    public = serialization.load_der_public_key(spki)
    public.verify(signature, b"kadtalk/1 value" + key + rec[:9] + body)  # raises if wrong


def test_the_sealed_box_opens_with_the_primitives_alone():
    s = {k: bytes.fromhex(v) for k, v in DATA["sealed"].items()}
    prekey = X25519PrivateKey.from_private_bytes(s["prekey_private"])
    box = s["box"]
    eph_pub = box[1:33]
    ephemeral = X25519PrivateKey.from_private_bytes(s["ephemeral_private"])
    assert box[0] == 1 and ephemeral.public_key().public_bytes_raw() == eph_pub
    shared = prekey.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    okm = HKDF(hashes.SHA256(), 44, eph_pub + s["prekey"], b"kadtalk/1 sealed"
               + s["recipient"]).derive(shared)
    inner = AESGCM(okm[:32]).decrypt(okm[32:], box[33:], box[:33] + s["recipient"] + s["prekey"])
    (spki_len,) = struct.unpack_from(">H", inner)
    spki = inner[2:2 + spki_len]
    (sig_len,) = struct.unpack_from(">H", inner, 2 + spki_len)
    signature = inner[4 + spki_len:4 + spki_len + sig_len]
    assert inner[4 + spki_len + sig_len:] == s["plaintext"] == b"see you at eight"
    assert spki.hex() == DATA["alice"]["spki"]
    alice = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(DATA["alice"]["ed25519_private_key"]))
    alice.public_key().verify(signature, b"kadtalk/1 sealed" + s["recipient"] + s["prekey"]
                              + eph_pub + s["plaintext"])


def test_every_answer_is_no_larger_than_its_request_unless_asked_for_a_full_page():
    messages = DATA["messages"]
    for request, answer in zip(messages[::2], messages[1::2]):
        assert answer["from"] == "storer" and answer["to"] == request["from"]
        assert answer["size"] <= request["size"], (request["name"], answer["name"])
