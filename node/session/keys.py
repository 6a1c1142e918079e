"""Per-direction session keys: HKDF-SHA-256 over the ECDH secret, salted with the transcript hash.

For each direction, OKM = HKDF-SHA-256(IKM = ECDH shared secret, salt = transcript hash,
info = the direction's label, length 40); key = OKM[0:32] (AES-256), nonce salt = OKM[32:40].
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO_CALLER_TO_CALLEE = b"kadtalk/1 caller to callee"
INFO_CALLEE_TO_CALLER = b"kadtalk/1 callee to caller"
KEY_SIZE = 32
SALT_SIZE = 8


@dataclass(frozen=True, slots=True)
class DirectionKeys:
    key: bytes
    salt: bytes


def derive(shared_secret: bytes, transcript_hash: bytes, info: bytes) -> DirectionKeys:
    okm = HKDF(hashes.SHA256(), KEY_SIZE + SALT_SIZE, transcript_hash, info).derive(shared_secret)
    return DirectionKeys(okm[:KEY_SIZE], okm[KEY_SIZE:])


def derive_both(
    shared_secret: bytes, transcript_hash: bytes
) -> tuple[DirectionKeys, DirectionKeys]:
    """(caller -> callee, callee -> caller)."""
    return (
        derive(shared_secret, transcript_hash, INFO_CALLER_TO_CALLEE),
        derive(shared_secret, transcript_hash, INFO_CALLEE_TO_CALLER),
    )
