"""Republication spread over the interval (node/storage/store.py), with explicit `now`: the k
storers of a value got its STORE at one moment, and with one fixed interval every one of them
looked its key up and stored it at the others each interval (k lookups a value-interval). A
storer that received the value arms its republication at random in the interval's last
`republish_spread`; the one that republished re-arms at that range's start, so it stays first
and its STOREs postpone the others'. No value waits more than `republish_interval`."""

from __future__ import annotations

import math
from random import Random

from hypothesis import given, settings as hsettings, strategies as st

from kadtalk.node.storage import StorageSettings, records
from kadtalk.node.storage.store import ValueStore

from .conftest import WALL, identity, mailbox_record
from .test_mailbox_storers import NOON, World

S = StorageSettings()
I = S.republish_interval
EARLIEST = I * (1 - S.republish_spread)


def value(n: int = 1):
    key, rec = mailbox_record(identity("alice"), identity("bob"), sequence=n, ttl=10 * 86_400)
    return records.read(key, rec)


def test_storers_that_received_a_value_at_one_moment_arm_their_republications_apart():
    stores = [ValueStore(S, Random(i)) for i in range(20)]
    v = value()
    for store in stores:
        store.add(v, 1e9, 100.0)
    times = sorted(store.values[v.vid].republish_at for store in stores)
    assert len(set(times)) == 20  # before: all 20 at 100 + I
    assert 100 + EARLIEST <= times[0] and times[-1] <= 100 + I
    assert times[1] - times[0] > 1.0  # the first storer's STOREs arrive before the second fires


def test_the_republisher_rearms_first_and_a_received_copy_postpones_within_the_interval():
    store = ValueStore(S, Random(1))
    v = value()
    store.add(v, 1e9, 0.0)
    at = store.values[v.vid].republish_at
    assert store.due(at - 0.001) == []
    assert [h.value.vid for h in store.due(at)] == [v.vid]
    assert store.values[v.vid].republish_at == at + EARLIEST  # the republisher: range's start
    store.touch(v.vid, at + 10.0)  # another storer's republication reached us
    touched = store.values[v.vid].republish_at
    assert at + 10.0 + EARLIEST <= touched <= at + 10.0 + I
    assert store.due(touched - 0.001) == [] and len(store.due(touched)) == 1


def test_a_republication_brought_forward_is_due_at_its_new_time():
    """`republishing` may move a value's time earlier than its heap entry (a value under the
    key of another that is due): the value is due then, not at the old entry, and once."""
    store = ValueStore(S, Random(2))
    v = value()
    store.add(v, 1e9, 0.0)
    held = store.values[v.vid]
    drawn = held.republish_at
    assert drawn > 5.0 + EARLIEST  # this seed's draw
    store.republishing(held, 5.0)
    assert held.republish_at == 5.0 + EARLIEST
    assert store.get_timer() == 5.0 + EARLIEST
    assert len(store.due(5.0 + EARLIEST)) == 1
    assert store.due(drawn) == []  # the old entry is stale: not due twice
    assert len(store.due(5.0 + 2 * EARLIEST)) == 1


def test_twenty_storers_republish_about_once_an_interval_not_twenty_times():
    """Whole storage layers (zero latency, lookups that end at once): a value stored at 20
    nodes at noon, 5 intervals later. Before, the 20 storers' timers fired together and each
    looked the key up: 100 republication lookups; now one storer leads, 1/(1 - spread) an
    interval, and every storer still holds the value."""
    w = World()
    w.join()  # the recipient publishes its prekey: a second value, at its own 20 storers
    for i, layer in enumerate(w.layers.values()):
        layer.store.rng = Random(i)
    w.send(b"kept")
    storers = [a for a in w.online if w.layers[a].store.by_key.get(w.key)]
    assert len(storers) == 20
    w.run_to(NOON + 5 * I)
    lookups = sum(layer.stats["republish_lookups"] for layer in w.layers.values())
    values = 2  # the message and the prekey
    assert lookups <= values * (math.ceil(5 * I / EARLIEST) + 1)  # 14: before, 200
    assert all(w.layers[a].store.by_key.get(w.key) for a in storers)


ops = st.lists(st.tuples(st.sampled_from(["add", "touch", "republishing", "due", "remove"]),
                         st.integers(0, 3), st.floats(0.0, 2 * I)), max_size=40)


@hsettings(max_examples=200, deadline=None)
@given(ops, st.integers(0, 2**32))
def test_every_held_value_is_due_exactly_at_its_time_and_never_waits_longer_than_an_interval(
        plan, seed):
    """A state machine of adds, received copies, own republications, dues and removals at
    increasing times: `due` returns a value exactly when its republish_at has come (once), it
    is never armed beyond `republish_interval` from the last event that armed it, and
    `get_timer` is never later than the next value due."""
    store = ValueStore(StorageSettings(max_values=10), Random(seed))
    vals = [value(n + 1) for n in range(4)]
    now, armed = 0.0, {}
    for what, n, step in plan:
        now += step
        v = vals[n]
        held = store.values.get(v.vid)
        if what == "add" and held is None:
            store.add(v, 1e12, now)
            armed[v.vid] = now
        elif what == "touch" and held is not None:
            store.touch(v.vid, now)
            armed[v.vid] = now
        elif what == "republishing" and held is not None:
            store.republishing(held, now)
            armed[v.vid] = now
        elif what == "remove" and held is not None:
            store.delete(v.key, (v.vid,), now)
        expect = {vid for vid, h in store.values.items() if h.republish_at <= now}
        timer = store.get_timer()
        if store.values:
            assert timer is not None and timer <= min(h.republish_at for h in store.values.values())
        if what == "due" or expect:
            due = store.due(now)
            assert {h.value.vid for h in due} == expect and len(due) == len(expect)
            for vid in expect:
                armed[vid] = now
        for vid, h in store.values.items():
            assert armed[vid] + EARLIEST - 1e-6 <= h.republish_at <= armed[vid] + I + 1e-6
            assert h.republish_at > now
