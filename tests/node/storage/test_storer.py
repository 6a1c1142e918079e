"""The storer role with explicit time: what is stored, refused, answered, paged, deleted and
expired, and what an attacker gets out of it (forged values, quotas, floods, amplification)."""

from __future__ import annotations

import os

from kadtalk.node.identity import Identity
from kadtalk.node.storage import StorageSettings, records, wire

from .conftest import WALL, A, B, identity, mailbox_record, storer

WIDE = 1e9
OPEN = dict(verify_rate=WIDE, verify_burst=WIDE, source_rate=WIDE, source_burst=WIDE,
            find_rate=WIDE, find_burst=WIDE)


def store(layer, key, rec, addr=A, now=0.0):
    layer.receive_datagram(wire.store(key, rec), addr, now)
    return layer.datagrams_to_send(now)


def status_of(out):
    (data, _), = out
    assert data[:2] == bytes((wire.STORAGE, wire.STORED)) and len(data) == wire.STORED_SIZE
    return data[38]


def test_a_signed_value_is_stored_once_and_answered_smaller_than_the_store():
    layer = storer()
    key, rec = mailbox_record(identity("alice"), identity("bob"))
    out = store(layer, key, rec)
    assert status_of(out) == wire.OK and len(out[0][0]) < len(wire.store(key, rec))
    assert out[0][1] == A
    assert status_of(store(layer, key, rec, addr=B)) == wire.DUPLICATE  # a replica's copy
    assert len(layer.store) == 1 and layer.stats["stored"] == 1


def test_forged_or_moved_values_are_dropped_unanswered():
    layer = storer()
    key, rec = mailbox_record(identity("alice"), identity("bob"))
    forged = rec[:-1] + bytes((rec[-1] ^ 1,))
    assert store(layer, key, forged) == []
    other = records.mailbox_key(identity("carol").node_id, 5)
    assert store(layer, other, rec) == []  # signed for another key
    body_changed = rec.replace(b"ciphertext", b"CIPHERTEXT")
    assert store(layer, key, body_changed) == []
    assert layer.drop_counts() == {"bad_signature": 3} and len(layer.store) == 0


def test_a_value_signed_by_the_wrong_key_names_another_author():
    """The SPKI in a record is its author: a value claiming alice but signed by mallory's key
    fails, whichever SPKI it carries."""
    layer = storer()
    alice, mallory = identity("alice"), identity("mallory")
    key, rec = mailbox_record(alice, identity("bob"))
    parsed = wire.parse_record(rec)
    signature = mallory.sign(wire.signed_value(key, parsed.kind, parsed.expiry, parsed.sequence,
                                               parsed.body))
    claimed = wire.record(parsed.kind, parsed.expiry, parsed.sequence, alice.public_der,
                          parsed.body, signature)
    assert store(layer, key, claimed) == []
    assert layer.drop_counts() == {"bad_signature": 1}


def test_prekeys_only_under_their_authors_key_and_newer_replaces_older():
    layer = storer()
    alice = identity("alice")
    key = records.prekey_key(alice.node_id)
    old = records.make(alice, key, wire.PREKEY, int(WALL + 3600), 10, bytes(32))
    new = records.make(alice, key, wire.PREKEY, int(WALL + 3600), 11, bytes(range(32)))
    wrong_key = records.prekey_key(identity("bob").node_id)
    assert store(layer, wrong_key, records.make(alice, wrong_key, wire.PREKEY, int(WALL + 60), 1,
                                                 bytes(32))) == []
    assert layer.drop_counts() == {"wrong_key": 1}
    assert status_of(store(layer, key, old)) == wire.OK
    assert status_of(store(layer, key, new)) == wire.OK
    assert status_of(store(layer, key, old)) == wire.STALE
    (held,) = layer.store.values.values()
    assert held.value.sequence == 11 and held.value.body == bytes(range(32))


def test_expiry_in_the_past_or_beyond_the_ttl_is_refused():
    layer = storer(StorageSettings(ttl=7 * 86_400, clock_skew=3600))
    key, rec = mailbox_record(identity("alice"), identity("bob"), ttl=-1)
    assert store(layer, key, rec) == []
    key, rec = mailbox_record(identity("alice"), identity("bob"), ttl=7 * 86_400 + 3601)
    assert store(layer, key, rec) == []
    assert layer.drop_counts() == {"expired": 1, "too_long": 1}


def test_values_expire_at_their_signed_expiry():
    layer = storer()
    key, rec = mailbox_record(identity("alice"), identity("bob"), ttl=100)
    store(layer, key, rec)
    assert layer.get_timer() == 100.0
    layer.handle_timer(99.0)
    assert len(layer.store) == 1
    layer.handle_timer(100.0)
    assert len(layer.store) == 0 and layer.store.bytes == 0 and not layer.store.per_author


