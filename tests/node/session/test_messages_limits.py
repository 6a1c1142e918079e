"""Attacks on text messages in the session layer (issue 14 item 1, review of 2026-12-06): a
peer flooding one session with TEXTs, a RECEIPT that would open a callee's session, and a
message that a full outbox must not lose while it moves between sessions."""

from __future__ import annotations

import pytest

from kadtalk.node.session import CallState, MessageDelivered, MessageReceived, SessionOpened
from kadtalk.node.session import SessionSettings
from kadtalk.node.session.messages import Full, encode_receipt, encode_text
from kadtalk.node.session.wire import SIGNAL

from .conftest import Net, as_int


def mid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def receipts_from(net: Net, src: str) -> int:
    return sum(1 for p in net.log if p.src == src and p.payload[0] == SIGNAL
               and len(p.payload) == 30)


def test_a_peer_flooding_one_session_with_texts_gets_only_its_budget_delivered():
    """/tmp/review/new_msg_flood.py: 5,000 TEXTs of 1 KB in 1 s on one session, sealed under
    the session's keys as a modified client would (no outbox limit on its side): b delivers
    the burst and the rate, drops the rest counted and unacknowledged."""
    net = Net()
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b", chat=True)
    net.run(0.0)
    (session,) = a.sessions.values()
    assert session.state is CallState.OPEN
    n, s = 5000, b.settings
    for i in range(n):
        now = i / n
        b.receive_datagram(session.tx.seal(SIGNAL, encode_text(mid(i), i + 1, 0, "A" * 1024)),
                           "a", now)
        net.run(now)
    got = net.of("b", MessageReceived)
    assert s.text_burst <= len(got) <= s.text_burst + s.text_rate * 1.0 + 1
    assert b.stats["text_rate_limited"] == n - len(got)
    assert receipts_from(net, "b") == len(got)  # no RECEIPT for what was dropped


def test_an_honest_sender_over_the_budget_gets_everything_delivered_by_retransmission():
    net = Net(settings=SessionSettings(text_rate=5.0, text_burst=10.0))
    a, b = net.add("a"), net.add("b")
    peer = as_int(b.identity)
    a.call(peer, 0.0, addr="b", chat=True)
    for i in range(40):
        a.send_message(peer, mid(i), i + 1, 0, f"m{i}", 0.0)
    net.run(0.0)
    assert len(net.of("b", MessageReceived)) == 10
    net.advance(0.0, 20.0, step=0.25)
    assert sorted(m.seq for m in net.of("b", MessageReceived)) == list(range(1, 41))  # once each
    assert len(net.of("a", MessageDelivered)) == 40
    assert b.stats["text_rate_limited"] > 0 and b.stats["duplicate_message"] == 0


def test_a_repeat_of_a_delivered_text_is_acknowledged_without_spending_the_budget():
    net = Net(settings=SessionSettings(text_rate=0.001, text_burst=1.0))
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b", chat=True)
    net.run(0.0)
    (session,) = a.sessions.values()
    frame = encode_text(mid(1), 1, 0, "once")
    for now in (0.1, 0.2, 0.3):  # our RECEIPT was lost: the sender sends it again
        b.receive_datagram(session.tx.seal(SIGNAL, frame), "a", now)
        net.run(now)
    assert len(net.of("b", MessageReceived)) == 1 and receipts_from(net, "b") == 3
    b.receive_datagram(session.tx.seal(SIGNAL, encode_text(mid(2), 2, 0, "over")), "a", 0.4)
    assert b.stats["text_rate_limited"] == 1 and b.stats["duplicate_message"] == 2


def test_the_text_budget_must_be_positive():
    with pytest.raises(ValueError, match="text_rate"):
        SessionSettings(text_rate=0)
    with pytest.raises(ValueError, match="text_burst"):
        SessionSettings(text_burst=0.5)


def test_a_receipt_as_the_first_packet_does_not_open_the_callees_session(net):
    """docs/protocol.md §15b: only a TEXT (or a RING) opens a callee's session."""
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b", chat=True)  # keys agreed, no message sent yet
    net.run(0.0)
    (ours,) = a.sessions.values()
    (theirs,) = b.sessions.values()
    assert ours.state is CallState.OPEN and theirs.state is CallState.KEY_EXCHANGE
    b.receive_datagram(ours.tx.seal(SIGNAL, encode_receipt(mid(9))), "a", 0.1)
    assert theirs.state is CallState.KEY_EXCHANGE and not net.of("b", SessionOpened)
    assert b.stats["unexpected_message"] == 1


def test_a_message_moving_to_a_full_outbox_stays_where_it_waited(net):
    """send_message takes a message off a session still in key exchange for one that carries
    messages; when that one's outbox is full (messages.Full) the message must stay queued."""
    net.settings = SessionSettings(max_unacked=1)
    a, b = net.add("a"), net.add("b")
    peer = as_int(b.identity)
    stale = a.call(peer, 0.0, addr="nobody", chat=True)  # never answers
    assert a.send_message(peer, mid(1), 1, 0, "waiting", 0.0) == stale
    b.call(as_int(a.identity), 0.5, addr="a", chat=True)
    b.send_message(as_int(a.identity), mid(50), 1, 0, "hi", 0.5)
    net.run(0.5)
    (opened,) = net.of("a", SessionOpened)
    assert a.send_message(peer, mid(2), 2, 0, "fills it", 0.5) == opened.session_id
    with pytest.raises(Full):
        a.send_message(peer, mid(1), 1, 0, "waiting", 0.5)
    assert mid(1) in a.sessions[stale].outbox  # not lost: it still waits there
    net.run(0.5)
    assert a.send_message(peer, mid(1), 1, 0, "waiting", 0.5) == opened.session_id
    assert mid(1) not in a.sessions[stale].outbox
    net.run(0.5)
    assert sorted(m.text for m in net.of("b", MessageReceived)) == ["fills it", "waiting"]


def test_many_strangers_share_one_budget_and_a_contact_is_not_held_back_by_them():
    """Identities cost nothing: five strangers' sessions get the strangers' budget between
    them, not five times the per-session one; the user's contact (`trusted`) is not charged."""
    net = Net()
    b = net.add("b", settings=SessionSettings(stranger_text_rate=1.0, stranger_text_burst=30.0,
                                              trusted=lambda peer: peer == contact))
    senders = [net.add(f"s{i}") for i in range(5)] + [net.add("friend")]
    contact = as_int(senders[-1].identity)
    for layer in senders:
        layer.call(as_int(b.identity), 0.0, addr="b", chat=True)
    net.run(0.0)
    names = [f"s{i}" for i in range(5)] + ["friend"]
    for k, (name, layer) in enumerate(zip(names, senders)):
        (session,) = layer.sessions.values()
        for i in range(20):
            b.receive_datagram(session.tx.seal(SIGNAL, encode_text(mid(100 * k + i), i + 1, 0,
                                                                   "x")), name, 0.0)
    net.run(0.0)
    got = net.of("b", MessageReceived)
    assert sum(1 for m in got if m.peer_id != contact) == 30
    assert sum(1 for m in got if m.peer_id == contact) == 20
    assert b.stats["stranger_text_rate_limited"] == 70
