"""The session layer's calls: set-up, every way a call ends, retransmission, several calls."""

from __future__ import annotations

import pytest

from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    MediaReceived,
    MissedCall,
    ReceiverReport,
    Role,
    SessionSettings,
)
from kadtalk.node.session.wire import KEY_REQ, KEY_RES, MEDIA, SIGNAL

from .conftest import Net, as_int, identity


def connect(net: Net, a: str = "a", b: str = "b", now: float = 0.0) -> tuple[int, int]:
    """a calls b, b answers; the two session ids."""
    for name in (a, b):
        if name not in net.layers:
            net.add(name)
    sid = net.layers[a].call(as_int(net.layers[b].identity), now, addr=b)
    net.run(now)
    incoming = net.of(b, IncomingCall)[-1]
    assert net.layers[b].answer(now, incoming.session_id)
    net.run(now)
    return sid, incoming.session_id


def ended(net: Net, name: str) -> CallEnded:
    (event,) = net.of(name, CallEnded)
    return event


def test_call_set_up_answer_media_and_hang_up(net):
    sid, incoming = connect(net)
    a, b = net.layers["a"], net.layers["b"]
    states = [e.state for e in net.of("a", CallProgress)]
    assert states == [CallState.KEY_EXCHANGE, CallState.RINGING, CallState.TALKING]
    assert net.of("b", IncomingCall)[0].peer_id == as_int(a.identity)
    assert [e.state for e in net.of("b", CallProgress)] == [CallState.TALKING]

    seqs = [a.send_media(sid, bytes([i]) * 80, 0.02 * i) for i in range(5)]
    back = b.send_media(incoming, b"reply", 0.1)
    net.run(0.1)
    got = net.of("b", MediaReceived)
    assert [e.payload[0] for e in got] == list(range(5))
    assert [e.seq for e in got] == seqs == [1, 2, 3, 4, 5]  # RING took sequence 0
    assert net.of("a", MediaReceived)[0].payload == b"reply" and back == 1

    assert a.hang_up(1.0)
    net.run(1.0)
    assert ended(net, "a").reason is EndReason.HUNG_UP
    assert ended(net, "b").reason is EndReason.REMOTE_HUNG_UP
    assert ended(net, "b").stats.packets >= 6
    assert not a.sessions and not b.sessions
    assert a.hang_up(1.1) is False


def test_keys_are_wiped_at_hang_up(net):
    """Best effort only: our bytearray copies are zeroed and the cipher objects dropped; copies
    inside OpenSSL and in immutable bytes objects are beyond our reach (protocol.md section 7)."""
    sid, incoming = connect(net)
    session = net.layers["a"].sessions[sid]
    tx, rx = session.tx, session.rx
    assert any(tx.key) and any(rx.key)
    net.layers["a"].hang_up(1.0)
    assert not any(tx.key) and not any(rx.key)
    assert tx._aead is None and rx._aes is None and session.eph_private is None


def test_ephemeral_private_key_is_dropped_once_the_secret_is_derived(net):
    net.add("a")
    net.add("b")
    sid = net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    assert net.layers["a"].sessions[sid].eph_private is not None
    net.run(0.0)
    assert net.layers["a"].sessions[sid].eph_private is None


def test_declined_call(net):
    net.add("a")
    net.add("b")
    net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    net.run(0.0)
    assert net.layers["b"].decline(0.5)
    net.run(0.5)
    assert ended(net, "a").reason is EndReason.DECLINED
    assert ended(net, "b").reason is EndReason.DECLINED


def test_caller_cancels_while_ringing(net):
    net.add("a")
    net.add("b")
    net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    net.run(0.0)
    net.layers["a"].hang_up(3.0)
    net.run(3.0)
    assert ended(net, "a").reason is EndReason.HUNG_UP
    assert ended(net, "b").reason is EndReason.REMOTE_HUNG_UP


