"""docs/vectors/session.json: regenerated bit for bit, and checked the way another implementation
would check it (with nothing but `cryptography` and the spec in docs/protocol.md)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kadtalk.node.session import vectors

PATH = Path(__file__).resolve().parents[3] / "docs" / "vectors" / "session.json"


def test_vectors_file_is_what_the_generator_makes():
    assert PATH.read_text() == vectors.render(), (
        "regenerate with: python -m kadtalk.node.session.vectors -o docs/vectors/session.json"
    )
    assert vectors.main(["--check", str(PATH)]) == 0


def test_vectors_layout():
    v = json.loads(PATH.read_text())
    assert set(v) == {"caller", "callee", "key_req", "key_res", "shared_secret", "transcript_hash",
                      "directions", "packets"}
    for side in ("caller", "callee"):
        assert set(v[side]) == {"id", "identity_key_pem", "ephemeral_key_pem"}
    assert set(v["directions"]) == {"caller_to_callee", "callee_to_caller"}
    assert {p["type"] for p in v["packets"]} == {4, 5}
    assert {p["direction"] for p in v["packets"]} == {"caller_to_callee", "callee_to_caller"}


def _spki(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _split_key_message(data: bytes) -> tuple[bytes, bytes, int, bytes]:
    """type | eph SPKI | identity SPKI | u64 ms | signature (DER lengths, short or 0x81/0x82)."""
    def der_end(offset: int) -> int:
        first = data[offset + 1]
        if first < 0x80:
            return offset + 2 + first
        n = first & 0x7F
        return offset + 2 + n + int.from_bytes(data[offset + 2: offset + 2 + n], "big")
    eph_end = der_end(1)
    id_end = der_end(eph_end)
    (ts,) = struct.unpack(">Q", data[id_end:id_end + 8])
    return data[1:eph_end], data[eph_end:id_end], ts, data[id_end + 8:]


def test_vectors_check_out_independently():
    v = json.loads(PATH.read_text())
    load = lambda pem: serialization.load_pem_private_key(pem.encode(), None)  # noqa: E731
    keys = {side: {kind: load(v[side][f"{kind}_key_pem"]) for kind in ("identity", "ephemeral")}
            for side in ("caller", "callee")}
    ids = {side: bytes.fromhex(v[side]["id"]) for side in keys}
    for side in keys:
        assert hashlib.sha1(_spki(keys[side]["identity"])).digest() == ids[side]

    req, res = bytes.fromhex(v["key_req"]), bytes.fromhex(v["key_res"])
    assert req[0] == 0x02 and res[0] == 0x03
    eph_a, id_a, ts_req, sig_a = _split_key_message(req)
    eph_b, id_b, ts_res, sig_b = _split_key_message(res)
    assert eph_a == _spki(keys["caller"]["ephemeral"]) and id_a == _spki(keys["caller"]["identity"])
    assert eph_b == _spki(keys["callee"]["ephemeral"]) and id_b == _spki(keys["callee"]["identity"])
    assert len(eph_a) == len(eph_b) == 91

    u64 = lambda n: struct.pack(">Q", n)  # noqa: E731
    signed_req = b"kadtalk/1 KEY_REQ" + ids["caller"] + ids["callee"] + u64(ts_req) + eph_a
    keys["caller"]["identity"].public_key().verify(sig_a, signed_req, ec.ECDSA(hashes.SHA256()))
    fields = ids["caller"] + ids["callee"] + u64(ts_req) + u64(ts_res) + eph_a + eph_b
    keys["callee"]["identity"].public_key().verify(
        sig_b, b"kadtalk/1 KEY_RES" + fields, ec.ECDSA(hashes.SHA256()))

    secret = keys["caller"]["ephemeral"].exchange(ec.ECDH(), keys["callee"]["ephemeral"].public_key())
    assert secret == keys["callee"]["ephemeral"].exchange(ec.ECDH(), keys["caller"]["ephemeral"].public_key())
    assert secret.hex() == v["shared_secret"]
    th = hashlib.sha256(b"kadtalk/1 transcript" + fields).digest()
    assert th.hex() == v["transcript_hash"]
    for direction, info in (("caller_to_callee", b"kadtalk/1 caller to callee"),
                            ("callee_to_caller", b"kadtalk/1 callee to caller")):
        okm = HKDF(hashes.SHA256(), 40, th, info).derive(secret)
        assert okm[:32].hex() == v["directions"][direction]["key"]
        assert okm[32:].hex() == v["directions"][direction]["salt"]

    for packet in v["packets"]:
        d = v["directions"][packet["direction"]]
        wire = bytes.fromhex(packet["wire"])
        assert wire[0] == packet["type"] and int.from_bytes(wire[1:5], "big") == packet["seq"]
        nonce = bytes.fromhex(d["salt"]) + wire[1:5]
        dec = Cipher(algorithms.AES(bytes.fromhex(d["key"])),
                     modes.GCM(nonce, wire[5:13], min_tag_length=8)).decryptor()
        dec.authenticate_additional_data(wire[:1])
        assert (dec.update(wire[13:]) + dec.finalize()).hex() == packet["plaintext"]


def test_the_worked_example_in_the_spec_matches_the_vectors():
    v = json.loads(PATH.read_text())
    spec = (PATH.parents[1] / "protocol.md").read_text()
    ring = v["packets"][0]
    assert ring["plaintext"] == "01" and ring["seq"] == 0
    wire = ring["wire"]
    assert f"`{wire[:2]} {wire[2:10]} {wire[10:26]} {wire[26:]}`" in spec
    assert v["directions"]["caller_to_callee"]["salt"] in spec
    assert v["key_req"][-6:] in spec and str(int(v["key_req"][366:382], 16)) in spec


# -- docs/vectors/session-extra.json: verify-only (review should-fix 6) --------------------------

EXTRA = PATH.with_name("session-extra.json")


def _verify(spki: bytes, signature: bytes, data: bytes) -> None:
    """protocol.md section 8's signature rules, written out with nothing but `cryptography`."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, padding, rsa

    key = serialization.load_der_public_key(spki)
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    elif isinstance(key, dsa.DSAPublicKey):
        key.verify(signature, data, hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    else:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def test_extra_vectors_of_other_identity_types_verify_independently():
    from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa

    v = json.loads(EXTRA.read_text())
    expected = {"rsa-pss": rsa.RSAPublicKey, "dsa": dsa.DSAPublicKey,
                "ed25519": ed25519.Ed25519PublicKey, "p384": ec.EllipticCurvePublicKey}
    assert set(v["handshakes"]) == set(expected)
    u64 = lambda n: struct.pack(">Q", n)  # noqa: E731
    for kind, h in v["handshakes"].items():
        req, res = bytes.fromhex(h["key_req"]), bytes.fromhex(h["key_res"])
        eph_a, id_a, ts_req, sig_a = _split_key_message(req)
        eph_b, id_b, ts_res, sig_b = _split_key_message(res)
        assert (ts_req, ts_res) == (v["timestamps"]["ts_req"], v["timestamps"]["ts_res"])
        assert isinstance(serialization.load_der_public_key(id_a), expected[kind])
        a, b = hashlib.sha1(id_a).digest(), hashlib.sha1(id_b).digest()
        assert (a.hex(), b.hex()) == (h["caller_id"], h["callee_id"])
        _verify(id_a, sig_a, b"kadtalk/1 KEY_REQ" + a + b + u64(ts_req) + eph_a)
        fields = a + b + u64(ts_req) + u64(ts_res) + eph_a + eph_b
        _verify(id_b, sig_b, b"kadtalk/1 KEY_RES" + fields)
        if kind == "rsa-pss":  # salt length 32 exactly: the rule is not "any salt"
            from cryptography.hazmat.primitives.asymmetric import padding

            key = serialization.load_der_public_key(id_a)
            key.verify(sig_a, b"kadtalk/1 KEY_REQ" + a + b + u64(ts_req) + eph_a,
                       padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())


def test_extra_vectors_are_accepted_by_the_session_layer():
    from random import Random

    from kadtalk.node.identity import Identity
    from kadtalk.node.session import SessionLayer

    v = json.loads(EXTRA.read_text())
    for h in v["handshakes"].values():
        req, res = bytes.fromhex(h["key_req"]), bytes.fromhex(h["key_res"])
        # a stand-in callee with the right ID: only the signature checks matter here
        callee = SessionLayer(Identity.generate(), Random(0), None, vectors.EPOCH)
        callee.own_id = bytes.fromhex(h["callee_id"])
        callee.receive_datagram(req, "caller", vectors.CALLEE_DELAY)
        assert callee.pending_handshakes == 1, dict(callee.stats)


def test_negative_vectors_are_dropped_for_the_stated_reason_and_change_nothing():
    from random import Random

    from kadtalk.node.session import SessionLayer

    main = json.loads(PATH.read_text())
    v = json.loads(EXTRA.read_text())
    key = serialization.load_pem_private_key(main["callee"]["identity_key_pem"].encode(), None)
    ident = vectors.DeterministicIdentity.of(key)
    eph = serialization.load_pem_private_key(main["callee"]["ephemeral_key_pem"].encode(), None)
    assert v["negative"]
    for case in v["negative"]:
        callee = SessionLayer(ident, Random(0), None, vectors.EPOCH, lambda: eph)
        if case["after"] == "key_req":
            callee.receive_datagram(bytes.fromhex(main["key_req"]), "caller", vectors.CALLEE_DELAY)
            assert callee.pending_handshakes == 1
        before = callee.snapshot()
        callee.datagrams_to_send(vectors.CALLEE_DELAY)
        counts = dict(callee.stats)
        callee.receive_datagram(bytes.fromhex(case["datagram"]), "caller", vectors.CALLEE_DELAY)
        changed = {k for k, n in callee.stats.items() if n != counts.get(k, 0)}
        assert changed == {case["reason"]}, case["name"]
        after = callee.snapshot()
        assert after[:-3] + after[-2:] == before[:-3] + before[-2:], case["name"]


def test_the_field_by_field_key_req_in_the_spec_is_the_vectors_key_req_in_order():
    """Every row of the spec's KEY_REQ table, in order, is the next field of the vector's
    KEY_REQ (rows with "..." give its first and last bytes), and they add up to all of it."""
    v = json.loads(PATH.read_text())
    spec = (PATH.parents[1] / "protocol.md").read_text()
    block = spec.split("field by field:", 1)[1].split("```", 2)[1]
    data = bytes.fromhex(v["key_req"])
    eph, ident, ts, sig = _split_key_message(data)
    fields = [data[:1], eph[:27], eph[27:], ident, struct.pack(">Q", ts), sig]
    rows = [line.split()[0] for line in block.strip().splitlines()]
    assert len(rows) == len(fields)
    for row, field in zip(rows, fields):
        if "..." in row:
            head, tail = row.split("...")
            assert field.hex().startswith(head) and field.hex().endswith(tail), row
        else:
            assert field.hex() == row
    assert b"".join(fields) == data and f"KEY_REQ ({len(data)} bytes)" in spec
    assert f"ts_req = {ts}" in block and f"ECDSA signature ({len(sig)})" in block
    assert f"identity SPKI ({len(ident)}, P-256)" in block


COOKIE = PATH.with_name("session-cookie.json")


def test_cookie_vectors_are_what_the_generator_makes():
    assert vectors.main(["--cookie", "--check", str(COOKIE)]) == 0, (
        "regenerate with: python -m kadtalk.node.session.vectors --cookie "
        "-o docs/vectors/session-cookie.json")


def test_cookie_vectors_check_out_independently():
    """From docs/protocol.md section 11a alone: tag = SHA-256(KEY_REQ)[:16]; cookie =
    HMAC-SHA-256(secret, "kadtalk/1 cookie" | IPv4 (4) | port (2) | tag)[:16]; COOKIE_REPLY =
    07 01 tag cookie; COOKIE_RETRY = 07 02 cookie KEY_REQ; the KEY_RES it draws is the main one."""
    import hmac
    import ipaddress

    v = json.loads(COOKIE.read_text())
    main = json.loads(PATH.read_text())
    req = bytes.fromhex(v["key_req"])
    assert v["key_req"] == main["key_req"] and v["key_res"] == main["key_res"]
    tag = hashlib.sha256(req).digest()[:16]
    addr = (ipaddress.IPv4Address(v["caller_address"]["ip"]).packed
            + struct.pack(">H", v["caller_address"]["port"]))
    cookie = hmac.new(bytes.fromhex(v["cookie_secret"]), b"kadtalk/1 cookie" + addr + tag,
                      hashlib.sha256).digest()[:16]
    assert (v["request_tag"], v["cookie"]) == (tag.hex(), cookie.hex())
    assert bytes.fromhex(v["cookie_reply"]) == b"\x07\x01" + tag + cookie
    assert len(bytes.fromhex(v["cookie_reply"])) == 34
    assert bytes.fromhex(v["cookie_retry"]) == b"\x07\x02" + cookie + req