def test_per_author_per_key_and_node_quotas_hold():
    settings = StorageSettings(max_per_author=3, max_per_key=5, max_values=8, **OPEN)
    layer = storer(settings)
    alice, bob = identity("alice"), identity("bob")
    statuses = [status_of(store(layer, *mailbox_record(alice, bob, sequence=i))) for i in range(4)]
    assert statuses == [wire.OK] * 3 + [wire.QUOTA]
    authors = [Identity.generate() for _ in range(4)]
    for i, author in enumerate(authors):
        store(layer, *mailbox_record(author, bob, sequence=i))
    assert len(layer.store.by_key[mailbox_record(alice, bob)[0]]) == 5  # per key
    carol_authors = [Identity.generate() for _ in range(3)]
    statuses = [status_of(store(layer, *mailbox_record(a, identity("carol"))))
                for a in carol_authors]
    assert statuses == [wire.OK, wire.OK, wire.OK]  # 8 values: full
    assert status_of(store(layer, *mailbox_record(alice, identity("carol"), sequence=9))) \
        == wire.QUOTA
    assert status_of(store(layer, *mailbox_record(authors[0], identity("dave")))) == wire.FULL
    assert len(layer.store) == 8
    assert layer.drop_counts()["full"] == 1 and layer.drop_counts()["quota"] >= 3


def test_a_flood_of_stores_from_many_identities_stays_within_memory_bounds():
    """600 identities from 600 addresses each store values as big as allowed: the node holds
    at most max_values values of at most max_bytes bytes, and the first honest value stays."""
    settings = StorageSettings(max_values=100, max_bytes=60_000, **OPEN)
    layer = storer(settings)
    honest_key, honest = mailbox_record(identity("alice"), identity("bob"))
    store(layer, honest_key, honest)
    victim = identity("bob")
    for i in range(600):
        attacker = Identity.generate()
        key, rec = mailbox_record(attacker, victim, sequence=i, body=os.urandom(1100))
        store(layer, key, rec, addr=(f"198.18.{i // 250}.{i % 250 + 1}", 5004))
        assert len(layer.store) <= 100 and layer.store.bytes <= 60_000
    held = layer.store.values[records.read(honest_key, honest).vid].value
    assert held.raw == honest  # nothing stored is lost or altered
    assert layer.drop_counts()["full"] + layer.drop_counts()["quota"] >= 500


def test_signature_checks_are_metered_per_source():
    layer = storer(StorageSettings(source_rate=1.0, source_burst=5.0))
    bob = identity("bob")
    for i in range(20):
        store(layer, *mailbox_record(Identity.generate(), bob, sequence=i))
    assert len(layer.store) == 5 and layer.drop_counts()["rate_limited_source"] == 15


def test_find_value_pages_and_never_answers_more_than_the_request_to_an_unproven_address():
    validated = {B}
    layer = storer(StorageSettings(**OPEN), validated=validated.__contains__)
    bob = identity("bob")
    key = None
    stored = set()
    for i in range(12):
        key, rec = mailbox_record(Identity.generate(), bob, sequence=i, body=os.urandom(200))
        store(layer, key, rec)
        stored.add(rec)
    for addr, size in ((A, 500), (A, wire.FIND_SIZE), (B, wire.FIND_SIZE)):
        got, cursor, pages = set(), 0, 0
        while cursor != wire.NO_MORE and pages < 40:
            request = wire.find_value(key, b"n" * 8, cursor, size)
            layer.receive_datagram(request, addr, 0.0)
            (answer, dst), = layer.datagrams_to_send(0.0)
            assert dst == addr
            found = wire.parse_found(answer)
            assert found.total == 12 and found.nonce == b"n" * 8
            if addr == A:
                assert len(answer) <= len(request)
            else:
                assert len(answer) <= wire.MAX_ANSWER
            got.update(found.records)
            if not found.records:
                break  # a page too small for one record: the asker must pad more
            cursor, pages = found.next, pages + 1
        if size == wire.FIND_SIZE and addr == A:
            assert got == set() and cursor == 0  # 35 bytes hold no 380-byte record
        else:
            assert got == stored
        if addr == B:
            assert pages == 4  # validated: full 1,400-byte pages (three ~380-byte records each)
        elif size == 500:
            assert pages == 12  # one record per 500-byte request


def test_find_value_for_an_empty_key_returns_closer_contacts():
    contacts = [(i << 150, (f"192.0.2.{i}", 5004)) for i in range(1, 30)]
    layer = storer()
    layer._closest = lambda target, count: contacts[:count]
    layer._addr_to_wire = lambda addr: bytes(map(int, addr[0].split("."))) + addr[1].to_bytes(
        2, "big")
    layer.receive_datagram(wire.find_value(bytes(20), bytes(8), 0, 300), A, 0.0)
    (answer, _), = layer.datagrams_to_send(0.0)
    found = wire.parse_found(answer)
    assert found.total == 0 and found.records == () and len(answer) <= 300
    assert len(found.contacts) == (300 - wire.FOUND_HEADER) // 26 == 10
    assert found.contacts[0] == (1 << 150).to_bytes(20, "big") + bytes((192, 0, 2, 1, 19, 140))


