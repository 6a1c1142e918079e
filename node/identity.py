"""A node's long-term identity: its signing key and the node ID derived from it.

Node ID = SHA-1 of the DER SubjectPublicKeyInfo of the identity key (design §3). Any of RSA,
DSA, ECDSA (any curve) or Ed25519 may be a peer's identity; new identities use ECDSA secp256r1.
Every identity key, ours or a peer's, must be within `check_key_limits`: RSA with a modulus of
2,048 to 8,192 bits and an odd public exponent 3 ≤ e ≤ 2^32, DSA with p of 2,048 to 8,192 bits,
ECDSA on a curve of at least 224 bits (so no key is too weak, or too costly to verify).
The key is kept as a PEM file in the user's config directory, readable by the owner only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

__all__ = [
    "DSAPrivateKey",
    "DSAPublicKey",
    "Identity",
    "IdentityError",
    "check_key_limits",
    "signature_args",
    "default_key_path",
    "load_or_create",
    "node_id_of",
    "verify",
]

log = logging.getLogger(__name__)



def _dsa_key_types() -> tuple[type, type]:
    """DSA's private and public key classes. cryptography >= 51 warns at every access to them
    (DSA is deprecated there); peers may still have DSA identities, so we fetch them once here,
    silencing exactly that warning, and no command prints it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="DSA is deprecated",
                                category=CryptographyDeprecationWarning)
        return dsa.DSAPrivateKey, dsa.DSAPublicKey


DSAPrivateKey, DSAPublicKey = _dsa_key_types()
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_SUPPORTED = "RSA, DSA, ECDSA or Ed25519"


class IdentityError(Exception):
    """The identity key cannot be loaded, created or used."""


def default_key_path() -> Path:
    """``$XDG_CONFIG_HOME/kadtalk/identity.pem``, else ``~/.config/kadtalk/identity.pem``.

    As the XDG spec asks, an empty or relative ``XDG_CONFIG_HOME`` is ignored.
    """
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "kadtalk" / "identity.pem"


def node_id_of(spki_der: bytes) -> bytes:
    """The 20-byte node ID of a DER SubjectPublicKeyInfo: its SHA-1 digest."""
    return hashlib.sha1(spki_der).digest()


