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


# -- identity key limits (review should-fix 4) ----------------------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_int(n: int) -> bytes:
    return _der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def rsa_spki(n: int, e: int) -> bytes:
    """An RSA SPKI with any modulus and exponent (cryptography would not make these)."""
    alg = _der(0x30, bytes.fromhex("06092a864886f70d010101") + b"\x05\x00")
    return _der(0x30, alg + _der(0x03, b"\x00" + _der(0x30, _der_int(n) + _der_int(e))))


_N3072 = (1 << 3071) | 0xF1  # odd, 3,072 bits (never factored: only its size matters here)


@pytest.mark.parametrize("name, make", [
    ("rsa n=15", lambda: rsa_spki(15, 3)),
    ("rsa 1024", lambda: rsa_spki((1 << 1023) | 1, 65537)),
    ("rsa 9000", lambda: rsa_spki((1 << 8999) | 1, 65537)),
    ("rsa even n", lambda: rsa_spki(1 << 2047, 65537)),
    ("rsa 3071-bit e", lambda: rsa_spki(_N3072, (1 << 3070) | 1)),
    ("rsa e = 2^32 + 1", lambda: rsa_spki(_N3072, 2**32 + 1)),
    ("p192", lambda: spki(ec.generate_private_key(ec.SECP192R1()).public_key())),
    ("dsa 1024", lambda: spki(_dsa1024().public_key())),
])
def test_identity_keys_outside_the_limits_are_refused(name, make):
    assert reason(hs.load_identity, make()) == "identity_limits"


def test_an_rsa_key_with_an_even_exponent_is_no_key():
    assert reason(hs.load_identity, rsa_spki(_N3072, 65536)) == "identity_not_a_key"  # OpenSSL


def test_identity_keys_at_the_limits_load():
    for curve in (ec.SECP224R1(), ec.SECP256K1(), ec.SECP521R1(), ec.BrainpoolP256R1()):
        hs.load_identity(spki(ec.generate_private_key(curve).public_key()))
    hs.load_identity(rsa_spki(_N3072, 2**32 - 1))
    hs.load_identity(rsa_spki((1 << 8191) | 1, 3))
    for kind in ("rsa", "dsa", "p384", "ed25519"):
        hs.load_identity(identity(kind).public_der)


def _dsa1024():
    from cryptography.hazmat.primitives.asymmetric import dsa

    return dsa.generate_private_key(1024)


# -- hypothesis: random points and DER in the ephemeral key (review should-fix 7) -----------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_P = 2**256 - 2**224 + 2**192 + 2**96 - 1  # the secp256r1 field prime
_EPH_REASONS = {"ephemeral_not_a_key", "ephemeral_not_ec", "ephemeral_wrong_curve",
                "ephemeral_off_curve", "ephemeral_not_canonical"}


def _on_curve(x: int, y: int) -> bool:
    b = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
    return x < _P and y < _P and (y * y - (x**3 - 3 * x + b)) % _P == 0


def _ephemeral_verdict(der: bytes):
    try:
        return hs.load_ephemeral(der)
    except Drop as drop:
        assert drop.reason in _EPH_REASONS
        return drop.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_random_points_load_only_when_on_the_curve(xy):
    verdict = _ephemeral_verdict(hs.P256_SPKI_PREFIX + xy)
    x, y = int.from_bytes(xy[:32], "big"), int.from_bytes(xy[32:], "big")
    assert (verdict == "ephemeral_off_curve") != _on_curve(x, y)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, 90), st.integers(0, 255)),  # one byte of a valid SPKI changed
    st.tuples(st.integers(0, 91), st.binary(max_size=8)),  # cut and extended
))
def test_random_der_as_an_ephemeral_key_is_a_counted_reason(how):
    good = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    if isinstance(how, bytes):
        der = how
    elif isinstance(how[1], int):
        der = good[: how[0]] + bytes([how[1]]) + good[how[0] + 1 :]
    else:
        der = good[: how[0]] + how[1]
    verdict = _ephemeral_verdict(der)
    if not isinstance(verdict, str):  # only the canonical 91 bytes of a point on the curve
        assert len(der) == 91 and der.startswith(hs.P256_SPKI_PREFIX)
        assert _on_curve(int.from_bytes(der[27:59], "big"), int.from_bytes(der[59:], "big"))