def test_no_answer_times_out_on_both_sides(net):
    settings = SessionSettings(no_answer_timeout=5.0)
    net.add("a", settings=settings)
    net.add("b", settings=settings)
    net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    net.run(0.0)
    net.advance(0.0, 10.0)
    assert ended(net, "a").reason is EndReason.NO_ANSWER
    assert ended(net, "a").at == pytest.approx(5.0)
    assert ended(net, "b").reason is EndReason.NO_ANSWER
    rings = [d for s, _, d in net.log if s == "a" and d[0] == SIGNAL]
    assert len(rings) >= 5  # RING repeated every second while ringing


def test_busy_when_configured_busy(net):
    net.add("a")
    net.add("b").set_busy(True)
    net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    net.run(0.0)
    assert ended(net, "a").reason is EndReason.BUSY
    assert net.of("b", MissedCall)[0].peer_id == as_int(net.layers["a"].identity)
    assert not net.of("b", IncomingCall) and not net.layers["b"].sessions


def test_second_call_to_a_node_in_a_call_gets_busy(net):
    connect(net, "a", "b")
    net.add("c")
    net.layers["c"].call(as_int(net.layers["b"].identity), 1.0, addr="b")
    net.run(1.0)
    assert ended(net, "c").reason is EndReason.BUSY
    assert len(net.of("b", MissedCall)) == 1
    assert [s.state for s in net.layers["b"].sessions.values()] == [CallState.TALKING]


def test_several_calls_at_once_on_one_layer():
    net = Net(SessionSettings(max_calls=3))
    hub = net.add("hub")
    ids = {}
    for name in ("x", "y", "z"):
        ids[name] = connect(net, name, "hub", 0.0)
    assert len(hub.sessions) == 3
    for i, name in enumerate(("x", "y", "z")):
        net.layers[name].send_media(ids[name][0], name.encode(), 0.1 + i)
    net.run(3.0)
    got = {(e.session_id, e.payload) for e in net.of("hub", MediaReceived)}
    assert got == {(ids[n][1], n.encode()) for n in ("x", "y", "z")}
    for name in ("x", "y", "z"):
        hub.send_media(ids[name][1], b"to " + name.encode(), 3.1)
    net.run(3.1)
    for name in ("x", "y", "z"):
        assert [e.payload for e in net.of(name, MediaReceived)] == [b"to " + name.encode()]
    # a fourth call is over the limit
    net.add("w")
    net.layers["w"].call(as_int(hub.identity), 4.0, addr="hub")
    net.run(4.0)
    assert ended(net, "w").reason is EndReason.BUSY


def test_two_calls_between_the_same_pair_are_told_apart():
    net = Net(SessionSettings(max_calls=2))
    first = connect(net, "a", "b", 0.0)
    second = connect(net, "a", "b", 1.0)
    a, b = net.layers["a"], net.layers["b"]
    a.send_media(first[0], b"one", 2.0)
    a.send_media(second[0], b"two", 2.0)
    net.run(2.0)
    got = {e.payload: e.session_id for e in net.of("b", MediaReceived)}
    assert got == {b"one": first[1], b"two": second[1]}


def test_unreachable_after_bounded_key_req_retries_with_backoff(net):
    a = net.add("a")
    target = identity("p256", "nobody")
    a.call(as_int(target), 0.0, addr="void")
    times = [0.0 for d, _ in a.datagrams_to_send(0.0) if d[0] == KEY_REQ]
    now = 0.0
    while a.sessions:
        now = a.get_timer()
        a.handle_timer(now)
        out = a.datagrams_to_send(now)
        times.extend(now for d, _ in out if d[0] == KEY_REQ)
        net.events["a"].extend(iter(a.next_event, None))
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5]  # 5 tries, the interval doubling
    assert now == pytest.approx(15.5)
    assert ended(net, "a").reason is EndReason.UNREACHABLE


def test_a_key_req_for_another_id_gets_no_answer_so_the_call_is_unreachable(net):
    net.add("a")
    net.add("b")
    impostor = identity("p256", "impostor")
    net.layers["a"].call(as_int(impostor), 0.0, addr="b")  # the address is b's, not the ID's
    net.run(0.0)
    assert net.layers["a"].stats["wrong_identity"] == 0
    # b verified the KEY_REQ against its own ID: the caller dialled someone else
    assert net.layers["b"].stats["bad_signature"] == 1
    assert not net.layers["b"].sessions
    net.advance(0.0, 20.0, step=0.5)  # b never answers: nothing failed authentication at a
    assert ended(net, "a").reason is EndReason.UNREACHABLE
    assert net.layers["b"].stats["bad_signature"] == 5  # every try


