"""The offline-message flow with explicit time, on the in-memory network (the daemon's Node
code): `mail` finds the recipient's signed prekey, seals and stores; a recipient with
`keep_mailbox` publishes its prekey and fetches its mailbox at each join and every
`mailbox_interval`, also after a restart with its kept prekeys; acknowledged values are deleted
at every holder and a replay is refused or shown once; a forged sender is dropped."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kadtalk.node.session.messages import decode_text, encode_text
from kadtalk.node.storage import (MailFailed, MailStored, MessageReceived, PrekeyMade,
                                  StorageLayer, StorageSettings, ValuesDeleted, ValuesFound,
                                  records, sealed, wire)

from .conftest import B, WALL, identity, node, storer, swarm
from .test_end_to_end import holders, wait_for

SETTINGS = StorageSettings(mailbox_interval=600.0)


def start_recipient(net, addrs, at, kept=()):
    """The recipient's daemon starting: its node, the kept prekeys, the upkeep's join."""
    recipient = node("mailbox-recipient", SETTINGS)
    recipient.storage.keep_mailbox(list(kept), net.now)
    net.attach(at, recipient)
    recipient.keep_joined([addrs[0]], net.now)
    net.service(at)
    return recipient


def test_a_message_mailed_while_the_recipient_is_offline_opens_after_its_restart_and_is_deleted():
    net, addrs = swarm(12, SETTINGS)
    sender_addr = addrs[7]
    sender = net.nodes[sender_addr]
    me = identity("mailbox-recipient").node_id

    first = ("10.0.1.1", 5004)
    start_recipient(net, addrs, first)
    made = wait_for(net, first, PrekeyMade)  # published at the join, kept by its owner
    wait_for(net, first, ValuesFound)  # and the mailbox fetched at once: empty
    assert not net.of(first, MessageReceived)
    net.detach(first)  # the daemon stops

    text = encode_text(b"\x11" * 16, 1, 1_767_225_600_000, "while you were out")
    sender.storage.mail(me, text, net.now, tag="m1")
    sender.pump_storage(net.now)
    mailed = wait_for(net, sender_addr, MailStored)
    assert (mailed.recipient, mailed.tag) == (me, "m1") and mailed.stored >= 10
    copies = holders(net, mailed.vid)
    assert len(copies) == mailed.stored

    # restarted (a new node, another port) with the prekey kept from PrekeyMade: the join
    # publishes that same prekey (no new one) and the fetch opens the box
    again = ("10.0.1.2", 5004)
    recipient = start_recipient(net, addrs, again, [(made.private, made.made)])
    got = wait_for(net, again, MessageReceived)
    assert (got.vid, got.sender, got.plaintext) == (mailed.vid, sender.storage.identity.node_id,
                                                    text)
    assert decode_text(got.plaintext).message_id == b"\x11" * 16
    assert not net.of(again, PrekeyMade) and recipient.storage.prekeys[0][1] == made.public

    # a second fetch before the acknowledgement: the same value, reported once
    net.run_until(net.now + 5)  # the join's fetch has ended
    before = len(net.of(again, ValuesFound))
    ops = recipient.storage.fetch_mailbox(net.now)
    recipient.pump_storage(net.now)
    wait_for(net, again, ValuesFound, count=before + len(ops))
    assert len(net.of(again, MessageReceived)) == 1

    # one holder is away while the DELETE goes: the next fetch finds its copy and deletes it
    missed = copies[0]
    away = net.detach(missed)
    recipient.storage.acknowledge(got.epoch, [got.vid], net.now)
    recipient.pump_storage(net.now)
    deleted = wait_for(net, again, ValuesDeleted)
    assert deleted.asked - deleted.confirmed == 1  # the holder away
    assert holders(net, mailed.vid) == []  # of those on the network
    net.attach(missed, away)
    assert holders(net, mailed.vid) == [missed]
    net.run_until(net.now + SETTINGS.mailbox_interval + 10)  # the periodic fetch
    assert recipient.storage.stats["acknowledged_again"] == 1
    assert holders(net, mailed.vid) == []
    assert len(net.of(again, MessageReceived)) == 1

    # a replay of the deleted record is refused by the tombstones (no republish revives it)
    replay = wire.store(records.mailbox_key(me, got.epoch), _SENT[mailed.vid])
    net.nodes[copies[1]].storage.receive_datagram(replay, sender_addr, net.now)
    (answer, _), = net.nodes[copies[1]].storage.datagrams_to_send(net.now)
    assert answer[38] == wire.GONE

    # a later message: fetched by the periodic fetch, within mailbox_interval
    later = encode_text(b"\x22" * 16, 2, 1_767_225_700_000, "and another")
    sender.storage.mail(me, later, net.now, tag="m2")
    sender.pump_storage(net.now)
    wait_for(net, sender_addr, MailStored, count=2)
    mailed_at = net.now
    net.run(until=lambda: len(net.of(again, MessageReceived)) == 2,
            limit=net.now + SETTINGS.mailbox_interval + 10)
    second = net.of(again, MessageReceived)[1]
    assert second.plaintext == later and second.at - mailed_at <= SETTINGS.mailbox_interval + 5
    for addr, n in net.nodes.items():
        assert "bad_signature" not in n.drop_counts(), addr


_SENT: dict[bytes, bytes] = {}


@pytest.fixture(autouse=True)
def _keep_records(monkeypatch):
    """Remember each record a client stores (its bytes), for the replay."""
    from kadtalk.node.storage.layer import StorageLayer

    put = StorageLayer.put

    def remember(self, key, record, now):
        vid = put(self, key, record, now)
        _SENT[vid] = record
        return vid

    monkeypatch.setattr(StorageLayer, "put", remember)


def test_a_box_rewrapped_by_another_author_is_dropped_and_mail_without_a_prekey_fails():
    net, addrs = swarm(8, SETTINGS)
    here = ("10.0.1.3", 5004)
    recipient = start_recipient(net, addrs, here)
    made = wait_for(net, here, PrekeyMade)
    net.run_until(net.now + 5)  # the join's fetch has ended
    me = recipient.storage.identity.node_id

    # Mallory seals a box in Alice's name? She cannot sign as Alice. She takes a box Alice
    # sealed and stores it under her own signature: the box says Alice, the record Mallory
    forger = net.nodes[addrs[3]]
    box = sealed.seal(made.public, me, identity("alice"), encode_text(b"\x33" * 16, 1, 0, "hi"))
    key = records.mailbox_key(me, records.epoch_of(WALL + net.now, SETTINGS.epoch_length))
    forger.storage.put(key, records.make(forger.storage.identity, key, wire.MAILBOX,
                                         int(WALL + net.now + 3600), 7, box), net.now)
    forger.pump_storage(net.now)
    net.service(addrs[3])  # its lookup goes now (nothing else may wake the forger)
    net.run_until(net.now + 5)
    # and a box altered in transit to the storer (its author signed the altered bytes)
    altered = bytearray(sealed.seal(made.public, me, forger.storage.identity, b"x"))
    altered[-1] ^= 1
    forger.storage.put(key, records.make(forger.storage.identity, key, wire.MAILBOX,
                                         int(WALL + net.now + 3600), 8, bytes(altered)), net.now)
    forger.pump_storage(net.now)
    net.service(addrs[3])  # its lookup goes now (nothing else may wake the forger)
    net.run_until(net.now + 5)

    before = len(net.of(here, ValuesFound))
    ops = recipient.storage.fetch_mailbox(net.now)
    recipient.pump_storage(net.now)
    wait_for(net, here, ValuesFound, count=before + len(ops))
    assert not net.of(here, MessageReceived)
    drops = recipient.storage.drop_counts()
    assert drops["sender_mismatch"] == 1 and drops["unopenable"] == 1

    # mail to a node that never published a prekey fails, and says why
    sender = net.nodes[addrs[5]]
    sender.storage.mail(identity("nobody-here").node_id, b"\x07hello", net.now, tag=9)
    sender.pump_storage(net.now)
    failed = wait_for(net, addrs[5], MailFailed)
    assert (failed.tag, failed.reason) == (9, "no_prekey")


def test_kept_prekeys_come_back_young_ones_are_published_again_old_ones_only_open_boxes():
    from .test_client import Client

    s = StorageSettings(prekey_rotation=100.0, ttl=300, clock_skew=0)  # prekey_keep: 400 s
    young, kept, old = (bytes([i]) * 32 for i in (1, 2, 3))
    client = Client(settings=s)
    layer = client.layer
    layer.keep_mailbox([(kept, WALL - 250), (young, WALL - 30), (old, WALL - 450)], 0.0)
    assert [p[2] for p in layer.prekeys] == [WALL - 30, WALL - 250]  # newest first; old: gone
    layer.joined(0.0)
    assert client.events() == [] and layer.get_timer() == 0.0  # on the timer, after the join
    layer.handle_timer(0.0)
    assert not [e for e in client.events() if type(e) is PrekeyMade]  # the young one, again
    assert layer._rotate_at == 70.0  # its rotation: 100 s after it was made
    stores = [op for op in layer._ops.values() if op.kind == "store"]
    (value,) = [records.read(op.key, op.records[0]) for op in stores]
    assert (value.body, value.sequence) == (layer.prekeys[0][1], int(WALL - 30))

    later = Client(settings=s)  # a restart long after: the kept one is too old to publish
    later.layer.keep_mailbox([(kept, WALL - 250)], 0.0)
    later.layer.joined(0.0)
    later.layer.handle_timer(0.0)
    (made,) = [e for e in later.events() if type(e) is PrekeyMade]
    assert [p[1] for p in later.layer.prekeys] == [made.public, sealed.public_bytes(
        later.layer.prekeys[1][0])] and made.made == WALL
    assert later.layer.prekeys[1][2] == WALL - 250  # still opens boxes sealed to it

    idle = Client(settings=s)  # keep_mailbox never called: a join publishes nothing
    idle.layer.joined(0.0)
    assert idle.layer.get_timer() is None and idle.started == []


def test_mail_refused_by_a_storers_quota_fails_with_the_reason():
    from .test_client import Client, carry

    holder = storer(StorageSettings(max_per_author=2))  # two values per author
    client = Client([B])
    me = identity("quota-recipient")
    public = sealed.public_bytes(X25519PrivateKey.generate())
    key = records.prekey_key(me.node_id)
    carry(client, {B: holder}, [(wire.store(key, records.make(
        me, key, wire.PREKEY, int(WALL + 3600), int(WALL), public)), B)])
    for tag in ("first", "second", "third"):
        client.layer.mail(me.node_id, encode_text(bytes(16), 1, 0, tag), 0.0, tag=tag)
        carry(client, {B: holder}, client.finish())  # the prekey fetch
        carry(client, {B: holder}, client.finish())  # the store
    outcomes = [(e.tag, getattr(e, "reason", "stored")) for e in client.events()
                if type(e) in (MailStored, MailFailed)]
    assert outcomes == [("first", "stored"), ("second", "stored"), ("third", "quota")]
    assert holder.drop_counts()["quota"] == 1


def test_mail_takes_no_prekey_a_storer_forged_for_the_recipient():
    """A lying storer answers the prekey fetch with a prekey of Mallory's, signed by Mallory and
    labelled with Bob's prekey key: dropped (`bad_value`), nothing is sealed to it."""
    from .test_client import Client

    client = Client([B])
    bob, mallory = identity("bob"), identity("mallory")
    key = records.prekey_key(bob.node_id)
    forged = records.make(mallory, key, wire.PREKEY, int(WALL + 3600), int(WALL),
                          sealed.public_bytes(X25519PrivateKey.generate()))
    client.layer.mail(bob.node_id, b"\x07secret", 0.0, tag="m")
    (request, to), = client.finish()
    assert to == B and request[1] == wire.FIND_VALUE
    client.layer.receive_datagram(wire.found(key, request[22:30], 1, wire.NO_MORE, [forged], []),
                                  B, 0.0)
    events = client.events()
    assert [(e.tag, e.reason) for e in events if type(e) is MailFailed] == [("m", "no_prekey")]
    assert not [e for e in events if type(e) is MailStored] and client.started == []
    assert client.layer.drop_counts()["bad_value"] == 1


