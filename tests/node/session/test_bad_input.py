"""Bad input of every kind is dropped with a counted reason: nothing raises, no session changes.

The scenario: a calls b and they talk; a also waits for a KEY_RES from c; b holds a pending
handshake from d; e waits for a KEY_RES from b that was lost on the way (so mutations of it reach
e's signature check); f's KEY_REQ to b was lost (so mutations of it reach b's). Valid datagrams
of every type are recorded, then mutated.
"""

from __future__ import annotations

import hashlib
from random import Random

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import Identity
from kadtalk.node.session import IncomingCall, SessionLayer, SessionSettings
from kadtalk.node.session import handshake as hs
from kadtalk.node.session import layer as layer_module
from kadtalk.node.session.wire import (
    COOKIE,
    KEY_REQ,
    KEY_RES,
    MEDIA,
    SIGNAL,
    KeyMessage,
    encode_cookie_retry,
    encode_key,
)

from .conftest import KINDS, WALL, Net, as_int, identity

NOW = 1.0
TS = round((WALL + NOW) * 1000)


class Scenario:
    def __init__(self, kind: str = "p256"):
        # generous rate limits, so that mutations get all the way to the checks behind them
        net = Net(SessionSettings(max_calls=2, source_burst=1000, global_burst=1000))
        self.net = net
        self.kind = kind
        self.a, self.b = net.add("a", identity(kind, "a")), net.add("b", identity(kind, "b"))
        for name in "cdef":
            net.add(name, identity(kind, name))
        self.sid = self.a.call(as_int(self.b.identity), 0.0, addr="b")
        net.run(0.0)
        self.incoming = net.of("b", IncomingCall)[0].session_id
        self.b.answer(0.0)
        net.run(0.0)
        self.a.send_media(self.sid, b"media a->b", 0.5)
        self.b.send_media(self.incoming, b"media b->a", 0.5)
        net.run(0.5)
        # a's second call waits for c, who stays silent; d's KEY_REQ to b stays unconfirmed
        net.layers.pop("c")
        self.a.call(as_int(identity(kind, "c")), NOW, addr="c")
        for name in "def":
            net.layers[name].call(as_int(self.b.identity), NOW, addr="b")
        net.drop = lambda src, dst, data: (
            (data[0] in (MEDIA, SIGNAL) and src == "d")
            or (data[0] == KEY_RES and dst == "e")
            or (data[0] == KEY_REQ and src == "f")
        )
        net.run(NOW)
        self.recorded = [(src, dst, data) for src, dst, data in net.log]

    def kinds(self, kind: int) -> list[tuple[str, str, bytes]]:
        return [r for r in self.recorded if r[2][0] == kind]


def fresh(kind: str = "p256") -> Scenario:
    return Scenario(kind)


def assert_dropped(layer: SessionLayer, data: bytes, addr: str, expect: str | None = None) -> str:
    before = layer.snapshot()
    counts = sum(layer.stats.values())
    old = dict(layer.stats)
    layer.receive_datagram(data, addr, NOW)  # must not raise
    assert layer.snapshot() == before, "session state changed"
    assert sum(layer.stats.values()) == counts + 1
    (reason,) = [k for k, v in layer.stats.items() if v != old.get(k, 0)]
    if expect is not None:
        assert reason == expect
    return reason


# -- hypothesis: mutations of valid datagrams ------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10_000)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("flip"), st.integers(0, 10_000 * 8)),
    st.tuples(st.just("junk"), st.binary(max_size=200)),
)


def mutate(data: bytes, how: tuple) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return data[: arg % len(data)]
    if kind == "extend":
        return data + arg
    if kind == "flip":
        bit = arg % (len(data) * 8)
        return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1 :]
    return bytes([data[0]]) + arg  # same type byte, random body


SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(st.sampled_from(KINDS),
       st.lists(st.tuples(st.sampled_from([KEY_REQ, KEY_RES, MEDIA, SIGNAL]), st.integers(0, 99),
                          mutation), min_size=1, max_size=8))
