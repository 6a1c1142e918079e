"""docs/vectors/session-messages.json: regenerated bit for bit, and checked the way another
implementation would (AES-GCM from `cryptography`, the layouts of docs/protocol.md §15b)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kadtalk.node.session import vectors

DOCS = Path(__file__).resolve().parents[3] / "docs"
PATH = DOCS / "vectors" / "session-messages.json"
MAIN = DOCS / "vectors" / "session.json"


def test_message_vectors_are_what_the_generator_makes():
    assert PATH.read_text() == json.dumps(vectors.generate_messages(), indent=2,
                                          ensure_ascii=False) + "\n", (
        "regenerate with: python -m kadtalk.node.session.vectors --messages "
        "-o docs/vectors/session-messages.json")
    assert vectors.main(["--messages", "--check", str(PATH)]) == 0


def test_message_vectors_check_out_independently():
    v, main = json.loads(PATH.read_text()), json.loads(MAIN.read_text())
    assert (v["key_req"], v["key_res"]) == (main["key_req"], main["key_res"])  # the same exchange
    texts, receipts = [], []
    for p in v["packets"]:
        wire = bytes.fromhex(p["wire"])
        keys = main["directions"][p["direction"]]
        nonce = bytes.fromhex(keys["salt"]) + wire[1:5]
        # the wire carries 8 of the 16 tag bytes: recompute the full tag and compare its head
        plaintext = bytes.fromhex(p["plaintext"])
        sealed = AESGCM(bytes.fromhex(keys["key"])).encrypt(nonce, plaintext, wire[:1])
        assert wire == wire[:5] + sealed[-16:-8] + sealed[:-16]
        assert wire[0] == 0x05 and int.from_bytes(wire[1:5], "big") == p["seq"]
        if plaintext[0] == 0x07:  # TEXT: id (16) | seq (u32) | sent (u64 ms) | UTF-8 text
            message_id, seq, sent = struct.unpack(">16sIQ", plaintext[1:29])
            texts.append((p["direction"], message_id.hex(), seq, sent,
                          plaintext[29:].decode("utf-8")))
        else:  # RECEIPT: id (16)
            assert plaintext[0] == 0x08 and len(plaintext) == 17
            receipts.append((p["direction"], plaintext[1:].hex()))
    sides = {"caller": "caller_to_callee", "callee": "callee_to_caller"}
    assert texts == [(sides[m["from"]], m["message_id"], m["seq"], m["sent_ms"], m["text"])
                     for m in v["messages"]]
    # each TEXT acknowledged by its id, the other way
    assert [(d, i) for d, i in receipts] == [("callee_to_caller", v["messages"][0]["message_id"]),
                                             ("caller_to_callee", v["messages"][1]["message_id"])]
    # the caller's first packet (sequence 0) is the TEXT: no RING opens a session for messages
    assert v["packets"][0]["seq"] == 0 and v["packets"][0]["plaintext"].startswith("07")


def test_the_hex_example_in_the_spec_is_the_vectors_first_text():
    spec = (DOCS / "protocol.md").read_text()
    first = json.loads(PATH.read_text())["packets"][0]
    wire = first["wire"]
    assert f"05 {wire[2:10]} {wire[10:26]} {wire[26:]}" in " ".join(spec.split())