# -- the recipient's layer alone: what it reports, keeps and publishes --------------------------

def fetched(client, epoch, recs, now=0.0):
    """One fetch of our mailbox of `epoch` that storer B answers with `recs`: the events."""
    from .test_client import B as STORER

    key = records.mailbox_key(client.layer.identity.node_id, epoch)
    client.nodes = [(1, STORER)]
    client.layer.fetch(key, now, ("mailbox", epoch))
    ((request, _),) = client.finish(now)
    client.layer.receive_datagram(wire.found(key, request[22:30], len(recs), wire.NO_MORE, recs,
                                             []), STORER, now)
    return client.events()


def test_a_box_its_owner_could_not_keep_is_reported_again_and_an_expired_one_never():
    from .test_client import Client

    client = Client()
    layer = client.layer
    me = layer.identity.node_id
    public = layer.publish_prekey(0.0)
    client.started.clear()
    client.events()
    epoch = records.epoch_of(WALL, SETTINGS.epoch_length)
    key = records.mailbox_key(me, epoch)
    alice = identity("alice")
    box = records.make(alice, key, wire.MAILBOX, int(WALL + 3600), 1,
                       sealed.seal(public, me, alice, b"\x07hello"))
    old = records.make(alice, key, wire.MAILBOX, int(WALL - 1), 2,  # its lifetime is over
                       sealed.seal(public, me, alice, b"\x07old news"))
    (got,) = [e for e in fetched(client, epoch, [box, old]) if type(e) is MessageReceived]
    assert got.plaintext == b"\x07hello" and layer.drop_counts()["expired"] == 1
    assert not [e for e in fetched(client, epoch, [box]) if type(e) is MessageReceived]  # seen
    layer.not_kept(got.vid)  # the owner's history could not write it: not acknowledged
    (again,) = [e for e in fetched(client, epoch, [box]) if type(e) is MessageReceived]
    assert again.vid == got.vid


