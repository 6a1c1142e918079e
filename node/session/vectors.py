"""Generate the session test vectors (docs/vectors/session.json) by running two session layers.

Everything is deterministic: identity and ephemeral keys are derived from fixed labels, the
signatures are deterministic ECDSA (RFC 6979), the timestamps fixed. Usage:

    python -m kadtalk.node.session.vectors                 # print the JSON
    python -m kadtalk.node.session.vectors -o FILE         # write it
    python -m kadtalk.node.session.vectors --check FILE    # exit 1 if FILE differs
    python -m kadtalk.node.session.vectors --extra -o docs/vectors/session-extra.json
    python -m kadtalk.node.session.vectors --cookie -o docs/vectors/session-cookie.json

`--extra` makes the verify-only vectors: KEY_REQ / KEY_RES between identities of other key
types (RSA-PSS, DSA, Ed25519, P-384; RSA-PSS and DSA signatures are randomised, so the file is
checked by verifying it, not by regenerating it) and negative datagrams that a receiver of the
main vectors' call must drop, each with the reason this implementation counts.

`--messages` makes the text-message vectors (issue 14): the main file's key exchange opened for
messages (the same KEY_REQ and KEY_RES: nothing on the wire says "messages only"), then a TEXT
each way and its RECEIPT, sealed under the main file's keys. Deterministic: checked by
regenerating.

`--presence` makes the presence and contact-request vectors (issue 14 item 3, §15c): the main
file's key exchange opened by a CONTACT_REQ, its RECEIPT, the callee's CONTACT_REPLY (accepted)
and its RECEIPT, then a PRESENCE each way (now that each is the other's contact), all sealed
under the main file's keys. Deterministic: checked by regenerating.

`--cookie` makes the retry-cookie vectors (issue 17): the main KEY_REQ from a fixed UDP address,
a fixed cookie secret, the callee's COOKIE_REPLY, the caller's COOKIE_RETRY, and the KEY_RES the
retry draws (the main file's KEY_RES, byte for byte). Deterministic: checked by regenerating.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from random import Random
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .handshake import ephemeral_spki, id_of, session_keys, shared_secret
from .layer import SessionLayer, SessionSettings
from .wire import ANSWER, HANGUP, HANGUP_NORMAL, KEY_REQ, MEDIA, RING, SIGNAL, encode_signal

EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z: the caller's wall clock at now = 0
CALLEE_DELAY = 0.15  # the callee answers the KEY_REQ 150 ms later (by its clock)
_P256 = ec.SECP256R1()
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # the P-256 group order


def _key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(label.encode()).digest(), "big") % (_N - 1) + 1
    return ec.derive_private_key(scalar, _P256)


@dataclass(frozen=True)
class DeterministicIdentity:
    """An Identity look-alike that signs with RFC 6979 ECDSA, so the vectors are reproducible."""

    private_key: ec.EllipticCurvePrivateKey
    public_der: bytes
    node_id: bytes

    @classmethod
    def of(cls, key: ec.EllipticCurvePrivateKey) -> DeterministicIdentity:
        der = ephemeral_spki(key.public_key())
        return cls(key, der, id_of(der))

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def generate() -> dict[str, Any]:
    keys = {name: _key(f"kadtalk test vector {name}") for name in
            ("caller identity", "caller ephemeral", "callee identity", "callee ephemeral")}
    caller_id = DeterministicIdentity.of(keys["caller identity"])
    callee_id = DeterministicIdentity.of(keys["callee identity"])
    settings = SessionSettings()
    caller = SessionLayer(caller_id, Random(0), settings, EPOCH, lambda: keys["caller ephemeral"])
    callee = SessionLayer(callee_id, Random(0), settings, EPOCH, lambda: keys["callee ephemeral"])

    packets: list[dict[str, Any]] = []

    def deliver(src: SessionLayer, dst: SessionLayer, direction: str, now: float) -> list[bytes]:
        out = [data for data, _ in src.datagrams_to_send(now)]
        for data in out:
            dst.receive_datagram(data, direction, now)
        return out

    def record(direction: str, wire: bytes, kind: int, seq: int, plaintext: bytes) -> None:
        packets.append({"direction": direction, "type": kind, "seq": seq,
                        "plaintext": plaintext.hex(), "wire": wire.hex()})

    session = caller.call(int.from_bytes(callee_id.node_id, "big"), 0.0, addr="callee")
    (key_req,) = deliver(caller, callee, "caller", CALLEE_DELAY)
    (key_res,) = deliver(callee, caller, "callee", CALLEE_DELAY)
    (ring,) = deliver(caller, callee, "caller", CALLEE_DELAY)
    record("caller_to_callee", ring, SIGNAL, 0, encode_signal(RING))
    callee.answer(1.0)
    (answer,) = deliver(callee, caller, "callee", 1.0)
    record("callee_to_caller", answer, SIGNAL, 0, encode_signal(ANSWER))
    incoming = next(iter(callee.sessions))
    for seq, (src, dst, sid, direction, text) in enumerate(
        [(caller, callee, session, "caller_to_callee", b"first 20 ms of Opus"),
         (callee, caller, incoming, "callee_to_caller", b"and the answer"),
         (caller, callee, session, "caller_to_callee", bytes(80))],
    ):
        wire_seq = src.send_media(sid, text, 1.02 + seq * 0.02)
        (wire,) = deliver(src, dst, direction.split("_")[0], 1.02 + seq * 0.02)
        record(direction, wire, MEDIA, wire_seq, text)
    callee.hang_up(2.0)
    hangups = deliver(callee, caller, "callee", 2.0)
    hangup = encode_signal(HANGUP, bytes((HANGUP_NORMAL,)))
    record("callee_to_caller", hangups[0], SIGNAL, 2, hangup)

    ts_req = round(EPOCH * 1000)
    ts_res = round((EPOCH + CALLEE_DELAY) * 1000)
    caller_eph = ephemeral_spki(keys["caller ephemeral"].public_key())
    callee_eph = ephemeral_spki(keys["callee ephemeral"].public_key())
    secret = shared_secret(keys["caller ephemeral"], keys["callee ephemeral"].public_key())
    th, forward, backward = session_keys(
        secret, caller_id.node_id, callee_id.node_id, ts_req, ts_res, caller_eph, callee_eph
    )
    return {
        "caller": {"id": caller_id.node_id.hex(), "identity_key_pem": _pem(keys["caller identity"]),
                   "ephemeral_key_pem": _pem(keys["caller ephemeral"])},
        "callee": {"id": callee_id.node_id.hex(), "identity_key_pem": _pem(keys["callee identity"]),
                   "ephemeral_key_pem": _pem(keys["callee ephemeral"])},
        "key_req": key_req.hex(),
        "key_res": key_res.hex(),
        "shared_secret": secret.hex(),
        "transcript_hash": th.hex(),
        "directions": {
            "caller_to_callee": {"key": forward.key.hex(), "salt": forward.salt.hex()},
            "callee_to_caller": {"key": backward.key.hex(), "salt": backward.salt.hex()},
        },
        "packets": packets,
    }


def render() -> str:
    return json.dumps(generate(), indent=2) + "\n"


EXTRA_TYPES = {
    # name: (how the identity key is made, the signature rule of protocol.md section 8)
    "rsa-pss": ("RSA 2048, e = 65537", "RSA-PSS, SHA-256, MGF1-SHA-256, salt length 32"),
    "dsa": ("DSA 2048 (q 256 bits)", "DSA with SHA-256, DER signature"),
    "ed25519": ("Ed25519", "Ed25519 (pure), 64 bytes"),
    "p384": ("ECDSA on secp384r1", "ECDSA with SHA-256, DER signature"),
}


def _private_key(kind: str):
    from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa

    if kind == "rsa-pss":
        return rsa.generate_private_key(65537, 2048)
    if kind == "dsa":
        return dsa.generate_private_key(2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP384R1())


def _handshake(kind: str, ephemeral: dict[str, ec.EllipticCurvePrivateKey]) -> dict[str, Any]:
    from ..identity import Identity

    caller_id = Identity.from_private_key(_private_key(kind))
    callee_id = Identity.from_private_key(_private_key(kind))
    settings = SessionSettings()
    caller = SessionLayer(caller_id, Random(0), settings, EPOCH, lambda: ephemeral["caller"])
    callee = SessionLayer(callee_id, Random(0), settings, EPOCH, lambda: ephemeral["callee"])
    caller.call(int.from_bytes(callee_id.node_id, "big"), 0.0, addr="callee")
    ((key_req, _),) = caller.datagrams_to_send(0.0)
    callee.receive_datagram(key_req, "caller", CALLEE_DELAY)
    ((key_res, _),) = callee.datagrams_to_send(CALLEE_DELAY)
    caller.receive_datagram(key_res, "callee", CALLEE_DELAY)
    assert caller.sessions and not caller.stats and not callee.stats, "handshake failed"
    return {
        "identity_keys": EXTRA_TYPES[kind][0], "signature": EXTRA_TYPES[kind][1],
        "caller_id": caller_id.node_id.hex(), "callee_id": callee_id.node_id.hex(),
        "key_req": key_req.hex(), "key_res": key_res.hex(),
    }


def _negatives(main: dict[str, Any]) -> list[dict[str, Any]]:
    """Datagrams the callee of the main vectors must drop at the main vectors' time: KEY
    messages before anything else arrived ("after": "nothing"), stream packets once it has
    taken the main KEY_REQ and so holds the call's keys ("after": "key_req")."""
    req = bytes.fromhex(main["key_req"])
    ring = bytes.fromhex(main["packets"][0]["wire"])
    flip = lambda data, i: data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]  # noqa: E731
    off_curve = bytearray(req)
    off_curve[91] ^= 1  # the ephemeral key's last byte: (X, Y ^ 1) is not on the curve
    cases = [
        ("RING cut inside the tag", ring[:9], "truncated"),
        ("RING with only its header and tag", ring[:13], "auth_failed"),
        ("RING with type byte MEDIA (the type byte is the additional data)",
         bytes([MEDIA]) + ring[1:], "auth_failed"),
        ("RING with one tag bit flipped", flip(ring, 5), "auth_failed"),
        ("RING with the sequence number changed", flip(ring, 4), "auth_failed"),
        ("RING with one ciphertext bit flipped", flip(ring, 13), "auth_failed"),
        ("unknown type byte 0x06", bytes([6]) + ring[1:], "unknown_type"),
        ("KEY_REQ with one signature bit flipped", flip(req, len(req) - 1), "bad_signature"),
        ("KEY_REQ whose ephemeral point is off the curve", bytes(off_curve),
         "ephemeral_off_curve"),
        ("KEY_REQ cut inside its identity key", req[:120], "truncated"),
        ("KEY_REQ with a non-minimal DER length (81 59)",
         req[:1] + b"\x30\x81\x59" + req[3:], "bad_der"),
        ("KEY_REQ with type byte KEY_RES (no call awaits it)",
         bytes([KEY_REQ + 1]) + req[1:], "unsolicited_key_res"),
    ]
    return [{"name": name, "to": "callee", "after": "nothing" if d[0] <= 3 else "key_req",
             "datagram": d.hex(), "reason": reason} for name, d, reason in cases]


