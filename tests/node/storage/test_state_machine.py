"""A hypothesis state machine over the storer: stores from a few authors into a few mailboxes,
owner deletions, time passing. A model says which values must be held; quotas and byte counts
hold at every step; a deleted value does not come back while a copy could still be republished
(its tombstone lasts until the copy's expiry); nothing expired is kept."""

from __future__ import annotations

import collections

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.storage import StorageSettings, records, wire

from .conftest import WALL, A, identity, storer

SETTINGS = StorageSettings(max_values=6, max_bytes=2_400, max_per_author=3,
                           max_author_bytes=1_300, max_per_key=4, max_tombstones=64,
                           verify_rate=1e9, verify_burst=1e9, source_rate=1e9, source_burst=1e9,
                           find_rate=1e9, find_burst=1e9, ttl=1000, clock_skew=0)
AUTHORS = [identity(f"author{i}") for i in range(3)]
RECIPIENTS = [identity(f"recipient{i}") for i in range(2)]
EPOCH = records.epoch_of(WALL, SETTINGS.epoch_length)


class Storer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.layer = storer(SETTINGS)
        self.now = 0.0
        self.model: dict[bytes, float] = {}  # vid -> expires (now domain)
        self.deleted: dict[bytes, float] = {}  # vid -> until (tombstone: the copy's expiry)

    @rule(author=st.integers(0, 2), recipient=st.integers(0, 1), sequence=st.integers(0, 5),
          size=st.integers(1, 400), ttl=st.integers(1, 1000))
    def store(self, author, recipient, sequence, size, ttl):
        key = records.mailbox_key(RECIPIENTS[recipient].node_id, EPOCH)
        expiry = int(WALL + self.now + ttl)
        rec = records.make(AUTHORS[author], key, wire.MAILBOX, expiry, sequence, b"b" * size)
        vid = records.read(key, rec).vid
        self.layer.receive_datagram(wire.store(key, rec), A, self.now)
        out = self.layer.datagrams_to_send(self.now)
        assert len(out) == 1
        status = out[0][0][38]
        if self.deleted.get(vid, -1.0) > self.now:
            assert status == wire.GONE
        elif vid in self.model:
            assert status == wire.DUPLICATE
        elif status == wire.OK:
            self.model[vid] = self.now + (expiry - (WALL + self.now))
        else:
            assert status in (wire.QUOTA, wire.FULL)

    @rule(recipient=st.integers(0, 1), pick=st.integers(0, 10))
    def delete(self, recipient, pick):
        me = RECIPIENTS[recipient]
        key = records.mailbox_key(me.node_id, EPOCH)
        mine = sorted(v for v, h in self.layer.store.values.items() if h.value.key == key)
        vids = mine[pick % len(mine):][:2] if mine else [bytes(16)]
        self.layer.receive_datagram(records.make_delete(me, EPOCH, vids), A, self.now)
        (answer, _), = self.layer.datagrams_to_send(self.now)
        assert answer[22] == len([v for v in vids if v in self.model])
        for vid in vids:
            held = self.model.pop(vid, None)
            self.deleted[vid] = held if held is not None else self.now + SETTINGS.ttl

    @rule(dt=st.floats(0.0, 400.0))
    def advance(self, dt):
        self.now += dt
        self.layer.handle_timer(self.now)
        self.layer.datagrams_to_send(self.now)
        self.model = {v: t for v, t in self.model.items() if t > self.now}

    @invariant()
    def matches_the_model_and_the_quotas(self):
        store = self.layer.store
        store.expire(self.now)
        self.model = {v: t for v, t in self.model.items() if t > self.now}
        assert set(store.values) == set(self.model)
        assert len(store) <= SETTINGS.max_values and store.bytes <= SETTINGS.max_bytes
        assert store.bytes == sum(len(h.value.raw) for h in store.values.values())
        authors = collections.Counter(h.value.author for h in store.values.values())
        assert authors == store.per_author
        assert max(authors.values(), default=0) <= SETTINGS.max_per_author
        assert all(b <= SETTINGS.max_author_bytes for b in store.author_bytes.values())
        assert all(len(v) <= SETTINGS.max_per_key for v in store.by_key.values())
        assert not {v for v, t in self.deleted.items() if t > self.now} & set(store.values)


Storer.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestStorer = Storer.TestCase