def test_mutated_datagrams_are_dropped_without_any_state_change(kind, plan):
    sc = fresh(kind)
    for kind, pick, how in plan:
        records = sc.kinds(kind)
        src, dst, data = records[pick % len(records)]
        bad = mutate(data, how)
        if bad == data:
            continue
        target = sc.net.layers.get(dst)
        if target is None:
            continue
        assert_dropped(target, bad, src)


@SLOW
@given(st.binary(max_size=300), st.sampled_from(["a", "b", "c", "zz"]))
def test_arbitrary_bytes_from_anyone(data, addr):
    sc = fresh()
    for layer in (sc.a, sc.b):
        limited = layer.stats["rate_limited"] or layer.stats["rate_limited_source"]
        if data[:1] == b"\x02" and limited:
            continue
        assert_dropped(layer, data, addr)


@SLOW
@given(st.lists(st.integers(0, 999), min_size=1, max_size=20))
def test_replayed_and_reordered_stream_packets(picks):
    sc = fresh()
    packets = [r for r in sc.recorded if r[2][0] in (MEDIA, SIGNAL) and r[0] in ("a", "b")]
    for pick in picks:  # every one of them was delivered once already
        src, dst, data = packets[pick % len(packets)]
        reason = assert_dropped(sc.net.layers[dst], data, src)
        assert reason in ("duplicate", "no_session", "auth_failed")


def test_exact_duplicate_key_req_is_answered_and_changes_no_session():
    sc = fresh()
    (src, dst, data) = [r for r in sc.kinds(KEY_REQ) if r[0] == "a" and r[1] == "b"][0]
    before = sc.b.snapshot()
    sc.b.receive_datagram(data, "a", NOW)
    out = sc.b.datagrams_to_send(NOW)
    assert [d[0] for d, _ in out] == [KEY_RES] and sc.b.stats["duplicate_key_req"] == 1
    after = sc.b.snapshot()
    assert after[:-3] + after[-2:] == before[:-3] + before[-2:]  # only the outbox moved


def test_replayed_key_req_from_elsewhere_or_after_the_call_is_refused():
    sc = fresh()
    (_, _, data) = [r for r in sc.kinds(KEY_REQ) if r[0] == "a" and r[1] == "b"][0]
    assert_dropped(sc.b, data, "mallory", "replayed_key_req")
    sc.b.hang_up(NOW, sc.incoming)
    sc.b.datagrams_to_send(NOW)
    assert_dropped(sc.b, data, "a", "replayed_key_req")  # remembered after the call ended


def test_replayed_key_res_is_unsolicited():
    sc = fresh()
    (_, _, data) = [r for r in sc.kinds(KEY_RES) if r[0] == "b"][0]
    assert_dropped(sc.a, data, "b", "unsolicited_key_res")
    # even from the address a waits on: it answers an old ephemeral key
    assert_dropped(sc.a, data, "c", "wrong_identity")


# -- crafted key messages: each defect has its own reason ---------------------------------------------


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_req(sender: Identity, callee: bytes, eph: bytes | None = None, ts: int = TS,
            sign_id: bytes | None = None, identity_spki: bytes | None = None,
            signer=None) -> bytes:
    eph = eph or hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    caller_id = sign_id or sender.node_id
    sig = (signer or sender.sign)(hs.req_signed_data(caller_id, callee, ts, eph))
    return encode_key(KeyMessage(KEY_REQ, eph, identity_spki or sender.public_der, ts, sig))


def with_cookie(victim: SessionLayer, data: bytes, addr, now: float) -> None:
    """Send a KEY_REQ as a caller would: if a COOKIE_REPLY comes back, resend with the cookie."""
    victim.receive_datagram(data, addr, now)
    for reply, dst in victim.datagrams_to_send(now):
        if reply[0] == COOKIE and dst == addr:
            victim.receive_datagram(encode_cookie_retry(reply[18:34], data), addr, now)


