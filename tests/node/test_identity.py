import dataclasses
import hashlib
import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import (
    Identity,
    IdentityError,
    default_key_path,
    load_or_create,
    node_id_of,
    verify,
)

PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL


@pytest.fixture(scope="module")
def keys():
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "dsa": dsa.generate_private_key(key_size=2048),
        "ecdsa-p384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


def spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_pem(path, key, fmt=PKCS8, mode=0o600):
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(mode)


# --- IDs ------------------------------------------------------------------------------------


def test_generate_is_p256_and_id_is_sha1_of_spki():
    ident = Identity.generate()
    assert isinstance(ident.private_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ident.private_key.curve, ec.SECP256R1)
    assert ident.public_der == spki(ident.private_key.public_key())
    assert ident.node_id == hashlib.sha1(ident.public_der).digest()
    assert len(ident.node_id) == 20
    assert node_id_of(ident.public_der) == ident.node_id
    assert ident.hex_id == hashlib.sha1(ident.public_der).hexdigest()
    assert len(ident.hex_id) == 40 and ident.hex_id == ident.hex_id.lower()


def test_identity_is_frozen_and_slotted():
    ident = Identity.generate()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.node_id = bytes(20)
    assert not hasattr(ident, "__dict__")


def test_unsupported_key_type_rejected():
    with pytest.raises(IdentityError):
        Identity.from_private_key(x25519.X25519PrivateKey.generate())


# --- sign / verify --------------------------------------------------------------------------


LOADABLE = {
    **{f"{name}-pkcs8": (name, PKCS8) for name in ("rsa", "dsa", "ecdsa-p384", "ed25519")},
    # Ed25519 has no traditional OpenSSL format
    **{f"{name}-traditional": (name, TRADITIONAL) for name in ("rsa", "dsa", "ecdsa-p384")},
}


@pytest.mark.parametrize(("name", "fmt"), LOADABLE.values(), ids=LOADABLE.keys())
def test_key_types_load_and_round_trip(tmp_path, keys, name, fmt):
    key = keys[name]
    path = tmp_path / "identity.pem"
    write_pem(path, key, fmt)
    ident = load_or_create(path)
    assert ident.public_der == spki(key.public_key())
    assert ident.node_id == hashlib.sha1(ident.public_der).digest()
    sig = ident.sign(b"hello")
    assert verify(ident.public_der, sig, b"hello")
    assert not verify(ident.public_der, sig, b"hellp")


@pytest.mark.parametrize("name", ["rsa", "dsa", "ecdsa-p384", "ed25519"])
def test_verify_rejects_flipped_bit_and_other_key(keys, name):
    ident = Identity.from_private_key(keys[name])
    sig = ident.sign(b"data")
    for i in range(len(sig)):
        for bit in (0x01, 0x80):
            bad = bytearray(sig)
            bad[i] ^= bit
            assert verify(ident.public_der, bytes(bad), b"data") is False
    other = Identity.generate()
    assert verify(other.public_der, sig, b"data") is False
    assert verify(ident.public_der, other.sign(b"data"), b"data") is False


def test_verify_rejects_key_that_cannot_sign():
    der = spki(x25519.X25519PrivateKey.generate().public_key())
    assert verify(der, bytes(64), b"data") is False


VALID = Identity.generate()
VALID_SIG = VALID.sign(b"msg")


@settings(max_examples=300, deadline=None)
@given(spki_der=st.binary(max_size=200), signature=st.binary(max_size=200))
def test_verify_never_raises_on_garbage(spki_der, signature):
    assert verify(spki_der, signature, b"msg") is False
    assert verify(VALID.public_der, signature, b"msg") is False


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(VALID.public_der) - 1), mask=st.integers(1, 255))
def test_verify_never_raises_on_mutated_spki(index, mask):
    der = bytearray(VALID.public_der)
    der[index] ^= mask
    assert verify(bytes(der), VALID_SIG, b"msg") is False


