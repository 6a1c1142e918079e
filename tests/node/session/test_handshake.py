"""Transcript, signatures, key checks and derivations."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kadtalk.node.session import handshake as hs
from kadtalk.node.session.keys import derive_both
from kadtalk.node.session.wire import Drop

from .conftest import identity


def reason(fn, *args) -> str:
    with pytest.raises(Drop) as info:
        fn(*args)
    return info.value.reason


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_signed_data_layouts():
    a, b = b"A" * 20, b"B" * 20
    ea, eb = b"e" * 91, b"f" * 91
    req = hs.req_signed_data(a, b, 7, ea)
    assert req == b"kadtalk/1 KEY_REQ" + a + b + (7).to_bytes(8, "big") + ea
    res = hs.res_signed_data(a, b, 7, 9, ea, eb)
    fields = a + b + (7).to_bytes(8, "big") + (9).to_bytes(8, "big") + ea + eb
    assert res == b"kadtalk/1 KEY_RES" + fields
    assert hs.transcript_hash(a, b, 7, 9, ea, eb) == hashlib.sha256(b"kadtalk/1 transcript" + fields).digest()


def test_keys_are_hkdf_sha256_per_direction():
    secret, th = bytes(range(32)), bytes(range(32, 64))
    forward, backward = derive_both(secret, th)
    okm = HKDF(hashes.SHA256(), 40, th, b"kadtalk/1 caller to callee").derive(secret)
    assert (forward.key, forward.salt) == (okm[:32], okm[32:])
    okm = HKDF(hashes.SHA256(), 40, th, b"kadtalk/1 callee to caller").derive(secret)
    assert (backward.key, backward.salt) == (okm[:32], okm[32:])
    assert forward.key != backward.key and forward.salt != backward.salt


def test_a_valid_ephemeral_loads():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = hs.ephemeral_spki(key)
    assert len(der) == 91 and der.startswith(hs.P256_SPKI_PREFIX)
    assert hs.load_ephemeral(der).public_numbers() == key.public_numbers()


def test_ephemeral_rejections():
    assert reason(hs.load_ephemeral, b"junk") == "ephemeral_not_a_key"
    p384 = spki(ec.generate_private_key(ec.SECP384R1()).public_key())
    assert reason(hs.load_ephemeral, p384) == "ephemeral_wrong_curve"
    assert reason(hs.load_ephemeral, identity("ed25519", "e").public_der) == "ephemeral_not_ec"
    assert reason(hs.load_ephemeral, identity("rsa", "e").public_der) == "ephemeral_not_ec"
    good = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    assert reason(hs.load_ephemeral, off_curve) == "ephemeral_off_curve"
    assert reason(hs.load_ephemeral, hs.P256_SPKI_PREFIX + bytes(64)) == "ephemeral_off_curve"
    compressed = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    compressed_spki = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + compressed
    assert reason(hs.load_ephemeral, compressed_spki) == "ephemeral_not_canonical"


def test_identity_rejections():
    assert reason(hs.load_identity, b"\x30\x03\x02\x01\x00") == "identity_not_a_key"
    x = spki(x25519.X25519PrivateKey.generate().public_key())
    assert reason(hs.load_identity, x) == "identity_unsupported"


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa", "dsa", "ed25519"])
def test_signatures_of_every_identity_type(kind):
    ident = identity(kind, "sig")
    data = b"transcript"
    key = hs.load_identity(ident.public_der)
    hs.check_signature(key, ident.sign(data), data)
    assert reason(hs.check_signature, key, ident.sign(data), data + b"!") == "bad_signature"
    assert reason(hs.check_signature, key, b"\x00" * 64, data) == "bad_signature"