@pytest.mark.parametrize("defect, expect", [
    ("forged_signature", "bad_signature"),
    ("signed_by_someone_else", "bad_signature"),
    ("for_another_callee", "bad_signature"),
    ("identity_not_a_key", "identity_not_a_key"),
    ("eph_not_a_key", "ephemeral_not_a_key"),
    ("eph_wrong_curve", "ephemeral_wrong_curve"),
    ("eph_off_curve", "ephemeral_off_curve"),
    ("eph_is_rsa", "ephemeral_not_ec"),
    ("stale", "stale_timestamp"),
    ("future", "stale_timestamp"),
    ("own_id", "own_id"),
])
def test_crafted_key_req_defects(defect, expect):
    sc = fresh()
    me = identity("p256", "crafter")
    other = identity("p256", "other")
    callee = sc.b.own_id
    if defect == "forged_signature":
        data = key_req(me, callee)
        data = data[:-1] + bytes([data[-1] ^ 0x40])
    elif defect == "signed_by_someone_else":
        data = key_req(me, callee, signer=other.sign)
    elif defect == "for_another_callee":
        data = key_req(me, b"\x01" * 20)
    elif defect == "identity_not_a_key":
        data = key_req(me, callee, identity_spki=b"\x30\x03\x02\x01\x07")
    elif defect == "eph_not_a_key":
        data = key_req(me, callee, eph=b"\x30\x03\x02\x01\x07")
    elif defect == "eph_wrong_curve":
        data = key_req(me, callee, eph=spki(ec.generate_private_key(ec.SECP384R1()).public_key()))
    elif defect == "eph_off_curve":
        data = key_req(me, callee, eph=hs.P256_SPKI_PREFIX + b"\x01" * 64)
    elif defect == "eph_is_rsa":
        data = key_req(me, callee, eph=identity("rsa", "x").public_der)
    elif defect == "stale":
        data = key_req(me, callee, ts=TS - 61_000)
    elif defect == "future":
        data = key_req(me, callee, ts=TS + 61_000)
    else:
        data = key_req(sc.b.identity, callee)
    assert_dropped(sc.b, data, "mallory", expect)


def test_key_res_from_the_right_address_but_wrong_identity_or_forged():
    sc = fresh()
    c = identity("p256", "c")
    session = [s for s in sc.a.sessions.values() if s.addr == "c"][0]
    eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())

    def res(signer: Identity, ts=TS, flip=False, spki_of=None) -> bytes:
        sig = signer.sign(hs.res_signed_data(sc.a.own_id, c.node_id, session.ts_req, ts,
                                             session.eph_spki, eph))
        if flip:
            sig = sig[:-1] + bytes([sig[-1] ^ 1])
        return encode_key(KeyMessage(KEY_RES, eph, (spki_of or signer).public_der, ts, sig))

    impostor = identity("p256", "impostor")
    assert_dropped(sc.a, res(impostor), "c", "wrong_identity")
    assert_dropped(sc.a, res(c, flip=True), "c", "bad_signature")
    assert_dropped(sc.a, res(impostor, spki_of=c), "c", "bad_signature")
    assert_dropped(sc.a, res(c, ts=TS - 120_000), "c", "stale_timestamp")
    # and the genuine one still works afterwards
    sc.a.receive_datagram(res(c), "c", NOW)
    assert session.tx is not None and sc.a.sessions[session.id].state.value == "ringing"


# -- floods ----------------------------------------------------------------------------------------


