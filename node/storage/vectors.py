"""Generate the storage test vectors (docs/vectors/storage.json) by running a storer and two
clients' records through the real code.

Deterministic: identities are Ed25519 keys from fixed seeds (Ed25519 signatures are
deterministic), the prekey and the ephemeral key are X25519 keys from fixed seeds, nonces and
sequences are fixed. Usage:

    python -m kadtalk.node.storage.vectors                 # print the JSON
    python -m kadtalk.node.storage.vectors -o FILE         # write it
    python -m kadtalk.node.storage.vectors --check FILE    # exit 1 if FILE differs
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .. import vectorfile
from ..identity import Identity
from . import records, sealed, wire
from .layer import StorageLayer
from .settings import StorageSettings

WALL = 1_767_225_600  # 2026-01-01T00:00:00Z
ALICE, BOB, STORER = ("192.0.2.1", 5004), ("192.0.2.2", 5004), ("198.51.100.1", 5004)


def seeded(label: str, n: int = 32) -> bytes:
    return hashlib.sha256(f"kadtalk storage vector {label}".encode()).digest()[:n]


def ed25519_identity(label: str) -> Identity:
    return Identity.from_private_key(ed25519.Ed25519PrivateKey.from_private_bytes(seeded(label)))


def raw_private(identity: Identity) -> str:
    return identity.private_key.private_bytes(serialization.Encoding.Raw,
                                              serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption()).hex()


def generate() -> dict[str, Any]:
    alice, bob = ed25519_identity("alice"), ed25519_identity("bob")
    storer = StorageLayer(ed25519_identity("storer"), StorageSettings(), WALL)
    names = {ALICE: "alice", BOB: "bob", STORER: "storer"}
    messages: list[dict[str, Any]] = []

    def send(data: bytes, src: Any, note: str = "") -> None:
        messages.append(_entry(data, src, STORER, names, note))
        storer.receive_datagram(data, src, 0.0)
        for out, dst in storer.datagrams_to_send(0.0):
            messages.append(_entry(out, STORER, dst, names))

    prekey = X25519PrivateKey.from_private_bytes(seeded("bob prekey"))
    prekey_pub = sealed.public_bytes(prekey)
    pk_key = records.prekey_key(bob.node_id)
    send(wire.store(pk_key, records.make(bob, pk_key, wire.PREKEY, WALL + 2 * 86_400, WALL,
                                         prekey_pub)), BOB, "bob's prekey, under his prekey key")
    send(wire.find_value(pk_key, seeded("nonce 1", 8), 0, 300), ALICE,
         "padded to 300 bytes: the answer may be as large")
    ephemeral = X25519PrivateKey.from_private_bytes(seeded("alice ephemeral"))
    plaintext = b"see you at eight"
    box = sealed.seal(prekey_pub, bob.node_id, alice, plaintext, ephemeral)
    epoch = records.epoch_of(WALL, 86_400)
    mb_key = records.mailbox_key(bob.node_id, epoch)
    mail = records.make(alice, mb_key, wire.MAILBOX, WALL + 7 * 86_400, 1, box)
    send(wire.store(mb_key, mail), ALICE, "a sealed message in bob's mailbox of this epoch")
    send(wire.find_value(mb_key, seeded("nonce 2", 8), 0, wire.MAX_ANSWER), BOB)
    vid = records.read(mb_key, mail).vid
    send(records.make_delete(bob, epoch, [vid]), BOB, "bob's signed acknowledgement")
    send(wire.find_value(mb_key, seeded("nonce 3", 8), 0), BOB, "the smallest FIND_VALUE")
    return {
        "description": "STORAGE (0x0a) of docs/protocol.md section 22: bob publishes a prekey; "
                       "alice finds it, seals a message to it and stores it in bob's mailbox; "
                       "bob fetches, opens and deletes it (one storer)",
        "wall_clock": WALL,
        "alice": {"ed25519_private_key": raw_private(alice), "spki": alice.public_der.hex(),
                  "node_id": alice.node_id.hex()},
        "bob": {"ed25519_private_key": raw_private(bob), "spki": bob.public_der.hex(),
                "node_id": bob.node_id.hex()},
        "keys": {"prekey_key": pk_key.hex(), "epoch": epoch, "mailbox_key": mb_key.hex(),
                 "value_id": vid.hex()},
        "sealed": {"prekey_private": seeded("bob prekey").hex(), "prekey": prekey_pub.hex(),
                   "ephemeral_private": seeded("alice ephemeral").hex(),
                   "recipient": bob.node_id.hex(), "plaintext": plaintext.hex(),
                   "box": box.hex()},
        "messages": messages,
    }


def _entry(data: bytes, src: Any, dst: Any, names: dict, note: str = "") -> dict[str, Any]:
    entry = {"name": wire.NAMES[data[1]], "from": names[src], "to": names[dst],
             "size": len(data), "hex": data.hex()}
    if note:
        entry["note"] = note
    return entry


def main(argv: list[str] | None = None) -> int:
    return vectorfile.main("storage", generate, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
