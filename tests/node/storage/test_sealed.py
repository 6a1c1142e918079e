"""Sealed boxes: open only with the right prekey, for the right recipient, unaltered, and name
their real sender; anything else is SealedError, never another exception."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.storage import sealed
from kadtalk.node.storage.sealed import SealedError, open_box, public_bytes, seal

from .conftest import identity

PREKEY = X25519PrivateKey.generate()
BOB = identity("bob").node_id


def test_round_trip_names_the_sender():
    box = seal(public_bytes(PREKEY), BOB, identity("alice"), b"hello")
    opened = open_box(PREKEY, BOB, box)
    assert opened == (identity("alice").node_id, identity("alice").public_der, b"hello")
    assert b"hello" not in box and len(box) > len(b"hello") + sealed.OVERHEAD


def test_wrong_prekey_wrong_recipient_or_any_changed_byte_fails():
    box = seal(public_bytes(PREKEY), BOB, identity("alice"), b"hello")
    with pytest.raises(SealedError):
        open_box(X25519PrivateKey.generate(), BOB, box)
    with pytest.raises(SealedError):
        open_box(PREKEY, identity("carol").node_id, box)  # re-addressed
    for i in range(len(box)):
        changed = box[:i] + bytes((box[i] ^ 0x40,)) + box[i + 1:]
        with pytest.raises(SealedError):
            open_box(PREKEY, BOB, changed)


def test_a_low_order_prekey_is_refused():
    with pytest.raises(SealedError):
        seal(bytes(32), BOB, identity("alice"), b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_open_never_raises_anything_but_sealed_error(data):
    try:
        open_box(PREKEY, BOB, data)
    except SealedError:
        pass
