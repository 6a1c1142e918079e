"""Retry cookies (issue 17, attacks 2 and 4): the 3x rule for every answer to an address that has
not proved itself, and callers getting through a flood of valid KEY_REQs from forged sources."""

from __future__ import annotations

from random import Random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.session import CallState, IncomingCall, SessionLayer, SessionSettings
from kadtalk.node.session import handshake as hs
from kadtalk.node.session import layer as layer_module
from kadtalk.node.session.cookie import CookieJar, address_bytes
from kadtalk.node.session.wire import (
    COOKIE,
    COOKIE_REPLY,
    COOKIE_REPLY_SIZE,
    COOKIE_RETRY,
    KEY_REQ,
    KEY_RES,
    SIGNAL,
    Drop,
    decode_cookie,
    encode_cookie_reply,
    encode_cookie_retry,
    request_tag,
)

from .conftest import ALL_SIZES, WALL, Net, as_int, identity

CALLER, CALLEE = ("198.51.100.7", 4000), ("203.0.113.1", 5000)


def fresh_key_req(sender, callee_id: bytes, now: float) -> bytes:
    eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    return hs.make_key_req(sender.sign, sender.public_der, sender.node_id, callee_id, eph,
                           round((WALL + now) * 1000))


# -- the parser ------------------------------------------------------------------------------------


def test_cookie_layouts():
    tag, cookie = bytes(range(16)), bytes(range(16, 32))
    reply = encode_cookie_reply(tag, cookie)
    assert len(reply) == COOKIE_REPLY_SIZE == 34 and reply[:2] == bytes((COOKIE, COOKIE_REPLY))
    msg = decode_cookie(reply)
    assert (msg.op, msg.tag, msg.cookie) == (COOKIE_REPLY, tag, cookie)
    retry = encode_cookie_retry(cookie, b"\x02hello")
    assert retry == bytes((COOKIE, COOKIE_RETRY)) + cookie + b"\x02hello"
    msg = decode_cookie(retry)
    assert (msg.op, msg.cookie, msg.key_req) == (COOKIE_RETRY, cookie, b"\x02hello")
    for bad, reason in (
        (b"", "truncated"), (b"\x07", "truncated"), (reply[:-1], "truncated"),
        (reply + b"\x00", "oversized"), (b"\x07\x03" + bytes(32), "unknown_cookie_op"),
        (retry[:18], "truncated"), (retry[:18] + b"\x03", "bad_cookie_retry"),
        (retry[:18] + b"\x02" * 4097, "oversized"), (b"\x02" + reply[1:], "unknown_type"),
    ):
        with pytest.raises(Drop) as drop:
            decode_cookie(bad)
        assert drop.value.reason == reason


SEEDS = [encode_cookie_reply(bytes(16), bytes(range(16))),
         encode_cookie_retry(bytes(range(16)), b"\x02" + bytes(300))]
MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 400)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=4200)),
    st.tuples(st.just("flip"), st.integers(0, 400 * 8)),
)


def mutate(data: bytes, how: tuple) -> bytes:
    if how[0] == "truncate":
        return data[: how[1] % (len(data) + 1)]
    if how[0] == "extend":
        return data + how[1]
    bit = how[1] % (len(data) * 8)
    return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1:]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    st.builds(mutate, st.sampled_from(SEEDS), MUTATION),
    st.builds(lambda b: b"\x07" + b, st.binary(max_size=200)),
))
def test_mutated_cookie_datagrams_never_raise_and_are_counted_drops(data):
    """Truncated, extended, bit-flipped COOKIE datagrams: the parser raises only Drop; the layer
    (caller waiting for a KEY_RES, callee at rest) counts every one and changes nothing."""
    try:
        decode_cookie(data)
    except Drop:
        pass
    callee = SessionLayer(identity("p256", "b"), Random(1), None, WALL)
    caller = SessionLayer(identity("p256", "a"), Random(2), None, WALL)
    caller.call(as_int(callee.identity), 0.0, addr=CALLEE)
    caller.datagrams_to_send(0.0)
    for layer, src in ((callee, CALLER), (caller, CALLEE)):
        before, drops = layer.snapshot(), sum(layer.stats.values())
        layer.receive_datagram(data, src, 0.0)
        assert sum(layer.stats.values()) == drops + 1  # counted (a drop; a reply only if valid)
        assert layer.snapshot() == before and not layer.datagrams_to_send(0.0)


# -- the cookie ------------------------------------------------------------------------------------