def test_a_prekey_its_owner_cannot_keep_is_never_published_and_the_kept_one_stays():
    from .test_client import Client

    s = StorageSettings(prekey_rotation=100.0, ttl=300, clock_skew=0)
    kept = bytes([5]) * 32
    writable = [False]
    stored = []

    def keep(public, private, made):
        if writable[0]:
            stored.append((public, private, made))
        return writable[0]

    client = Client(settings=s)
    layer = client.layer
    layer.keep_mailbox([(kept, WALL - 150)], 0.0, keep=keep)  # older than prekey_rotation
    layer.joined(0.0)
    layer.handle_timer(0.0)  # a new prekey is due, but the history cannot take it
    assert not [e for e in client.events() if type(e) is PrekeyMade] and stored == []
    assert [p[2] for p in layer.prekeys] == [WALL - 150] and layer.stats["prekey_not_kept"] == 1
    stores = [op for op in layer._ops.values() if op.kind == "store"]
    assert [records.read(op.key, op.records[0]).body for op in stores] == [layer.prekeys[0][1]]
    assert layer._rotate_at == min(s.mailbox_interval, s.prekey_rotation)  # tried again then
    writable[0] = True
    layer.handle_timer(layer._rotate_at)
    (made,) = [e for e in client.events() if type(e) is PrekeyMade]
    assert stored == [(made.public, made.private, made.made)]  # kept before it was published
    assert layer.prekeys[0][1] == made.public


