"""Key pairs for simulated nodes, drawn from a study's generator so a seed reproduces them."""

from __future__ import annotations

from random import Random

from cryptography.hazmat.primitives.asymmetric import ec

from kadtalk.node.identity import Identity

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def derive_identity(rng: Random) -> Identity:
    """An ECDSA P-256 identity whose private scalar comes from `rng` (about 0.1 ms each)."""
    return Identity.from_private_key(
        ec.derive_private_key(rng.randrange(1, _P256_ORDER), ec.SECP256R1()))


def node_id(identity: Identity) -> int:
    return int.from_bytes(identity.node_id, "big")