def test_a_cookie_is_bound_to_address_and_request_and_lives_one_to_two_rotations():
    jar = CookieJar(120.0, Random(3).randbytes)
    tag = request_tag(b"\x02 some KEY_REQ")
    cookie = jar.mint(CALLER, tag, 10.0)
    assert jar.valid(CALLER, tag, cookie, 10.0)
    assert not jar.valid(("198.51.100.7", 4001), tag, cookie, 10.0)  # another port
    assert not jar.valid(("198.51.100.8", 4000), tag, cookie, 10.0)  # another host
    assert not jar.valid(CALLER, request_tag(b"\x02 another"), cookie, 10.0)
    assert jar.valid(CALLER, tag, cookie, 129.9) and jar.valid(CALLER, tag, cookie, 249.9)
    assert not jar.valid(CALLER, tag, cookie, 250.1)  # two rotations later: both secrets new
    assert address_bytes(CALLER) == bytes([198, 51, 100, 7]) + (4000).to_bytes(2, "big")
    assert address_bytes("sim-7") == b"'sim-7'"


# -- attack 2: amplification -----------------------------------------------------------------------


def answers_per_cause(layer: SessionLayer, data: bytes, src, now: float) -> list[bytes]:
    layer.receive_datagram(data, src, now)
    return [d for d, dst in layer.datagrams_to_send(now) if dst == src]


@pytest.mark.parametrize("callee_kind", ALL_SIZES)
def test_no_answer_to_an_unproven_address_exceeds_3x_its_request(callee_kind):
    """Callee of every key type and size; callers of every type (the smallest KEY_REQ is
    Ed25519's, 208 bytes). Per answer type: what a bare KEY_REQ draws (8 copies, as the
    attack sent), what RING draws, sized against the datagram that caused it."""
    ratios: dict[str, float] = {}
    for caller_kind in ("ed25519", "p256", "rsa4096"):  # (one RSA-8192 key: the callee's)
        callee = SessionLayer(identity(callee_kind, "callee"), Random(1), None, WALL)
        caller = identity(caller_kind, "caller")
        req = fresh_key_req(caller, callee.own_id, 1.0)
        kinds = set()
        for copy in range(8):  # the attack's 8 identical copies from a forged address
            for answer in answers_per_cause(callee, req, ("192.0.2.66", 9), 1.0 + copy * 0.1):
                kind = {COOKIE: "COOKIE_REPLY", KEY_RES: "KEY_RES"}[answer[0]]
                kinds.add(kind)
                ratios[kind] = max(ratios.get(kind, 0.0), len(answer) / len(req))
        assert kinds, "a KEY_REQ always draws an answer"
        if callee._key_res_bound() > 3 * len(req):  # KEY_RES too big: a cookie, nothing signed
            assert kinds == {"COOKIE_REPLY"} and not callee.sessions
    assert all(r <= 3.0 for r in ratios.values()), ratios
    # a proven address gets the full KEY_RES, and then RING draws ANSWER / BUSY (3 x 14 bytes)
    net = Net()
    callee = net.add("callee", identity(callee_kind, "callee"))
    net.add("caller", identity("ed25519", "caller"))
    sid = net.layers["caller"].call(as_int(callee.identity), 0.0, addr="callee")
    net.run(0.0)
    assert net.layers["caller"].state_of(sid) is CallState.RINGING
    kinds = [d[0] for s, _, d in net.log if s == "callee"]
    big = callee._key_res_bound() > 3 * len([d for s, _, d in net.log if d[0] == KEY_REQ][0])
    assert kinds[:2] == ([COOKIE, KEY_RES] if big else [KEY_RES])
    callee.set_busy(True)
    net.add("caller2", identity("p256", "caller2"))
    net.layers["caller2"].call(as_int(callee.identity), 0.5, addr="callee")
    mark = len(net.log)
    net.run(0.5)
    for i, (src, dst, data) in enumerate(net.log[mark:]):
        if src == "caller2" and data[0] == SIGNAL:  # the RING: answered with 3 BUSY
            busy = [d for s, _, d in net.log[mark + i + 1:] if s == "callee"]
            assert busy and sum(map(len, busy)) <= 3 * len(data)
            break
    else:
        pytest.fail("no RING")


# -- the caller's side -----------------------------------------------------------------------------


def test_call_sets_up_through_a_cookie_and_across_loss():
    """An RSA-8192 callee always asks for a cookie; the first cookie reply and the first retry
    are lost: retransmission carries on, with the cookie once it has one."""
    lost = {"cookie": 1, "retry": 1}

    def drop(src, dst, data):
        key = {COOKIE: "cookie" if data[1:2] == b"\x01" else "retry"}.get(data[0])
        if key and lost[key]:
            lost[key] -= 1
            return True
        return False

    net = Net(drop=drop)
    callee = net.add("callee", identity("rsa8192", "callee"))
    caller = net.add("caller", identity("ed25519", "caller"))
    sid = caller.call(as_int(callee.identity), 0.0, addr="callee")
    net.advance(0.0, 3.0)
    assert caller.state_of(sid) is CallState.RINGING and net.of("callee", IncomingCall)
    assert lost == {"cookie": 0, "retry": 0}
    assert not caller.stats and callee.stats["cookie_sent"] == 2