def generate_extra() -> dict[str, Any]:
    ephemeral = {side: _key(f"kadtalk test vector {side} ephemeral")
                 for side in ("caller", "callee")}
    main = generate()
    return {
        "about": "verify-only vectors; see docs/protocol.md section 19",
        "timestamps": {"ts_req": round(EPOCH * 1000),
                       "ts_res": round((EPOCH + CALLEE_DELAY) * 1000)},
        "handshakes": {kind: _handshake(kind, ephemeral) for kind in EXTRA_TYPES},
        "negative": _negatives(main),
    }


COOKIE_SECRET_LABEL = "kadtalk test vector cookie secret"
COOKIE_CALLER_ADDR = ("192.0.2.1", 5004)  # the caller's address as the callee sees it


def generate_cookie() -> dict[str, Any]:
    """The cookie exchange in front of the main vectors' key exchange, made by the layers."""
    from .wire import COOKIE_REPLY_SIZE

    main = generate()
    secret = hashlib.sha256(COOKIE_SECRET_LABEL.encode()).digest()
    keys = {name: _key(f"kadtalk test vector {name}") for name in
            ("caller identity", "caller ephemeral", "callee identity", "callee ephemeral")}
    callee_id = DeterministicIdentity.of(keys["callee identity"])
    caller_id = DeterministicIdentity.of(keys["caller identity"])
    always = SessionSettings(load_threshold=2.0)  # under load from the first KEY_REQ on
    callee = SessionLayer(callee_id, Random(0), always, EPOCH, lambda: keys["callee ephemeral"],
                          random_bytes=lambda n: secret[:n])
    caller = SessionLayer(caller_id, Random(0), always, EPOCH, lambda: keys["caller ephemeral"])
    callee_addr = ("198.51.100.2", 5004)
    caller.call(int.from_bytes(callee_id.node_id, "big"), 0.0, addr=callee_addr)
    ((key_req, _),) = caller.datagrams_to_send(0.0)
    callee.receive_datagram(key_req, COOKIE_CALLER_ADDR, CALLEE_DELAY)
    ((reply, _),) = callee.datagrams_to_send(CALLEE_DELAY)
    caller.receive_datagram(reply, callee_addr, CALLEE_DELAY)
    ((retry, _),) = caller.datagrams_to_send(CALLEE_DELAY)
    callee.receive_datagram(retry, COOKIE_CALLER_ADDR, CALLEE_DELAY)
    ((key_res, _),) = callee.datagrams_to_send(CALLEE_DELAY)
    assert key_req.hex() == main["key_req"] and key_res.hex() == main["key_res"]
    assert len(reply) == COOKIE_REPLY_SIZE
    return {
        "about": "retry cookies (docs/protocol.md section 11a) in front of session.json's call",
        "cookie_secret": secret.hex(),
        "caller_address": {"ip": COOKIE_CALLER_ADDR[0], "port": COOKIE_CALLER_ADDR[1]},
        "key_req": key_req.hex(),
        "request_tag": reply[2:18].hex(),
        "cookie": reply[18:34].hex(),
        "cookie_reply": reply.hex(),
        "cookie_retry": retry.hex(),
        "key_res": key_res.hex(),
    }