def test_wrong_identity_key_res_is_dropped_then_ends_as_auth_failure():
    """A KEY_RES from a node that is not the one dialled: dropped each time, then auth failure."""
    net = Net()
    a = net.add("a")
    b = net.add("b")
    mallory = net.add("m")
    a.call(as_int(b.identity), 0.0, addr="m")  # the lookup led to mallory's address
    net.run(0.0)  # mallory cannot answer a KEY_REQ for b's ID
    assert a.stats["wrong_identity"] == 0 and mallory.stats["bad_signature"] == 1
    # craft: mallory runs a genuine handshake as the callee for a call *to her*, then replays
    # that KEY_RES to a (her identity is not b's): a must drop it as wrong_identity
    c = net.add("c")
    c.call(as_int(mallory.identity), 0.0, addr="m")
    out = c.datagrams_to_send(0.0)
    mallory.receive_datagram(out[0][0], "c", 0.0)
    key_res = [d for d, _ in mallory.datagrams_to_send(0.0) if d[0] == KEY_RES][0]
    before = a.snapshot()
    a.receive_datagram(key_res, "m", 0.1)
    assert a.stats["wrong_identity"] == 1
    assert a.snapshot() == before
    net.layers.pop("c")
    net.events.pop("c")
    net.advance(0.1, 20.0, step=0.5)
    assert ended(net, "a").reason is EndReason.AUTH_FAILURE


def test_lost_key_res_is_recovered_by_retransmission_and_answered_idempotently():
    lost = {"key_res": 1}

    def drop(src, dst, data):
        if data[0] == KEY_RES and lost["key_res"]:
            lost["key_res"] -= 1
            return True
        return False

    net = Net(drop=drop)
    a = net.add("a")
    b = net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    assert not net.of("a", CallProgress)[1:]  # still in key exchange
    net.advance(0.0, 0.6)
    key_res = [d for s, _, d in net.log if d[0] == KEY_RES]
    assert len(key_res) == 2 and key_res[0] == key_res[1]  # the same answer, not a new session
    assert b.stats["duplicate_key_req"] == 1
    assert len(b.sessions) == 1
    assert [e.state for e in net.of("a", CallProgress)][-1] is CallState.RINGING
    assert len(net.of("b", IncomingCall)) == 1


def test_lost_ring_and_answer_are_recovered():
    dropped = {"a": 1, "b": 1}

    def drop(src, dst, data):
        if data[0] == SIGNAL and dropped.get(src):
            dropped[src] -= 1
            return True
        return False

    net = Net(drop=drop)
    a = net.add("a")
    b = net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    assert not net.of("b", IncomingCall)  # the first RING was lost
    net.advance(0.0, 1.05)
    assert net.of("b", IncomingCall)  # the repeated one arrived
    b.answer(1.1)
    net.run(1.1)  # the ANSWER is lost
    assert [e.state for e in net.of("a", CallProgress)][-1] is CallState.RINGING
    net.advance(1.1, 2.2)  # the next RING gets a fresh ANSWER
    assert [e.state for e in net.of("a", CallProgress)][-1] is CallState.TALKING


def test_peer_vanished_while_talking():
    net = Net(SessionSettings(peer_timeout=5.0))
    sid, _ = connect(net)
    net.layers.pop("b")
    net.advance(0.0, 10.0, step=0.5)
    event = ended(net, "a")
    assert event.reason is EndReason.PEER_VANISHED and 5.0 <= event.at <= 6.0


def test_keepalives_keep_an_idle_call_up_and_reports_flow():
    net = Net(SessionSettings(peer_timeout=5.0, report_interval=1.0))
    sid, incoming = connect(net)
    net.advance(0.0, 30.0, step=0.5)
    assert not net.of("a", CallEnded) and not net.of("b", CallEnded)
    reports = net.of("a", ReceiverReport)
    assert len(reports) >= 25
    assert reports[-1].fraction_lost == 0 and reports[-1].cumulative_lost == 0


