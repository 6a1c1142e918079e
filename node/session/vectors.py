"""Generate the session test vectors (docs/vectors/session.json) by running two session layers.

Everything is deterministic: identity and ephemeral keys are derived from fixed labels, the
signatures are deterministic ECDSA (RFC 6979), the timestamps fixed. Usage:

    python -m kadtalk.node.session.vectors                 # print the JSON
    python -m kadtalk.node.session.vectors -o FILE         # write it
    python -m kadtalk.node.session.vectors --check FILE    # exit 1 if FILE differs
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
from .wire import ANSWER, HANGUP, HANGUP_NORMAL, MEDIA, RING, SIGNAL, encode_signal

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", help="write the vectors to this file")
    parser.add_argument("--check", metavar="FILE", help="compare FILE with fresh vectors")
    args = parser.parse_args(argv)
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