def signature_args(key) -> tuple:
    """Extra arguments to ``key.sign(data, ...)`` / ``key.verify(sig, data, ...)``; IdentityError
    for a key type that is no identity."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return (ec.ECDSA(hashes.SHA256()),)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return (_PSS, hashes.SHA256())
    if isinstance(key, (DSAPrivateKey, DSAPublicKey)):
        return (hashes.SHA256(),)
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return ()
    raise IdentityError(
        f"unsupported identity key type {type(key).__name__}: must be {_SUPPORTED}"
    )


RSA_BITS = (2048, 8192)
RSA_MAX_EXPONENT = 2**32
DSA_BITS = (2048, 8192)
EC_MIN_BITS = 224


_sig_args = signature_args  # the old private name


def check_key_limits(key) -> None:
    """Raise IdentityError unless the key (private or public) is within the identity limits.

    RSA: modulus of 2,048-8,192 bits and an odd public exponent 3 <= e <= 2^32 (a huge exponent
    makes every verification slow); DSA: p of 2,048-8,192 bits; ECDSA: a curve of at least 224
    bits; Ed25519 always. Other types fail in the same way as `signature_args`.
    """
    public = key.public_key() if hasattr(key, "private_bytes") else key
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        bits, e = numbers.n.bit_length(), numbers.e
        if not RSA_BITS[0] <= bits <= RSA_BITS[1] or numbers.n % 2 == 0:
            raise IdentityError(
                f"RSA identity key of {bits} bits: must be {RSA_BITS[0]} to {RSA_BITS[1]} bits"
                " (and an odd modulus)"
            )
        if not (3 <= e <= RSA_MAX_EXPONENT and e % 2 == 1):
            raise IdentityError(
                f"RSA identity key with a public exponent of {e.bit_length()} bits"
                f" ({'odd' if e % 2 else 'even'}): it must be odd, at least 3 and at most 2^32"
                " (65537 is usual)"
            )
    elif isinstance(public, DSAPublicKey):
        bits = public.key_size
        if not DSA_BITS[0] <= bits <= DSA_BITS[1]:
            raise IdentityError(
                f"DSA identity key of {bits} bits: must be {DSA_BITS[0]} to {DSA_BITS[1]} bits"
            )
    elif isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.key_size < EC_MIN_BITS:
            raise IdentityError(
                f"ECDSA identity key on {public.curve.name} ({public.curve.key_size} bits): "
                f"the curve must have at least {EC_MIN_BITS} bits (secp256r1 is usual)"
            )
    else:
        signature_args(public)  # Ed25519 passes; anything else raises IdentityError


def verify(spki_der: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` over ``data`` is valid for the key in ``spki_der``.

    Returns False, never raises, for malformed or unsupported keys, keys outside
    `check_key_limits`, and malformed signatures.
    """
    try:
        key = serialization.load_der_public_key(spki_der)
        args = signature_args(key)  # before key.verify: keys that cannot sign have no verify
        check_key_limits(key)
        key.verify(signature, data, *args)
    except (InvalidSignature, IdentityError, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Identity:
    """A private signing key with its DER SPKI and node ID.

    Build it with :meth:`generate` or :meth:`from_private_key`.
    """

    private_key: object = field(repr=False, compare=False)
    public_der: bytes
    node_id: bytes

    @classmethod
    def generate(cls) -> Identity:
        """A new identity on an ECDSA secp256r1 key."""
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, key) -> Identity:
        """The identity of an RSA, DSA, ECDSA or Ed25519 private key within `check_key_limits`
        (else IdentityError, saying which limit)."""
        signature_args(key)
        check_key_limits(key)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, der, node_id_of(der))

    @property
    def hex_id(self) -> str:
        """The node ID as 40 lowercase hex digits."""
        return self.node_id.hex()

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with the rules :func:`verify` checks."""
        return self.private_key.sign(data, *signature_args(self.private_key))


def load_or_create(path: Path | None = None) -> Identity:
    """Load the identity key at ``path`` (default :func:`default_key_path`), or create it.

    An existing file is never overwritten: if it cannot be read or is not a usable key,
    IdentityError names the file and the fix.
    """
    path = Path(path) if path is not None else default_key_path()
    try:
        with open(path, "rb") as f:
            pem = f.read()
            mode = os.fstat(f.fileno()).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise IdentityError(
                f"identity key {path} is a dangling symlink; fix or remove it"
            ) from None
        return _create(path)
    except OSError as e:
        raise IdentityError(
            f"cannot read identity key {path}: {e.strerror}; fix its permissions "
            "or move it away to create a new identity (a new node ID)"
        ) from e

    if stat.S_IMODE(mode) & 0o077:
        log.warning(
            "identity key %s is accessible by group or others (mode %o); run: chmod 600 %s",
            path, stat.S_IMODE(mode), path,
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
        return Identity.from_private_key(key)
    except (ValueError, TypeError, UnsupportedAlgorithm, IdentityError) as e:
        raise IdentityError(
            f"{path} is not a usable identity key ({e}); it must be an unencrypted PEM "
            f"private key ({_SUPPORTED}). Restore it from a backup, or move it away to "
            "create a new identity (a new node ID)"
        ) from e


def _create(path: Path) -> Identity:
    """Generate a new identity and write it to ``path`` atomically, owner-only."""
    identity = Identity.generate()
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    except OSError as e:
        raise IdentityError(
            f"cannot create identity key {path}: {e.strerror}; check the directory's "
            "permissions or choose another key path"
        ) from e
    log.info("created new identity %s in %s", identity.hex_id, path)
    return identity


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