def test_receiver_report_tells_loss_and_highest_sequence():
    count = {"n": 0}

    def drop(src, dst, data):
        if src == "a" and data[0] == MEDIA:
            count["n"] += 1
            return count["n"] % 4 == 0  # every fourth MEDIA packet is lost
        return False

    net = Net(SessionSettings(report_interval=1.0))
    sid, incoming = connect(net)
    net.drop = drop
    a = net.layers["a"]
    now = 0.0
    for i in range(41):  # media seqs 1..41; the 4th, 8th, ... 40th are lost
        now = 0.02 * (i + 1)
        a.send_media(sid, b"x" * 80, now)
        net.run(now)
    net.advance(now, 1.2)  # due at 1.0; no packet from a came after that: sent report_grace late
    report = net.of("a", ReceiverReport)[0]
    assert report.cumulative_lost == 10
    assert report.fraction_lost == pytest.approx(10 / 42, abs=1 / 256)
    assert report.highest_seq == 41
    stats = net.layers["b"].session_stats(incoming)
    assert stats.lost == 10 and stats.packets == 33  # RING, 31 MEDIA, a's own REPORT


def test_dialling_ends_unreachable_when_the_peer_is_not_found(net):
    a = net.add("a")
    sid = a.call(as_int(identity("p256", "x")), 0.0)
    assert a.state_of(sid) is CallState.DIALLING
    a.peer_found(sid, None, 1.0)
    net.run(1.0)
    assert ended(net, "a").reason is EndReason.UNREACHABLE


def test_dial_timeout(net):
    a = net.add("a")
    a.call(as_int(identity("p256", "x")), 0.0)
    assert a.get_timer() == 20.0
    a.handle_timer(19.9)
    assert a.sessions
    a.handle_timer(20.0)
    net.run(20.0)
    assert ended(net, "a").reason is EndReason.UNREACHABLE


def test_callee_forgets_a_handshake_that_never_rings():
    dropping = {"on": True}
    net = Net(drop=lambda s, d, data: data[0] == SIGNAL and dropping["on"])
    a = net.add("a")
    b = net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    assert b.pending_handshakes == 1
    b.handle_timer(b.settings.handshake_timeout - 0.01)  # a caller may still be ringing
    assert b.pending_handshakes == 1
    b.handle_timer(b.settings.handshake_timeout)
    assert b.pending_handshakes == 0 and b.stats["handshake_timeout"] == 1
    assert not net.of("b", CallEnded)  # never announced, so no event


def test_calling_ourselves_is_refused(net):
    a = net.add("a")
    with pytest.raises(ValueError):
        a.call(as_int(a.identity), 0.0, addr="a")


def test_answer_with_nothing_ringing_returns_false(net):
    a = net.add("a")
    assert a.answer(0.0) is False and a.decline(0.0) is False and a.hang_up(0.0) is False
    assert a.send_media(7, b"x", 0.0) is None


def test_ambiguous_answer_needs_a_session_id():
    net = Net(SessionSettings(max_calls=3))
    net.add("hub")
    for name in ("x", "y"):
        net.add(name)
        net.layers[name].call(as_int(net.layers["hub"].identity), 0.0, addr="hub")
    net.run(0.0)
    with pytest.raises(ValueError):
        net.layers["hub"].answer(0.1)


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa", "dsa", "ed25519"])
def test_any_identity_key_type_can_call_and_be_called(kind):
    net = Net()
    net.add("a", identity(kind, "a"))
    net.add("b", identity(kind, "b"))
    connect(net)
    assert [e.state for e in net.of("a", CallProgress)][-1] is CallState.TALKING


def test_clocks_too_far_apart_fail_the_handshake():
    net = Net()
    a = net.add("a", clock=1_767_225_600.0)
    b = net.add("b", clock=1_767_225_600.0 + 120)
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    assert b.stats["stale_timestamp"] == 1 and not b.sessions