MESSAGE_IDS = {"caller": bytes.fromhex("6b647462" * 4),
               "callee": bytes.fromhex("0123456789abcdef" * 2)}


def _exchange(layers: dict[str, SessionLayer], packets: list[dict[str, Any]], src: str,
              now: float, plaintexts: list[bytes] = ()) -> list[bytes]:
    """Deliver what `src` ("caller" or "callee") has to send to the other layer; with
    `plaintexts` (one per datagram, in order) record each as a vector packet."""
    dst = "callee" if src == "caller" else "caller"
    out = [data for data, _ in layers[src].datagrams_to_send(now)]
    assert not plaintexts or len(out) == len(plaintexts), (len(out), len(plaintexts))
    for i, data in enumerate(out):
        layers[dst].receive_datagram(data, src, now)
        if plaintexts:
            packets.append({"direction": f"{src}_to_{dst}", "type": data[0],
                            "seq": int.from_bytes(data[1:5], "big"),
                            "plaintext": plaintexts[i].hex(), "wire": data.hex()})
    return out


def generate_messages() -> dict[str, Any]:
    """A session opened for messages between the main vectors' peers: the caller's TEXT is its
    first packet (no RING), the callee's RECEIPT its first; then the callee's reply and its
    RECEIPT. Made by the layers, each packet recorded with its plaintext."""
    from .events import MessageDelivered, MessageReceived
    from .messages import encode_receipt, encode_text

    main = generate()
    keys = {name: _key(f"kadtalk test vector {name}") for name in
            ("caller identity", "caller ephemeral", "callee identity", "callee ephemeral")}
    caller_id = DeterministicIdentity.of(keys["caller identity"])
    callee_id = DeterministicIdentity.of(keys["callee identity"])
    settings = SessionSettings()
    caller = SessionLayer(caller_id, Random(0), settings, EPOCH, lambda: keys["caller ephemeral"])
    callee = SessionLayer(callee_id, Random(0), settings, EPOCH, lambda: keys["callee ephemeral"])
    layers = {"caller": caller, "callee": callee}
    packets: list[dict[str, Any]] = []

    def deliver(src: str, now: float, plaintexts: list[bytes] = ()) -> list[bytes]:
        return _exchange(layers, packets, src, now, plaintexts)

    callee_int = int.from_bytes(callee_id.node_id, "big")
    caller_int = int.from_bytes(caller_id.node_id, "big")
    caller.call(callee_int, 0.0, addr="callee", chat=True)
    sent_ms = round((EPOCH + CALLEE_DELAY) * 1000)
    texts = {"caller": "hello, no call needed", "callee": "hi! ✓"}
    caller.send_message(callee_int, MESSAGE_IDS["caller"], 1, sent_ms, texts["caller"], 0.0)
    (key_req,) = deliver("caller", CALLEE_DELAY)
    (key_res,) = deliver("callee", CALLEE_DELAY)
    frame = encode_text(MESSAGE_IDS["caller"], 1, sent_ms, texts["caller"])
    deliver("caller", CALLEE_DELAY, [frame])
    (callee_session,) = callee.sessions  # its owner saved the message: the RECEIPT goes
    assert callee.confirm(callee_session, MESSAGE_IDS["caller"], CALLEE_DELAY)
    deliver("callee", CALLEE_DELAY, [encode_receipt(MESSAGE_IDS["caller"])])
    reply_ms = sent_ms + 850
    callee.send_message(caller_int, MESSAGE_IDS["callee"], 1, reply_ms, texts["callee"], 1.0)
    deliver("callee", 1.0, [encode_text(MESSAGE_IDS["callee"], 1, reply_ms, texts["callee"])])
    (caller_session,) = caller.sessions
    assert caller.confirm(caller_session, MESSAGE_IDS["callee"], 1.0)
    deliver("caller", 1.0, [encode_receipt(MESSAGE_IDS["callee"])])
    assert key_req.hex() == main["key_req"] and key_res.hex() == main["key_res"]
    got = [type(e) for layer in layers.values() for e in iter(layer.next_event, None)]
    assert got.count(MessageReceived) == 2 and got.count(MessageDelivered) == 2, got
    assert not caller.stats and not callee.stats
    return {
        "about": "text messages (docs/protocol.md section 15b) on session.json's keys",
        "key_req": key_req.hex(),
        "key_res": key_res.hex(),
        "messages": [
            {"from": side, "message_id": MESSAGE_IDS[side].hex(), "seq": 1,
             "sent_ms": ms, "text": texts[side]}
            for side, ms in (("caller", sent_ms), ("callee", reply_ms))
        ],
        "packets": packets,
    }