# --- the key file ---------------------------------------------------------------------------


def test_create_then_load(tmp_path, caplog):
    path = tmp_path / "cfg" / "kadtalk" / "identity.pem"
    with caplog.at_level(logging.INFO, logger="kadtalk.node.identity"):
        created = load_or_create(path)
    assert created.hex_id in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert os.listdir(path.parent) == ["identity.pem"]  # no temp file left behind
    loaded = load_or_create(path)
    assert loaded.node_id == created.node_id
    assert loaded == created
    assert verify(loaded.public_der, created.sign(b"x"), b"x")


def test_group_readable_key_warns_and_is_left_alone(tmp_path, caplog):
    path = tmp_path / "identity.pem"
    write_pem(path, ec.generate_private_key(ec.SECP256R1()), mode=0o644)
    with caplog.at_level(logging.WARNING, logger="kadtalk.node.identity"):
        load_or_create(path)
    assert str(path) in caplog.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_owner_only_key_does_not_warn(tmp_path, caplog):
    path = tmp_path / "identity.pem"
    write_pem(path, ec.generate_private_key(ec.SECP256R1()))
    with caplog.at_level(logging.WARNING, logger="kadtalk.node.identity"):
        load_or_create(path)
    assert not caplog.records


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a key at all\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        x25519.X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, PKCS8, serialization.NoEncryption()
        ),
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, PKCS8, serialization.BestAvailableEncryption(b"pw")
        ),
    ],
    ids=["empty", "text", "bad-base64-der", "x25519", "encrypted"],
)
def test_bad_key_file_raises_and_is_not_touched(tmp_path, content):
    path = tmp_path / "identity.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match=str(path)):
        load_or_create(path)
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["identity.pem"]


def test_unreadable_path_raises(tmp_path):
    path = tmp_path / "identity.pem"
    path.mkdir()
    with pytest.raises(IdentityError, match=str(path)):
        load_or_create(path)
    assert path.is_dir()


def test_dangling_symlink_is_not_replaced(tmp_path):
    path = tmp_path / "identity.pem"
    path.symlink_to(tmp_path / "missing.pem")
    with pytest.raises(IdentityError, match=str(path)):
        load_or_create(path)
    assert path.is_symlink()


# --- default path ---------------------------------------------------------------------------


def test_xdg_config_home_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "xdg" / "kadtalk" / "identity.pem"
    assert default_key_path() == expected
    ident = load_or_create()
    assert expected.is_file()
    assert load_or_create(expected).node_id == ident.node_id


@pytest.mark.parametrize("xdg", [None, "", "relative/config"], ids=["unset", "empty", "relative"])
def test_fallback_to_home_config(tmp_path, monkeypatch, xdg):
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    assert default_key_path() == tmp_path / ".config" / "kadtalk" / "identity.pem"


# --- key limits (a user's own key obeys the same limits as a peer's) --------------------------


@pytest.mark.parametrize("make, words", [
    (lambda: ec.generate_private_key(ec.SECP192R1()), "at least 224 bits"),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048 to 8192 bits"),
    (lambda: dsa.generate_private_key(key_size=1024), "2048 to 8192 bits"),
])
def test_own_key_outside_the_limits_is_refused_with_a_clear_error(tmp_path, make, words):
    key = make()
    with pytest.raises(IdentityError, match=words):
        Identity.from_private_key(key)
    path = tmp_path / "identity.pem"
    write_pem(path, key)
    before = path.read_bytes()
    with pytest.raises(IdentityError, match=words) as info:
        load_or_create(path)
    assert str(path) in str(info.value) and path.read_bytes() == before  # never overwritten
    assert not verify(spki(key.public_key()), b"\x00" * 64, b"data")


def test_keys_within_the_limits_still_verify():
    key = ec.generate_private_key(ec.SECP224R1())
    ident = Identity.from_private_key(key)
    assert verify(ident.public_der, ident.sign(b"x"), b"x")