def test_flood_of_key_reqs_from_many_identities_and_sources_is_bounded(monkeypatch):
    verified = []
    real = layer_module.check_signature
    monkeypatch.setattr(layer_module, "check_signature",
                        lambda *a: (verified.append(1), real(*a))[1])
    settings_ = SessionSettings(max_pending=16, global_rate=50.0, global_burst=100.0)
    victim = SessionLayer(identity("p256", "victim"), Random(1), settings_, WALL)
    rng = Random(5)
    fakes = [Identity.generate() for _ in range(40)]
    for i in range(2000):
        now = NOW + i * 0.001  # 2,000 KEY_REQs in 2 seconds
        victim.receive_datagram(key_req(fakes[i % 40], victim.own_id, ts=round((WALL + now) * 1000)),
                                (f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", 5004), now)
    assert victim.pending_handshakes <= 16
    assert len(victim.sessions) <= 16
    # under load after half the burst: the rest get a cookie reply and cost no signature check
    assert len(verified) <= 100 * settings_.load_threshold + 5  # + refill while crossing
    assert victim.stats["cookie_sent"] >= 1900
    assert victim._flood.tracked_sources <= settings_.max_sources


def test_flood_from_one_source_hits_the_per_source_limit():
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    me = identity("p256", "flooder")
    for i in range(100):
        victim.receive_datagram(key_req(me, victim.own_id), ("192.0.2.1", 1), NOW)
    # until the node is under load (51 arrived, half the burst used): the burst of 8 got
    # through, 43 were refused by the source's bucket (and got a cookie reply, as did the other
    # 49, sent under load)
    assert victim.stats["rate_limited_source"] == 51 - 8 and not victim.stats["rate_limited"]
    assert victim.stats["cookie_sent"] == 100 - 8
    # one caller from one host holds at most two pending handshakes
    assert victim.pending_handshakes == 2 and victim.stats["handshake_evicted"] == 6
    # an honest caller elsewhere still gets through, by echoing the cookie
    honest = identity("p256", "honest")
    with_cookie(victim, key_req(honest, victim.own_id), ("198.51.100.7", 1), NOW)
    assert victim.pending_handshakes == 3


def test_pending_handshake_table_is_bounded():
    s = SessionSettings(max_pending=4, source_burst=100, global_burst=100)
    victim = SessionLayer(identity("p256", "victim"), Random(1), s, WALL)
    for i in range(10):
        me = identity("p256", f"flooder{i}")
        victim.receive_datagram(key_req(me, victim.own_id), (f"192.0.2.{i}", 1), NOW)
    assert victim.pending_handshakes == 4 and victim.stats["handshake_evicted"] == 6
    assert len(victim.sessions) == 4
    victim.handle_timer(NOW + s.handshake_timeout)
    assert victim.pending_handshakes == 0 and not victim.sessions
    victim.receive_datagram(key_req(me, victim.own_id), ("192.0.2.1", 1), NOW + 11)
    assert victim.pending_handshakes == 1


def test_node_id_is_sha1_of_the_identity_spki():
    ident = identity("p256", "x")
    assert hashlib.sha1(ident.public_der).digest() == ident.node_id


def _signed_key_req(sender: Identity, callee: bytes, now: float) -> bytes:
    return key_req(sender, callee, ts=round((WALL + now) * 1000))


def test_pending_table_cannot_be_held_by_one_identity_from_spoofed_sources():
    """Review M2: 1 KEY_REQ/s from each of 4 spoofed hosts, one identity, never a RING."""
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    mallory = identity("p256", "mallory")
    for second in range(60):
        victim.handle_timer(float(second))
        for host in range(4):
            victim.receive_datagram(_signed_key_req(mallory, victim.own_id, second),
                                    (f"203.0.113.{host}", 9), float(second))
    assert victim.pending_handshakes <= 2  # per caller ID
    honest = identity("p256", "honest")
    victim.receive_datagram(_signed_key_req(honest, victim.own_id, 60.0), ("198.51.100.1", 5), 60.0)
    assert any(s.peer_id == honest.node_id for s in victim.sessions.values())
    assert victim.stats["pending_full"] == 0


def test_a_full_pending_table_evicts_its_oldest_handshake_for_a_new_caller():
    s = SessionSettings(max_pending=8, source_burst=1000, global_burst=1000)
    victim = SessionLayer(identity("p256", "victim"), Random(1), s, WALL)
    fakes = [identity("p256", f"fake{i}") for i in range(20)]
    for i, fake in enumerate(fakes):  # 20 identities from 20 hosts, none of them ever rings
        victim.receive_datagram(_signed_key_req(fake, victim.own_id, NOW), (f"10.0.0.{i}", 1), NOW)
    assert victim.pending_handshakes == 8 and victim.stats["handshake_evicted"] == 12
    assert {x.peer_id for x in victim.sessions.values()} == {f.node_id for f in fakes[-8:]}


def test_pending_handshakes_are_capped_per_source_host():
    s = SessionSettings(source_burst=1000, global_burst=1000)
    victim = SessionLayer(identity("p256", "victim"), Random(1), s, WALL)
    for i in range(5):  # five identities behind one host (port varies)
        victim.receive_datagram(_signed_key_req(identity("p256", f"h{i}"), victim.own_id, NOW),
                                ("192.0.2.9", 1000 + i), NOW)
    assert victim.pending_handshakes == s.max_pending_per_source == 2
    assert {x.peer_id for x in victim.sessions.values()} == {
        identity("p256", f"h{i}").node_id for i in (3, 4)}


# -- what a token is spent on (review should-fix 1) ---------------------------------------------


def test_junk_key_reqs_are_refused_before_they_cost_a_token():
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    me = identity("p256", "junker")
    off_curve = hs.P256_SPKI_PREFIX + bytes(64)
    for i in range(500):  # invalid points, stale, replayed: all from one host
        victim.receive_datagram(key_req(me, victim.own_id, eph=off_curve), ("192.0.2.1", 1), NOW)
        victim.receive_datagram(key_req(me, victim.own_id, ts=TS - 100_000), ("192.0.2.1", 1), NOW)
    # stale ones fail a cheap check; off-curve ones fail before a token until the node is under
    # load, then get only a cookie reply (checked before any key is loaded)
    assert victim.stats["stale_timestamp"] == 500
    assert victim.stats["ephemeral_off_curve"] == 51 and victim.stats["cookie_sent"] == 449
    assert not victim.stats["rate_limited"] and not victim.stats["rate_limited_source"]
    honest = identity("p256", "honest")
    with_cookie(victim, key_req(honest, victim.own_id), ("192.0.2.1", 1), NOW)
    assert victim.pending_handshakes == 1


def test_a_key_req_flood_does_not_starve_our_own_call_of_its_key_res():
    """Forged KEY_REQs (valid points, bad signatures) at 200/s from spoofed hosts, the callee's
    among them, drain the KEY_REQ budget; the KEY_RES of our own call has a budget of its own."""
    net = Net()
    victim, friend = net.add("victim"), net.add("friend")
    junk_id = identity("p256", "junk").public_der
    eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    now = 0.0
    for i in range(400):
        now = round(i * 0.005, 3)
        junk = encode_key(KeyMessage(KEY_REQ, eph, junk_id, round((WALL + now) * 1000), b"x"))
        victim.receive_datagram(junk, "friend" if i % 2 else (f"10.0.{i % 250}.1", 1), now)
        if i == 300:
            victim.call(as_int(friend.identity), now, addr="friend")
        net.tick(now)
    limited = (victim.stats["rate_limited"] + victim.stats["rate_limited_source"]
               + victim.stats["cookie_sent"])
    assert limited > 100  # the flood was metered ...
    assert net.of("friend", IncomingCall)  # ... and our call still rang


@SLOW
@given(st.sampled_from(KINDS), mutation)
def test_mutations_of_a_fresh_key_req_reach_the_checks_behind_the_replay_memory(kind, how):
    """A fresh ephemeral key each time, the mutation after it: identity, timestamp, signature."""
    victim = SessionLayer(identity(kind, "b"), Random(1),
                          SessionSettings(source_burst=1000, global_burst=1000), WALL)
    data = key_req(identity(kind, "f"), victim.own_id)
    eph_end = 1 + hs.P256_SPKI_SIZE
    tail = mutate(data[eph_end:], how) if how[0] != "truncate" else data[eph_end:][: how[1] % (
        len(data) - eph_end)]
    bad = data[:eph_end] + tail
    if bad == data:
        return
    reason = assert_dropped(victim, bad, "f")
    assert reason != "replayed_key_req"
    victim.receive_datagram(data, "f", NOW)  # and the genuine one still gets through
    assert victim.pending_handshakes == 1


# -- nits of the review ------------------------------------------------------------------------


@pytest.mark.parametrize("late", [0.0, 0.0004, 0.9])
def test_a_replay_is_never_fresh_after_it_left_the_replay_memory(late):
    """Caller's clock 60 s ahead (allowed); replayed at the edge of 2 × freshness_window."""
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    data = key_req(identity("p256", "m"), victim.own_id, ts=round(WALL * 1000) + 60_000)
    victim.receive_datagram(data, ("198.51.100.1", 1), 0.0)
    victim.handle_timer(30.0)  # the handshake times out: only the replay memory is left
    assert not victim.sessions
    victim.receive_datagram(data, ("203.0.113.66", 1), 120.0 + late)
    assert not victim.sessions
    assert victim.stats["replayed_key_req"] + victim.stats["stale_timestamp"] == 1


def test_a_full_replay_memory_refuses_rather_than_forgets():
    s = SessionSettings(max_seen=3, source_burst=1000, global_burst=1000)
    victim = SessionLayer(identity("p256", "victim"), Random(1), s, WALL)
    first = key_req(identity("p256", "r0"), victim.own_id)
    victim.receive_datagram(first, ("192.0.2.0", 1), NOW)
    for i in (1, 2, 3):
        victim.receive_datagram(key_req(identity("p256", f"r{i}"), victim.own_id),
                                (f"192.0.2.{i}", 1), NOW)
    assert victim.stats["replay_memory_full"] == 1
    victim.handle_timer(NOW + 10)  # every handshake times out; the memory stays
    assert_dropped(victim, first, ("203.0.113.1", 1), "replayed_key_req")


def test_stream_packets_over_1500_bytes_are_refused(net):
    from kadtalk.node.session.layer import MAX_PAYLOAD

    a, b = net.add("a"), net.add("b")
    sid = a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    b.answer(0.0)
    net.run(0.0)
    assert MAX_PAYLOAD == 1487 and a.send_media(sid, bytes(MAX_PAYLOAD), 0.1) is not None
    with pytest.raises(ValueError):
        a.send_media(sid, bytes(MAX_PAYLOAD + 1), 0.1)
    net.run(0.1)
    big = a.sessions[sid].tx.seal(MEDIA, bytes(MAX_PAYLOAD + 1))
    assert_dropped(b, big, "a", "oversized")


def test_ipv6_sources_are_metered_per_64():
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    me = identity("p256", "v6")
    for i in range(20):  # one /64, a new address each time
        victim.receive_datagram(key_req(me, victim.own_id),
                                (f"2001:db8:0:1::{i + 1:x}", 5, 0, 0), NOW)
    assert victim.stats["rate_limited_source"] == 20 - 8
    victim.receive_datagram(key_req(me, victim.own_id), ("2001:db8:0:2::1", 5, 0, 0), NOW)
    assert victim.stats["rate_limited_source"] == 20 - 8  # another /64 has its own bucket


def test_costlier_identity_types_cost_more_tokens():
    """A P-384 or DSA verification costs several P-256 ones: so does its token (burst 8)."""
    victim = SessionLayer(identity("p256", "victim"), Random(1), None, WALL)
    admitted = {}
    for host, kind in enumerate(("p256", "p384", "dsa", "rsa", "ed25519")):
        before = victim.stats["rate_limited_source"]
        for i in range(10):
            victim.receive_datagram(key_req(identity(kind, f"c{i}"), victim.own_id),
                                    (f"192.0.2.{host}", 1), NOW)
        admitted[kind] = 10 - (victim.stats["rate_limited_source"] - before)
    assert admitted == {"p256": 8, "p384": 1, "dsa": 1, "rsa": 8, "ed25519": 8}
    costs = {k: hs.verify_cost(hs.load_identity(identity(k).public_der)) for k in admitted}
    assert costs == {"p256": 1, "p384": 8, "dsa": 6, "rsa": 1, "ed25519": 1}