def test_a_box_acknowledged_before_a_restart_is_acknowledged_again_not_opened():
    """A storer that missed our DELETE returns the box after a restart: the ids the owner kept
    (keep_mailbox's `acknowledged`) make it a DELETE again, not a message shown twice."""
    from .test_client import Client

    client = Client()
    layer = client.layer
    me = layer.identity.node_id
    public = layer.publish_prekey(0.0)
    client.started.clear()
    client.events()
    epoch = records.epoch_of(WALL, SETTINGS.epoch_length)
    key = records.mailbox_key(me, epoch)
    alice = identity("alice")
    box = records.make(alice, key, wire.MAILBOX, int(WALL + 3600), 1,
                       sealed.seal(public, me, alice, b"\x07hello"))
    vid = records.read(key, box).vid
    layer.keep_mailbox([], 0.0, acknowledged=[(vid, epoch)])
    assert not [e for e in fetched(client, epoch, [box]) if type(e) is MessageReceived]
    assert layer.stats["acknowledged_again"] == 1
    deletes = [d for d, _ in client.finish() if d[:2] == bytes((wire.STORAGE, wire.DELETE))]
    assert len(deletes) == 1 and vid in deletes[0]


def test_a_storer_whose_boxes_do_not_open_is_asked_for_no_further_page():
    """Review 2: a malicious storer pages out thousands of validly signed boxes none of which
    opens (each costs a signature check and a try per kept prekey). After a page of them it is
    asked no more; a storer whose page holds one of ours is paged on."""
    from .test_client import B as STORER
    from .test_client import Client

    def first_pages(client, recs):
        layer = client.layer
        epoch = records.epoch_of(WALL, SETTINGS.epoch_length)
        key = records.mailbox_key(layer.identity.node_id, epoch)
        client.nodes = [(1, STORER)]
        layer.fetch(key, 0.0, ("mailbox", epoch))
        ((request, _),) = client.finish()
        layer.receive_datagram(wire.found(key, request[22:30], 2000, 3, recs, []), STORER, 0.0)
        return [d for d, _ in layer.datagrams_to_send(0.0)
                if d[:2] == bytes((wire.STORAGE, wire.FIND_VALUE))], key

    sybil, alice = identity("sybil"), identity("alice")
    client = Client()
    me = client.layer.identity.node_id
    public = client.layer.publish_prekey(0.0)
    client.started.clear()
    stranger = sealed.public_bytes(X25519PrivateKey.generate())  # not our prekey
    epoch = records.epoch_of(WALL, SETTINGS.epoch_length)
    key = records.mailbox_key(me, epoch)
    junk = [records.make(sybil, key, wire.MAILBOX, int(WALL + 3600), i,
                         sealed.seal(stranger, me, sybil, b"x")) for i in range(3)]
    more, _ = first_pages(client, junk)
    assert more == [] and client.layer.drop_counts()["unopenable_storer"] == 1
    assert client.layer.stats["unopenable"] == 3

    honest = Client()
    public = honest.layer.publish_prekey(0.0)
    honest.started.clear()
    me = honest.layer.identity.node_id
    ours = records.make(alice, key, wire.MAILBOX, int(WALL + 3600), 9,
                        sealed.seal(public, me, alice, b"\x07hi"))
    more, _ = first_pages(honest, junk[:2] + [ours])
    assert len(more) == 1 and not honest.layer.drop_counts()["unopenable_storer"]
    assert [e.plaintext for e in honest.events() if type(e) is MessageReceived] == [b"\x07hi"]


