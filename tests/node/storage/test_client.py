"""The client role with explicit time: stores, fetches and deletes through a stand-in lookup,
their outcomes as events, and what a lying storer or a stray answer gets."""

from __future__ import annotations

from random import Random

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import LAYER_OF, STORAGE_LAYER, Node
from kadtalk.node.storage import (STORAGE, StorageLayer, StorageSettings, StoreFailed,
                                  ValuesFound, ValueStored, records, wire)

from .conftest import WALL, A, B, C, identity, mailbox_record, node, storer


class Done:
    def __init__(self, lookup_id, closest):
        self.lookup_id, self.closest = lookup_id, tuple(closest)


class Client:
    """A client layer whose lookups end when the test says, naming `nodes`."""

    def __init__(self, nodes=(), busy=False, settings=None):
        self.started: list[int] = []
        self.busy = busy
        self.layer = StorageLayer(identity("client"), settings, WALL, lookup=self.lookup)
        self.nodes = [(i + 1, addr) for i, addr in enumerate(nodes)]

    def lookup(self, target, now):
        if self.busy:
            return None
        self.started.append(len(self.started))
        return self.started[-1]

    def finish(self, now=0.0):
        while self.started:
            self.layer.lookup_done(Done(self.started.pop(0), self.nodes), now)
        return self.layer.datagrams_to_send(now)

    def events(self):
        out = []
        while (e := self.layer.next_event()) is not None:
            out.append(e)
        return out


def carry(client, storers, out, now=0.0):
    """Deliver the client's datagrams to the storers at their addresses, and the answers back."""
    for data, dst in out:
        if dst in storers:
            storers[dst].receive_datagram(data, A, now)
            for answer, back in storers[dst].datagrams_to_send(now):
                assert back == A
                client.layer.receive_datagram(answer, dst, now)


def test_a_put_is_stored_at_every_node_the_lookup_named():
    client = Client([B, C])
    storers = {B: storer(), C: storer()}
    key, rec = mailbox_record(identity("client"), identity("bob"))
    vid = client.layer.put(key, rec, 0.0)
    carry(client, storers, client.finish())
    (event,) = client.events()
    assert event == ValueStored(key, vid, 2, 0, 0, 0.0)
    assert all(vid in s.store.values for s in storers.values())


def test_put_failures_busy_no_nodes_timeout_and_refusals():
    key, rec = mailbox_record(identity("client"), identity("bob"))
    busy = Client(busy=True)
    busy.layer.put(key, rec, 0.0)
    assert [e.reason for e in busy.events()] == ["busy"]
    empty = Client([])
    empty.layer.put(key, rec, 0.0)
    empty.finish()
    assert [e.reason for e in empty.events()] == ["no_nodes"]
    silent = Client([B])
    silent.layer.put(key, rec, 0.0)
    assert len(silent.finish()) == 1 and silent.events() == []
    assert silent.layer.get_timer() == 2.0
    silent.layer.handle_timer(2.0)
    assert [type(e) for e in silent.events()] == [StoreFailed]
    full = Client([B])
    full.layer.put(key, rec, 0.0)
    carry(full, {B: storer(StorageSettings(max_per_author=1))}, full.finish())
    assert [type(e) for e in full.events()] == [ValueStored]  # the first one fits
    refusing = storer(StorageSettings(max_per_author=1))
    refusing.store.per_author[identity("client").node_id] = 1  # that author is at its quota
    quota = Client([B])
    quota.layer.put(key, rec, 0.0)
    carry(quota, {B: refusing}, quota.finish())
    assert [e.reason for e in quota.events()] == ["quota"]


def test_stray_answers_are_unsolicited_drops():
    client = Client([B])
    key, rec = mailbox_record(identity("client"), identity("bob"))
    vid = client.layer.put(key, rec, 0.0)
    client.finish()
    client.layer.receive_datagram(wire.stored(key, vid, wire.OK), C, 0.0)  # not asked
    client.layer.receive_datagram(wire.stored(key, bytes(16), wire.OK), B, 0.0)  # other value
    client.layer.receive_datagram(wire.found(key, bytes(8), 0, wire.NO_MORE, []), B, 0.0)
    assert client.layer.drop_counts() == {"unsolicited": 3} and client.events() == []


def test_a_stored_with_an_unknown_status_is_a_counted_drop_not_a_crash():
    """Found by the fuzz target: a refusal with status 242 ended the put in a KeyError."""
    client = Client([B])
    key, rec = mailbox_record(identity("client"), identity("bob"))
    vid = client.layer.put(key, rec, 0.0)
    client.finish()
    client.layer.receive_datagram(wire.stored(key, vid, 242), B, 0.0)
    assert client.layer.drop_counts() == {"malformed": 1} and client.events() == []
    client.layer.handle_timer(2.0)
    assert [e.reason for e in client.events()] == ["timeout"]