def test_an_empty_answer_to_a_validated_address_carries_k_contacts_not_a_full_page():
    """52 contacts fit a validated 1,400-byte FOUND; a reader iterating FIND_VALUE needs the k
    closest, as ROUTE_RES gives (before: 52, 1,387 bytes, for every periodic fetch's empty
    answer)."""
    contacts = [(i << 150, (f"192.0.2.{i}", 5004)) for i in range(1, 60)]
    layer = storer(StorageSettings(replicas=20), validated=lambda addr: True)
    layer._closest = lambda target, count: contacts[:count]
    layer._addr_to_wire = lambda addr: bytes(map(int, addr[0].split("."))) + addr[1].to_bytes(
        2, "big")
    layer.receive_datagram(wire.find_value(bytes(20), bytes(8), 0, 300), A, 0.0)
    (answer, _), = layer.datagrams_to_send(0.0)
    found = wire.parse_found(answer)
    assert found.total == 0 and len(found.contacts) == 20
    assert [c[:20] for c in found.contacts] == [(i << 150).to_bytes(20, "big") for i in range(1, 21)]
    assert len(answer) == wire.FOUND_HEADER + 20 * wire.CONTACT_SIZE == 555


def test_only_the_recipient_deletes_and_a_deleted_value_is_not_stored_again():
    layer = storer()
    alice, bob = identity("alice"), identity("bob")
    epoch = records.epoch_of(WALL, 86_400)
    key, rec = mailbox_record(alice, bob, epoch=epoch)
    store(layer, key, rec)
    vid = records.read(key, rec).vid
    # the sender (or anyone but bob) deletes only under its own mailbox key: nothing there
    layer.receive_datagram(records.make_delete(alice, epoch, [vid]), A, 0.0)
    assert layer.datagrams_to_send(0.0) == [
        (wire.deleted(records.mailbox_key(alice.node_id, epoch), 0), A)]
    # alice naming bob's key: not hers
    request = wire.parse_delete(records.make_delete(alice, epoch, [vid]))
    layer.receive_datagram(wire.delete(key, epoch, [vid], alice.public_der, request.signature),
                           A, 0.0)
    # bob's key on the wire but a signature by mallory
    request = wire.parse_delete(records.make_delete(bob, epoch, [vid]))
    forged = wire.delete(request.key, epoch, request.vids, bob.public_der,
                         identity("mallory").sign(wire.signed_delete(request.key, epoch,
                                                                     request.vids)))
    layer.receive_datagram(forged, A, 0.0)
    assert layer.datagrams_to_send(0.0) == [] and len(layer.store) == 1
    assert layer.drop_counts() == {"not_owner": 1, "bad_signature": 1}
    delete = records.make_delete(bob, epoch, [vid])
    layer.receive_datagram(delete, B, 0.0)
    (answer, dst), = layer.datagrams_to_send(0.0)
    assert answer == wire.deleted(key, 1) and dst == B and len(answer) < len(delete)
    assert len(layer.store) == 0
    assert status_of(store(layer, key, rec, addr=B)) == wire.GONE  # a republication: refused
    assert len(layer.store) == 0


def test_republication_is_due_every_interval_unless_another_node_stored_it():
    layer = storer(StorageSettings(republish_interval=100.0))
    key, rec = mailbox_record(identity("alice"), identity("bob"))
    store(layer, key, rec)
    assert [h.value.raw for h in layer.store.due(100.0)] == [rec]
    assert layer.store.due(150.0) == []
    store(layer, key, rec, addr=B, now=190.0)  # a replica republished it to us
    assert layer.store.due(200.0) == []
    assert [h.value.raw for h in layer.store.due(290.0)] == [rec]


def test_deletions_of_made_up_ids_cannot_flush_a_deleted_values_tombstone():
    """Review finding: one identity signing DELETEs of unknown ids for its own mailbox pushed
    every tombstone out (8,192 in about 13 s), after which a late republication brought a
    deleted message back. Ids never held are remembered apart."""
    layer = storer(StorageSettings(max_tombstones=8, **OPEN))
    alice, bob, mallory = identity("alice"), identity("bob"), identity("mallory")
    epoch = records.epoch_of(WALL, 86_400)
    key, rec = mailbox_record(alice, bob, epoch=epoch)
    store(layer, key, rec)
    vid = records.read(key, rec).vid
    layer.receive_datagram(records.make_delete(bob, epoch, [vid]), B, 0.0)
    layer.datagrams_to_send(0.0)
    for i in range(10):  # 320 made-up ids, 40 times the tombstone cap
        made_up = [os.urandom(16) for _ in range(32)]
        layer.receive_datagram(records.make_delete(mallory, epoch, made_up), A, 0.1 * i)
        layer.datagrams_to_send(0.1 * i)
    assert len(layer.store.blind_tombstones) == 8  # bounded
    assert status_of(store(layer, key, rec, addr=B, now=2.0)) == wire.GONE  # still refused
    assert len(layer.store) == 0
