"""The signed ephemeral ECDH handshake: transcript, signatures, key checks, shared secret.

Signed data (all fields fixed-size; IDs are 20 bytes, timestamps u64 milliseconds, ephemeral
keys their 91-byte DER SPKI):

    KEY_REQ signs  "kadtalk/1 KEY_REQ" | caller ID | callee ID | ts_req | caller eph
    KEY_RES signs  "kadtalk/1 KEY_RES" | caller ID | callee ID | ts_req | ts_res
                   | caller eph | callee eph
    transcript hash = SHA-256("kadtalk/1 transcript" | caller ID | callee ID | ts_req | ts_res
                              | caller eph | callee eph)

So KEY_RES covers everything the caller signed, and both IDs (thus both identity keys) and both
ephemeral keys go into the keys. Functions raise `wire.Drop(reason)` on bad input.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..identity import DSAPublicKey, IdentityError, check_key_limits, signature_args
from .keys import DirectionKeys, derive_both
from .wire import KEY_REQ, KEY_RES, Drop, KeyMessage, encode_key

LABEL_KEY_REQ = b"kadtalk/1 KEY_REQ"
LABEL_KEY_RES = b"kadtalk/1 KEY_RES"
LABEL_TRANSCRIPT = b"kadtalk/1 transcript"

# DER SPKI of an uncompressed secp256r1 point, up to and including the point's 0x04 byte.
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004")
P256_SPKI_SIZE = 91
_CURVE = ec.SECP256R1()
_U64 = struct.Struct(">Q")

Signer = Callable[[bytes], bytes]


def id_of(spki: bytes) -> bytes:
    return hashlib.sha1(spki).digest()


def ephemeral_spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def req_signed_data(caller_id: bytes, callee_id: bytes, ts_req: int, caller_eph: bytes) -> bytes:
    return b"".join((LABEL_KEY_REQ, caller_id, callee_id, _U64.pack(ts_req), caller_eph))


def _res_fields(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph) -> bytes:
    return b"".join(
        (caller_id, callee_id, _U64.pack(ts_req), _U64.pack(ts_res), caller_eph, callee_eph)
    )


def res_signed_data(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph) -> bytes:
    return LABEL_KEY_RES + _res_fields(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph)


def transcript_hash(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph) -> bytes:
    return hashlib.sha256(
        LABEL_TRANSCRIPT + _res_fields(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph)
    ).digest()


def load_ephemeral(spki: bytes) -> ec.EllipticCurvePublicKey:
    """The peer's ephemeral key: an uncompressed secp256r1 point on the curve, canonical DER."""
    if len(spki) == P256_SPKI_SIZE and spki.startswith(P256_SPKI_PREFIX):
        try:
            point = spki[len(P256_SPKI_PREFIX) - 1 :]  # 04 | X | Y
            return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)
        except ValueError:
            raise Drop("ephemeral_off_curve") from None
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Drop("ephemeral_not_a_key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Drop("ephemeral_not_ec")
    if not isinstance(key.curve, ec.SECP256R1):
        raise Drop("ephemeral_wrong_curve")
    raise Drop("ephemeral_not_canonical")  # compressed point or non-minimal encoding


def load_identity(spki: bytes):
    """The peer's identity key: any type `identity.verify` supports (RSA, DSA, ECDSA, Ed25519),
    within `identity.check_key_limits` (`identity_limits` otherwise)."""
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Drop("identity_not_a_key") from None
    try:
        signature_args(key)
    except IdentityError:
        raise Drop("identity_unsupported") from None
    try:
        check_key_limits(key)
    except IdentityError:
        raise Drop("identity_limits") from None
    return key


def verify_cost(key) -> int:
    """Tokens one signature check with this identity key costs, in units of ECDSA P-256 (which
    OpenSSL optimises): measured ratios, rounded up (docs/protocol.md section 17)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return 1
        return 8 if key.curve.key_size <= 384 else 16
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        cost = 1 if numbers.n.bit_length() <= 4096 else 4
        return cost * 2 if numbers.e >= 1 << 17 else cost
    if isinstance(key, DSAPublicKey):
        return 6 if key.key_size <= 2048 else 16 if key.key_size <= 3072 else 32
    return 1  # Ed25519


def max_signature_size(key) -> int:
    """The largest signature this identity key makes (DER ECDSA / DSA: two INTEGERs, each at most
    one byte longer than the group order), so a KEY_RES's size is known before signing it."""
    if isinstance(key, rsa.RSAPublicKey):
        return (key.key_size + 7) // 8
    if isinstance(key, (ec.EllipticCurvePublicKey, DSAPublicKey)):
        bits = (key.curve.key_size if isinstance(key, ec.EllipticCurvePublicKey)
                else key.parameters().parameter_numbers().q.bit_length())
        body = 2 * (2 + (bits + 7) // 8 + 1)  # INTEGER tag, length, sign byte, value
        return body + (2 if body < 0x80 else 3)
    return 64 if isinstance(key, ed25519.Ed25519PublicKey) else 114  # Ed448: 114


def check_signature(key, signature: bytes, data: bytes) -> None:
    try:
        key.verify(signature, data, *signature_args(key))
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise Drop("bad_signature") from None


def shared_secret(
    private_key: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey
) -> bytes:
    return private_key.exchange(ec.ECDH(), peer)


# -- building the two messages ------------------------------------------------------------------


def make_key_req(
    sign: Signer, identity_spki: bytes, caller_id: bytes, callee_id: bytes, eph_spki: bytes,
    ts_req: int,
) -> bytes:
    signature = sign(req_signed_data(caller_id, callee_id, ts_req, eph_spki))
    return encode_key(KeyMessage(KEY_REQ, eph_spki, identity_spki, ts_req, signature))


def make_key_res(
    sign: Signer, identity_spki: bytes, caller_id: bytes, callee_id: bytes,
    ts_req: int, ts_res: int, caller_eph: bytes, eph_spki: bytes,
) -> bytes:
    signature = sign(res_signed_data(caller_id, callee_id, ts_req, ts_res, caller_eph, eph_spki))
    return encode_key(KeyMessage(KEY_RES, eph_spki, identity_spki, ts_res, signature))


def session_keys(
    secret: bytes, caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph
) -> tuple[bytes, DirectionKeys, DirectionKeys]:
    """(transcript hash, caller -> callee keys, callee -> caller keys)."""
    th = transcript_hash(caller_id, callee_id, ts_req, ts_res, caller_eph, callee_eph)
    forward, backward = derive_both(secret, th)
    return th, forward, backward
