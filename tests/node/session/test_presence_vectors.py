"""docs/vectors/session-presence.json: regenerated bit for bit, and checked the way another
implementation would (AES-GCM from `cryptography`, the layouts of docs/protocol.md §15c)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kadtalk.node.session import vectors

DOCS = Path(__file__).resolve().parents[3] / "docs"
PATH = DOCS / "vectors" / "session-presence.json"
MAIN = DOCS / "vectors" / "session.json"


def test_presence_vectors_are_what_the_generator_makes():
    assert PATH.read_text() == json.dumps(vectors.generate_presence(), indent=2,
                                          ensure_ascii=False) + "\n", (
        "regenerate with: python -m kadtalk.node.session.vectors --presence "
        "-o docs/vectors/session-presence.json")
    assert vectors.main(["--presence", "--check", str(PATH)]) == 0


def test_presence_vectors_check_out_independently():
    v, main = json.loads(PATH.read_text()), json.loads(MAIN.read_text())
    assert (v["key_req"], v["key_res"]) == (main["key_req"], main["key_res"])
    seen = []
    for p in v["packets"]:
        wire = bytes.fromhex(p["wire"])
        keys = main["directions"][p["direction"]]
        nonce = bytes.fromhex(keys["salt"]) + wire[1:5]
        plaintext = bytes.fromhex(p["plaintext"])
        sealed = AESGCM(bytes.fromhex(keys["key"])).encrypt(nonce, plaintext, wire[:1])
        assert wire == wire[:5] + sealed[-16:-8] + sealed[:-16]
        kind = plaintext[0]
        if kind == 0x0a:  # CONTACT_REQ: request id (16) | note
            seen.append(("request", plaintext[1:17].hex(), plaintext[17:].decode("utf-8")))
        elif kind == 0x0b:  # CONTACT_REPLY: reply id (16) | request id (16) | verdict (1)
            assert len(plaintext) == 34
            seen.append(("reply", plaintext[1:17].hex(), plaintext[17:33].hex(), plaintext[33]))
        elif kind == 0x09:  # PRESENCE: status (1)
            assert len(plaintext) == 2
            seen.append(("presence", p["direction"], plaintext[1]))
        else:  # RECEIPT of the request, then of the reply
            assert kind == 0x08 and len(plaintext) == 17
            seen.append(("receipt", plaintext[1:].hex()))
    rid, reply = v["request"]["request_id"], v["reply"]["reply_id"]
    assert seen == [
        ("request", rid, v["request"]["note"]),
        ("receipt", rid),
        ("reply", reply, rid, 1),
        ("presence", "callee_to_caller", 1),  # away
        ("receipt", reply),
        ("presence", "caller_to_callee", 0),  # online
    ]
    # the request is the caller's first packet: it opens the callee's session
    assert v["packets"][0]["seq"] == 0 and v["packets"][0]["direction"] == "caller_to_callee"


def test_the_hex_examples_in_the_spec_are_the_vectors():
    spec = " ".join((DOCS / "protocol.md").read_text().split())
    for p in json.loads(PATH.read_text())["packets"]:
        if p["plaintext"][:2] in ("09", "0a", "0b"):
            wire = p["wire"]
            assert f"05 {wire[2:10]} {wire[10:26]} {wire[26:]}" in spec, p["plaintext"][:2]