def test_unsolicited_and_repeated_cookie_replies_are_ignored():
    caller = SessionLayer(identity("p256", "a"), Random(2), None, WALL)
    caller.call(as_int(identity("p256", "b")), 0.0, addr=CALLEE)
    ((req, _),) = caller.datagrams_to_send(0.0)
    wrong_tag = encode_cookie_reply(request_tag(req + b"x"), bytes(16))
    caller.receive_datagram(wrong_tag, CALLEE, 0.1)
    right = encode_cookie_reply(request_tag(req), bytes(range(16)))
    caller.receive_datagram(right, ("192.0.2.9", 5000), 0.1)  # from elsewhere
    assert caller.stats["unsolicited_cookie"] == 2 and not caller.datagrams_to_send(0.1)
    caller.receive_datagram(right, CALLEE, 0.1)
    ((retry, dst),) = caller.datagrams_to_send(0.1)
    assert dst == CALLEE and retry == encode_cookie_retry(bytes(range(16)), req)
    caller.receive_datagram(right, CALLEE, 0.2)  # the same again: the timer resends, not us
    assert caller.stats["duplicate_cookie"] == 1 and not caller.datagrams_to_send(0.2)
    for i in range(10):  # a peer that keeps changing its cookie: at most key_tries resends
        caller.receive_datagram(encode_cookie_reply(request_tag(req), bytes([i]) * 16), CALLEE, 0.3)
    assert len(caller.datagrams_to_send(0.3)) == SessionSettings().key_tries - 1
    caller.handle_timer(0.5)  # the retransmission carries the latest cookie
    ((again, _),) = caller.datagrams_to_send(0.5)
    assert again[0] == COOKIE and again[18:] == req


def test_a_cookie_from_another_address_or_for_another_key_req_is_refused():
    callee = SessionLayer(identity("rsa8192", "callee"), Random(1), None, WALL)
    caller = identity("p256", "caller")
    req, other = (fresh_key_req(caller, callee.own_id, 1.0) for _ in range(2))
    callee.receive_datagram(req, CALLER, 1.0)
    ((reply, _),) = callee.datagrams_to_send(1.0)
    cookie = reply[18:]
    callee.receive_datagram(encode_cookie_retry(cookie, req), ("192.0.2.1", 4000), 1.0)
    callee.receive_datagram(encode_cookie_retry(cookie, other), CALLER, 1.0)
    assert callee.stats["bad_cookie"] == 2 and not callee.sessions
    callee.receive_datagram(encode_cookie_retry(cookie, req), CALLER, 1.0)
    ((res, dst),) = callee.datagrams_to_send(1.0)
    assert res[0] == KEY_RES and dst == CALLER and len(callee.sessions) == 1
    # the retry repeated (our KEY_RES lost): the same KEY_RES again, a bounded number of times
    for _ in range(8):
        callee.receive_datagram(encode_cookie_retry(cookie, req), CALLER, 1.5)
    assert [d for d, _ in callee.datagrams_to_send(1.5)] == [res] * 4


# -- attack 4: callers locked out by a spoofed flood -----------------------------------------------


def test_trusted_callers_have_a_budget_of_their_own():
    """Proven but untrusted callers (a botnet with real addresses) drain the cookie budget;
    a contact still gets through on the contact budget."""
    friend = identity("p256", "friend")
    s = SessionSettings(cookie_rate=1.0, cookie_burst=2.0, source_burst=100, source_rate=100,
                        trusted=lambda peer: peer == as_int(friend), max_pending_per_caller=50)
    callee = SessionLayer(identity("rsa8192", "callee"), Random(1), s, WALL)

    def via_cookie(who, addr) -> None:
        req = fresh_key_req(who, callee.own_id, 1.0)
        callee.receive_datagram(req, addr, 1.0)
        (reply,) = [d for d, _ in callee.datagrams_to_send(1.0) if d[0] == COOKIE]
        callee.receive_datagram(encode_cookie_retry(reply[18:], req), addr, 1.0)

    for i in range(6):
        via_cookie(identity("p256", f"bot{i}"), (f"192.0.2.{i}", 1))
    assert callee.pending_handshakes == 2 and callee.stats["cookie_rate_limited"] == 4
    via_cookie(friend, CALLER)
    assert callee.pending_handshakes == 3