def test_sequence_space_exhaustion_ends_the_call(net):
    sid, _ = connect(net)
    a = net.layers["a"]
    a.sessions[sid].tx.seq = 0xFFFFFFFF
    assert a.send_media(sid, b"last", 1.0) == 0xFFFFFFFF
    assert a.send_media(sid, b"one too many", 1.0) is None
    net.run(1.0)
    assert net.of("a", CallEnded)[0].reason is EndReason.EXHAUSTED


def test_events_are_frozen_and_slotted(net):
    connect(net)
    for events in net.events.values():
        for event in events:
            assert not hasattr(event, "__dict__")
            with pytest.raises(AttributeError):
                event.at = 1.0  # type: ignore[misc]
    assert net.of("a", CallProgress)[0].role is Role.CALLER


def test_peer_vanished_while_ringing():
    net = Net(SessionSettings(peer_timeout=5.0))
    net.add("a")
    net.add("b")
    net.layers["a"].call(as_int(net.layers["b"].identity), 0.0, addr="b")
    net.run(0.0)
    net.layers.pop("b")  # the callee's machine goes away while its phone rings
    net.advance(0.0, 20.0, step=0.5)
    event = ended(net, "a")
    assert event.reason is EndReason.PEER_VANISHED and event.at < 10.0


def test_timers_fired_early_or_twice_do_nothing():
    net = Net()
    connect(net)
    a, b = net.layers["a"], net.layers["b"]
    deadline = a.get_timer()
    for _ in range(3):
        a.handle_timer(0.0)
        a.handle_timer(deadline - 1e-6)
    assert a.datagrams_to_send(deadline) == [] and a.get_timer() == deadline
    a.handle_timer(deadline)
    assert a.datagrams_to_send(deadline)  # now the keepalive or report is due
    assert a.get_timer() > deadline


