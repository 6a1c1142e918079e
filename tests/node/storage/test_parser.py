"""Hypothesis over the STORAGE parsers and the layer: nothing raises, every malformed datagram
is one counted drop, and valid layouts survive a round trip."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.storage import StorageSettings, wire

from .conftest import A, identity, mailbox_record, storer

KEY, REC = mailbox_record(identity("alice"), identity("bob"))
SEEDS = [wire.store(KEY, REC), wire.stored(KEY, bytes(16), 0), wire.find_value(KEY, bytes(8), 0),
         wire.found(KEY, bytes(8), 1, wire.NO_MORE, [REC]), wire.deleted(KEY, 1),
         wire.delete(KEY, 7, [bytes(16)], identity("bob").public_der, b"s" * 64)]

mutated = st.tuples(st.sampled_from(SEEDS), st.integers(0, 2000), st.integers(0, 255),
                    st.integers(-40, 40)).map(
    lambda t: (t[0][:t[1] % (len(t[0]) + 1)] + bytes((t[2],)) + t[0][t[1] % (len(t[0]) + 1) + 1:])
    [:max(0, len(t[0]) + t[3])])
anything = st.one_of(st.binary(max_size=1600),
                     st.builds(lambda op, body: bytes((wire.STORAGE, op)) + body,
                               st.integers(0, 9), st.binary(max_size=400)),
                     mutated)


@settings(max_examples=1500, deadline=None)
@given(anything)
def test_parsers_never_raise_and_agree_with_well_formed(data):
    ok = wire.well_formed(data)
    for parse in (wire.parse_found, wire.parse_delete, lambda d: wire.parse_record(d[22:])):
        parse(data)
    if ok and data[1] == wire.FOUND:
        f = wire.parse_found(data)
        assert wire.found(f.key, f.nonce, f.total, f.next, list(f.records),
                          list(f.contacts)) == data
    if ok and data[1] == wire.DELETE:
        d = wire.parse_delete(data)
        assert wire.delete(d.key, d.epoch, d.vids, d.spki, d.signature) == data
    if ok and data[1] == wire.STORE:
        r = wire.parse_record(data[22:])
        assert wire.store(data[2:22], wire.record(*r)) == data


LAYER = storer(StorageSettings(verify_rate=1e9, verify_burst=1e9, source_rate=1e9,
                               source_burst=1e9, find_rate=1e9, find_burst=1e9))


@settings(max_examples=1500, deadline=None)
@given(anything)
def test_the_layer_never_raises_and_counts_each_malformed_datagram_once(data):
    before = sum(LAYER.drop_counts().values())
    LAYER.receive_datagram(data, A, 0.0)
    for out, dst in LAYER.datagrams_to_send(0.0):
        assert dst == A and len(out) <= len(data)
    if not wire.well_formed(data):
        assert sum(LAYER.drop_counts().values()) == before + 1