def test_a_fetch_keeps_only_values_their_authors_signed_and_dedups_copies():
    client = Client([B, C])
    bob = identity("bob")
    key, good = mailbox_record(identity("alice"), bob)
    honest, liar = storer(), storer()
    for s in (honest, liar):
        s.receive_datagram(wire.store(key, good), A, 0.0)
        s.datagrams_to_send(0.0)
    forged = good[:-3] + b"xyz"  # the lying storer changes the signature it serves
    liar.store.values[records.read(key, good).vid].value = records.read(key, forged, False)
    client.layer.fetch(key, 0.0)
    out = client.finish()
    carry(client, {B: honest, C: liar}, out)
    for _ in range(3):  # pages padded to a full one after a too-small first answer
        carry(client, {B: honest, C: liar}, client.layer.datagrams_to_send(0.0))
    (found,) = [e for e in client.events() if type(e) is ValuesFound]
    assert [v.raw for v in found.values] == [good] and (found.asked, found.answered) == (2, 2)
    assert client.layer.drop_counts() == {"bad_value": 1}


def test_prekeys_rotate_on_the_timer_and_old_ones_are_kept_for_late_messages():
    client = Client([B], settings=StorageSettings(prekey_rotation=100.0, ttl=300,
                                                  clock_skew=0))
    first = client.layer.publish_prekey(0.0)
    client.finish()
    client.layer.handle_timer(2.0)  # nobody answered the store: StoreFailed, nothing pending
    assert client.layer.get_timer() == 100.0
    client.layer.handle_timer(100.0)
    assert [p[1] for p in client.layer.prekeys][1] == first and len(client.layer.prekeys) == 2
    client.layer.handle_timer(200.0)
    client.layer.handle_timer(300.0)
    client.layer.handle_timer(400.0)
    client.layer.handle_timer(500.0)  # the first is 500 s old: rotation + ttl has passed
    assert first not in [p[1] for p in client.layer.prekeys]


def test_the_node_routes_0x0a_to_storage_only_with_an_identity():
    assert LAYER_OF[STORAGE] == STORAGE_LAYER
    bare = Node(1, ContactRegistry(), Random(1))
    bare.receive_datagram(bytes((STORAGE, wire.STORE)), A, 0.0)
    assert bare.drop_counts() == {"unknown_type": 1}
    off = node("off", StorageSettings(enabled=False))
    off.receive_datagram(bytes((STORAGE, wire.STORE)), A, 0.0)
    assert off.drop_counts() == {"unknown_type": 1} and off.storage is None
    on = node("on")
    on.receive_datagram(bytes((STORAGE, wire.STORE)), A, 0.0)
    assert on.drop_counts() == {"malformed": 1}
    key, rec = mailbox_record(identity("alice"), identity("bob"))
    on.receive_datagram(wire.store(key, rec), A, 0.0)
    assert [len(d) for d, _ in on.datagrams_to_send(0.0)] == [wire.STORED_SIZE]
    assert on.get_timer() is not None and on.get_timer() <= 3600.0  # expiry / republication


def test_a_storer_that_never_ends_its_pages_is_asked_at_most_max_pages_times():
    from kadtalk.node.storage.layer import MAX_PAGES

    client = Client([B])
    key = records.mailbox_key(identity("bob").node_id, 1)
    client.layer.fetch(key, 0.0)
    out = client.finish()
    asked = 0
    while out:
        (request, dst), = out
        asked += 1
        nonce = request[22:30]
        client.layer.receive_datagram(wire.found(key, nonce, 9, 0, []), B, 0.0)  # "more"
        out = client.layer.datagrams_to_send(0.0)
    assert asked == MAX_PAGES
    assert [type(e) for e in client.events()] == [ValuesFound]


def test_events_are_frozen_dataclasses_on_one_base():
    import dataclasses

    from kadtalk.node.layer import Event
    from kadtalk.node.storage import events

    kinds = [events.ValueStored, events.StoreFailed, events.ValuesFound, events.PrekeyFound,
             events.MessageReceived, events.ValuesDeleted]
    for kind in kinds:
        assert issubclass(kind, events.StorageEvent) and issubclass(kind, Event)
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen
    event = events.StoreFailed(bytes(20), bytes(16), "timeout", 1.0)
    try:
        event.reason = "other"
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("events must be immutable")