def test_a_peer_jumping_to_the_last_sequence_number_costs_the_callee_nothing(net):
    """Review M1: any caller (a throwaway identity will do) could send seq 0, then 0xFFFFFFFF."""
    import tracemalloc

    from kadtalk.node.session.wire import KEEPALIVE, encode_signal

    a, b = net.add("a"), net.add("b")
    sid = a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)  # RING (seq 0) delivered: b rings
    tx = a.sessions[sid].tx
    tx.seq = 0xFFFFFFFF
    evil = tx.seal(SIGNAL, encode_signal(KEEPALIVE))
    tracemalloc.start()
    try:
        b.receive_datagram(evil, "a", 0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    (session,) = b.sessions.values()
    assert session.rx.highest == 0xFFFFFFFF and session.rx.window.bits == 1


def test_a_retransmitted_key_req_keeps_the_callee_handshake_alive():
    """Every duplicate KEY_REQ restarts the callee's wait (handshake_timeout), so lost KEY_RES
    are recovered up to the caller's last try."""
    clock = {"now": 0.0}
    net = Net(drop=lambda s, d, data: data[0] == KEY_RES and clock["now"] < 7.0)
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    now = 0.0
    while now < 8.0:
        now = min(t for t in (a.get_timer(), b.get_timer(), 8.0) if t is not None)
        clock["now"] = now
        net.tick(now)
    assert b.stats["duplicate_key_req"] == 4 and not b.stats["handshake_timeout"]
    assert net.of("b", IncomingCall)  # the KEY_RES answering the 7.5 s try got through


def test_glare_two_nodes_calling_each_other_at_once_end_up_in_one_call(net):
    """Review should-fix 3: both used to end BUSY. The lower ID keeps its outgoing call; the
    other drops its own and answers the incoming one at once (its user asked for this peer)."""
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    b.call(as_int(a.identity), 0.0, addr="a")
    net.run(0.0)
    low, high = ("a", "b") if a.own_id < b.own_id else ("b", "a")
    assert not net.of("a", MissedCall) and not net.of("b", MissedCall)
    assert not net.of(low, CallEnded)
    (gone,) = net.of(high, CallEnded)
    assert gone.reason is EndReason.GLARE and gone.role is Role.CALLER
    assert [e.state for e in net.of(low, CallProgress)][-1] is CallState.TALKING
    assert net.of(high, IncomingCall)[0].peer_id == as_int(net.layers[low].identity)
    for name in (low, high):
        (live,) = net.layers[name].sessions.values()
        assert live.state is CallState.TALKING
        assert live.role is (Role.CALLER if name == low else Role.CALLEE)
    assert net.layers[low].send_media(next(iter(net.layers[low].sessions)), b"hi", 0.1) is not None
    net.run(0.1)
    assert [e.payload for e in net.of(high, MediaReceived)] == [b"hi"]


def test_a_packet_for_one_of_two_sessions_at_an_address_is_no_failure_of_the_other():
    """Review should-fix 2: every candidate session used to count the other's packets."""
    net = Net(SessionSettings(max_calls=2))
    first = connect(net, "a", "b", 0.0)
    second = connect(net, "a", "b", 1.0)
    a, b = net.layers["a"], net.layers["b"]
    for _ in range(10):
        a.send_media(second[0], b"two", 2.0)
    net.run(2.0)
    assert b.session_stats(first[1]).rejected == 0
    assert b.session_stats(second[1]).rejected == 0
    # a forgery matches neither: counted once by the layer, in no session of the two
    forged = bytes([MEDIA]) + bytes(20)
    before = b.stats["auth_failed"]
    b.receive_datagram(forged, "a", 2.1)
    assert b.stats["auth_failed"] == before + 1
    assert b.session_stats(first[1]).rejected == b.session_stats(second[1]).rejected == 0


def test_a_forgery_at_the_address_of_one_session_counts_as_its_rejected(net):
    sid, incoming = connect(net)
    b = net.layers["b"]
    b.receive_datagram(bytes([MEDIA]) + bytes(20), "a", 1.0)
    assert b.session_stats(incoming).rejected == 1 and b.stats["auth_failed"] == 1


def test_a_spoofed_key_res_only_colours_the_end_reason():
    """Review should-fix 5: `auth_failure` is advisory; a spoofed KEY_RES changes nothing else."""
    from kadtalk.node.session import handshake as hs
    from kadtalk.node.session.wire import KeyMessage, encode_key

    ends = []
    for spoof in (False, True):
        net = Net()
        a = net.add("a")
        target = identity("p256", "nobody")
        sid = a.call(as_int(target), 0.0, addr="void")
        before = a.snapshot()
        if spoof:  # anyone can claim the target's identity SPKI; the signature fails
            eph = a.sessions[sid].eph_spki
            a.receive_datagram(encode_key(KeyMessage(KEY_RES, eph, target.public_der,
                                                     round((1_767_225_600.0) * 1000), b"x")),
                               "void", 0.0)
            assert a.stats["bad_signature"] == 1
        assert a.snapshot() == before
        net.advance(0.0, 20.0, step=0.5)
        ends.append(ended(net, "a"))
    assert ends[0].at == ends[1].at and ends[0].stats == ends[1].stats
    assert [e.reason for e in ends] == [EndReason.UNREACHABLE, EndReason.AUTH_FAILURE]


def test_the_routing_table_learns_a_caller_only_from_its_first_ring():
    """Review should-fix 8: a KEY_REQ (replayable, spoofable source) proves nothing yet."""
    from random import Random

    from kadtalk.node.session import SessionLayer

    from .conftest import WALL

    net = Net(drop=lambda s, d, data: data[0] == SIGNAL and s == "a" and hold["on"])
    hold = {"on": True}
    a = net.add("a")
    seen = []
    b = SessionLayer(identity("p256", "b"), Random(1), None, WALL,
                     peer_seen=lambda peer, addr, now: seen.append((peer, addr, now)))
    net.layers["b"], net.events["b"] = b, []
    a.call(as_int(b.identity), 0.0, addr="b")
    net.run(0.0)
    assert b.pending_handshakes == 1 and seen == []  # KEY_REQ answered, caller not learnt
    hold["on"] = False
    net.advance(0.0, 1.1)  # the repeated RING arrives
    assert seen == [(as_int(a.identity), "a", seen[0][2])] and net.of("b", IncomingCall)