# -- which epochs a fetch asks for ----------------------------------------------------------------

class Recipient:
    """A recipient's layer whose lookups never end (they time out): the epochs it fetched."""

    def __init__(self, settings, busy=lambda now: False, kept_since=7.5 * 86400):
        self.busy = busy
        self.layer = StorageLayer(identity("epochs"), settings, WALL, lookup=self.lookup)
        me = self.layer.identity.node_id
        first = records.epoch_of(WALL, settings.epoch_length) - 10
        self.epochs = {int.from_bytes(records.mailbox_key(me, e), "big"): e
                       for e in range(first, first + 30)}
        self.fetched: list[tuple[float, int]] = []  # (now, epoch)
        # a prekey kept from an earlier run, made `kept_since` s before now 0 (None: none)
        kept = [] if kept_since is None else [(bytes(range(32)), WALL - kept_since)]
        self.layer.keep_mailbox(kept, 0.0)

    def lookup(self, target, now):
        if self.busy(now):
            return None
        if target in self.epochs:
            self.fetched.append((now, self.epochs[target]))
        return len(self.fetched) + 1000 * now

    def run_to(self, end):
        while (at := self.layer.get_timer()) is not None and at <= end:
            self.layer.handle_timer(at)
            self.layer.datagrams_to_send(at)

    def epochs_at(self, now):
        return [e for t, e in self.fetched if t == now]