REQUEST_IDS = {"request": bytes.fromhex("72657175" * 4), "reply": bytes.fromhex("7265706c" * 4)}


def generate_presence() -> dict[str, Any]:
    """A contact request and its acceptance between the main vectors' peers, then a PRESENCE
    each way: the caller's CONTACT_REQ is its first packet (it opens the callee's session), the
    callee's RECEIPT its first; once each trusts the other, each one's status goes at once."""
    from .events import MessageDelivered
    from .messages import encode_receipt
    from .presence import (AWAY, ONLINE, ContactReplied, ContactRequested, PresenceReceived,
                           encode_presence, encode_reply, encode_request)

    main = generate()
    keys = {name: _key(f"kadtalk test vector {name}") for name in
            ("caller identity", "caller ephemeral", "callee identity", "callee ephemeral")}
    caller_id = DeterministicIdentity.of(keys["caller identity"])
    callee_id = DeterministicIdentity.of(keys["callee identity"])
    contacts: dict[str, set[int]] = {"caller": set(), "callee": set()}
    layers = {
        side: SessionLayer(
            ident, Random(0), SessionSettings(trusted=contacts[side].__contains__), EPOCH,
            lambda side=side: keys[f"{side} ephemeral"])
        for side, ident in (("caller", caller_id), ("callee", callee_id))
    }
    caller, callee = layers["caller"], layers["callee"]
    packets: list[dict[str, Any]] = []

    def deliver(src: str, now: float, plaintexts: list[bytes] = ()) -> list[bytes]:
        return _exchange(layers, packets, src, now, plaintexts)

    callee_int = int.from_bytes(callee_id.node_id, "big")
    caller_int = int.from_bytes(caller_id.node_id, "big")
    note = "Alice here, from the choir"
    request = encode_request(REQUEST_IDS["request"], note)
    reply = encode_reply(REQUEST_IDS["reply"], REQUEST_IDS["request"], True)
    caller.set_presence(ONLINE, 0.0)
    callee.set_presence(AWAY, 0.0)
    caller.call(callee_int, 0.0, addr="callee", chat=True)
    caller.send_frame(callee_int, REQUEST_IDS["request"], request, 0.0)
    (key_req,) = deliver("caller", CALLEE_DELAY)
    (key_res,) = deliver("callee", CALLEE_DELAY)
    deliver("caller", CALLEE_DELAY, [request])
    (callee_session,) = callee.sessions  # its owner kept the request: the RECEIPT goes
    assert callee.confirm(callee_session, REQUEST_IDS["request"], CALLEE_DELAY)
    deliver("callee", CALLEE_DELAY, [encode_receipt(REQUEST_IDS["request"])])
    contacts["callee"].add(caller_int)  # the callee's user accepts: a contact from now on
    callee.send_frame(caller_int, REQUEST_IDS["reply"], reply, 1.0)
    callee.set_presence(AWAY, 1.0)
    deliver("callee", 1.0, [reply, encode_presence(AWAY)])
    contacts["caller"].add(callee_int)  # the reply accepted: the caller adds its new contact
    (caller_session,) = caller.sessions  # ... and keeps the reply: its RECEIPT goes
    assert caller.confirm(caller_session, REQUEST_IDS["reply"], 1.0)
    caller.set_presence(ONLINE, 1.0)
    deliver("caller", 1.0, [encode_receipt(REQUEST_IDS["reply"]), encode_presence(ONLINE)])
    assert key_req.hex() == main["key_req"] and key_res.hex() == main["key_res"]
    got = {side: [type(e) for e in iter(layer.next_event, None)] for side, layer in layers.items()}
    assert ContactRequested in got["callee"] and ContactReplied in got["caller"], got
    assert PresenceReceived in got["callee"] and PresenceReceived in got["caller"], got
    assert MessageDelivered in got["caller"] and MessageDelivered in got["callee"], got
    assert not caller.stats and not callee.stats
    return {
        "about": "presence and contact requests (docs/protocol.md section 15c) on session.json's "
                 "keys",
        "key_req": key_req.hex(),
        "key_res": key_res.hex(),
        "request": {"request_id": REQUEST_IDS["request"].hex(), "note": note},
        "reply": {"reply_id": REQUEST_IDS["reply"].hex(), "accepted": True},
        "presence": {"caller": "online", "callee": "away"},
        "packets": packets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="write the vectors to this file")
    parser.add_argument("--check", metavar="FILE", help="compare FILE with fresh vectors")
    parser.add_argument("--extra", action="store_true",
                        help="the verify-only vectors (other key types, negative datagrams)")
    parser.add_argument("--cookie", action="store_true", help="the retry-cookie vectors")
    parser.add_argument("--messages", action="store_true", help="the text-message vectors")
    parser.add_argument("--presence", action="store_true",
                        help="the presence and contact-request vectors")
    args = parser.parse_args(argv)
    if args.extra and args.check:
        parser.error("the extra vectors are verify-only: tests/node/session/test_vectors.py")
    if args.extra:
        text = json.dumps(generate_extra(), indent=2) + "\n"
    elif args.cookie:
        text = json.dumps(generate_cookie(), indent=2) + "\n"
    elif args.messages:
        text = json.dumps(generate_messages(), indent=2, ensure_ascii=False) + "\n"
    elif args.presence:
        text = json.dumps(generate_presence(), indent=2, ensure_ascii=False) + "\n"
    else:
        text = render()
    if args.check:
        with open(args.check) as f:
            if f.read() != text:
                print(f"{args.check} differs from freshly generated vectors", file=sys.stderr)
                return 1
        return 0
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