def test_a_contacts_public_key_with_bad_signatures_does_not_lock_the_contact_out():
    """The contact drain: real hosts echo cookies for KEY_REQs carrying a contact's public SPKI
    (sent in every KEY_REQ and KEY_RES) with garbage signatures. They may empty the contact
    budget, but the contact then falls through to the cookie budget like any stranger, and that
    budget still caps the signature checks the garbage costs."""
    friend = identity("p256", "friend")
    s = SessionSettings(contact_rate=0.01, contact_burst=2.0, cookie_rate=0.01, cookie_burst=6.0,
                        trusted=lambda peer: peer == as_int(friend), max_pending_per_caller=50)
    callee = SessionLayer(identity("rsa8192", "callee"), Random(1), s, WALL)

    def via_cookie(req: bytes, addr) -> None:
        callee.receive_datagram(req, addr, 1.0)
        (reply,) = [d for d, _ in callee.datagrams_to_send(1.0) if d[0] == COOKIE]
        callee.receive_datagram(encode_cookie_retry(reply[18:], req), addr, 1.0)

    def forged(i: int) -> bytes:
        eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
        return hs.make_key_req(lambda _: bytes(72), friend.public_der, friend.node_id,
                               callee.own_id, eph, round((WALL + 1.0) * 1000))

    for i in range(4):  # two drain the contact budget, two more fall through to the cookie one
        via_cookie(forged(i), (f"192.0.2.{i}", 1))
    via_cookie(fresh_key_req(friend, callee.own_id, 1.0), CALLER)
    assert callee.pending_handshakes == 1  # the contact is not locked out (it was: issue 17)
    assert callee.stats["bad_signature"] == 4 and callee.stats["contact_fell_through"] == 3
    for i in range(4, 12):  # the cookie budget (6 tokens) still caps the signature checks
        via_cookie(forged(i), (f"192.0.2.{i}", 1))
    # 2 contact + 6 cookie tokens: 8 checks in all, the contact's and 7 bad ones
    assert callee.stats["bad_signature"] == 7 and callee.stats["cookie_rate_limited"] == 5


def test_a_full_pending_table_evicts_unproven_handshakes_before_a_proven_one():
    s = SessionSettings(max_pending=4, source_burst=100, global_burst=100, load_threshold=0.0)
    callee = SessionLayer(identity("p256", "callee"), Random(1), s, WALL)
    honest = fresh_key_req(identity("p256", "honest"), callee.own_id, 1.0)
    tag = request_tag(honest)
    cookie = callee._cookie_jar().mint(CALLER, tag, 1.0)
    callee.receive_datagram(encode_cookie_retry(cookie, honest), CALLER, 1.0)
    (proven,) = callee.sessions.values()
    for i in range(10):  # verified KEY_REQs from forged sources (before load was noticed)
        spoofed = fresh_key_req(identity("p256", f"spoofer{i}"), callee.own_id, 1.0)
        callee.receive_datagram(spoofed, (f"10.0.0.{i}", 1), 1.0)
    assert callee.pending_handshakes == 4 and callee.stats["handshake_evicted"] == 7
    assert proven.id in callee.sessions  # still waiting for its RING


@pytest.mark.parametrize("bad", [dict(cookie_rotation=0), dict(load_threshold=-1),
                                 dict(cookie_rate=0), dict(contact_burst=0.5)])
def test_cookie_settings_are_checked(bad):
    with pytest.raises(ValueError):
        SessionSettings(**bad)


def test_get_timer_is_remembered_across_cookie_only_answers_and_follows_real_changes():
    """The driver asks get_timer after every datagram: a cookie-only answer changes no session,
    so the answer is remembered; a repeated KEY_REQ that restarts a handshake's wait moves it."""
    s = SessionSettings(load_threshold=0.0)
    callee = SessionLayer(identity("p256", "callee"), Random(1), s, WALL)
    req = fresh_key_req(identity("p256", "caller"), callee.own_id, 1.0)
    callee.receive_datagram(req, CALLER, 1.0)
    assert callee.get_timer() == 1.0 + s.handshake_timeout
    big = SessionLayer(identity("rsa8192", "callee"), Random(1), None, WALL)
    big.receive_datagram(fresh_key_req(identity("p256", "x"), big.own_id, 1.0), CALLER, 1.0)
    assert big._deadline is False or big.get_timer() is None  # nothing to wait for
    assert big.get_timer() is None and big._deadline is None
    big.receive_datagram(fresh_key_req(identity("p256", "y"), big.own_id, 1.0), CALLER, 1.2)
    assert big._deadline is None  # a cookie-only answer kept the remembered answer
    callee.receive_datagram(req, CALLER, 3.0)  # a repeat: the wait for RING starts again
    assert callee.get_timer() == 3.0 + s.handshake_timeout
    callee.handle_timer(3.0 + s.handshake_timeout)
    assert callee.get_timer() is None and not callee.sessions