def test_the_join_fetches_every_epoch_then_each_fetch_only_those_a_new_box_can_be_under():
    s = StorageSettings()
    day = records.epoch_of(WALL, s.epoch_length)  # WALL is midnight: now 0 starts epoch `day`
    noon = 12 * 3600.0
    r = Recipient(s)
    r.layer.joined(noon)
    r.run_to(noon)
    # at the join: the 8 epochs an unexpired box may be under (7 days and the clock skew back)
    assert r.epochs_at(noon) == list(range(day - 7, day + 1))
    r.run_to(noon + s.mailbox_interval)
    assert r.epochs_at(noon + s.mailbox_interval) == [day]  # a box stored since: today's
    # near midnight a sender's clock may be past it (next epoch), and just after it, behind
    late = 23.5 * 3600  # fetches come every 300 s from noon: 23:30 is one
    r.run_to(late)
    assert r.epochs_at(late) == [day, day + 1]
    r.run_to(26 * 3600)
    assert r.epochs_at(24 * 3600 + 300 * 2) == [day, day + 1]  # 00:10: yesterday's too
    assert r.epochs_at(26 * 3600) == [day + 1]  # 02:00: today's only
    # a day after the join: every epoch again that a box sealed to a prekey we hold can be
    # under: the oldest now is the join's (the kept one was dropped after prekey_keep)
    sweep = noon + s.mailbox_sweep
    r.run_to(sweep)
    assert r.epochs_at(sweep) == [day, day + 1]
    assert r.epochs_at(sweep - s.mailbox_interval) == [day + 1]
    per_day = len([1 for t, _ in r.fetched if noon < t < sweep])
    assert per_day < 1.2 * 86400 / s.mailbox_interval  # it was 9 an hour x 24: 2,592
    assert r.layer.stats["mailbox_lookups"] == len(r.fetched)


def test_a_fetch_that_could_not_start_leaves_its_epochs_to_the_next():
    s = StorageSettings(mailbox_sweep=7 * 86400.0)
    day = records.epoch_of(WALL, s.epoch_length)
    noon = 12 * 3600.0
    # the routing layer refuses every lookup from the first periodic fetch until 36 h
    r = Recipient(s, busy=lambda now: noon < now < 36 * 3600)
    r.layer.joined(noon)
    r.run_to(40 * 3600)
    assert r.epochs_at(noon) == list(range(day - 7, day + 1))
    first_again = min(t for t, _ in r.fetched if t > noon)
    # everything since the last whole fetch (at noon of `day`): that day's epoch and the next
    assert r.epochs_at(first_again) == [day, day + 1]


def test_no_epoch_before_the_oldest_prekey_we_hold_is_fetched():
    s = StorageSettings()
    day = records.epoch_of(WALL, s.epoch_length)
    noon = 12 * 3600.0
    new = Recipient(s, kept_since=None)  # a first start: nothing can be sealed to us before
    new.layer.joined(noon)
    new.run_to(noon)
    assert new.epochs_at(noon) == [day]
    back = Recipient(s, kept_since=2.5 * 86400)  # a restart, the oldest prekey 2.5 days old
    back.layer.joined(noon)
    back.run_to(noon)
    assert back.epochs_at(noon) == [day - 3, day - 2, day - 1, day]  # made at day-3 12:00
    # a day later, the sweep: those again (a box a storer's churn hid is found then), and the
    # fetches around it only today's
    sweep = noon + s.mailbox_sweep
    back.run_to(sweep)
    assert back.epochs_at(sweep) == [day - 3, day - 2, day - 1, day, day + 1]
    assert back.epochs_at(sweep - s.mailbox_interval) == [day + 1]
