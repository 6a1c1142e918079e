"""A TEXT's RECEIPT only once its receiver's owner saved it (SessionLayer.confirm, issue 14): an
owner that cannot write a message (disk full) sends no RECEIPT, so its sender keeps sending it;
each repeat is reported again until the owner confirms; then one RECEIPT, and the sender's
message is delivered. Sans-I/O with explicit `now`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.ratelimit import TokenBucket
from kadtalk.node.session import (
    MessageDelivered,
    MessageReceived,
    MessagesUnsent,
    SessionSettings,
)
from kadtalk.node.session.messages import Inbox
from kadtalk.node.session.wire import SIGNAL

from .conftest import Net, as_int
from .test_messages import chat, mid

RECEIPT_DATAGRAM = 30  # bytes on the wire: header + RECEIPT plaintext + tag


def receipts_from(net: Net, src: str) -> int:
    return sum(1 for s, _, data in net.log
               if s == src and data[0] == SIGNAL and len(data) == RECEIPT_DATAGRAM)


def test_no_receipt_until_the_owner_confirms_and_the_sender_keeps_sending_meanwhile():
    net = Net()
    net.add("a"), net.add("b")
    net.unsaved.add("b")  # b's owner cannot write the message (its disk is full)
    chat(net)
    a, b = net.layers["a"], net.layers["b"]
    assert len(net.of("b", MessageReceived)) == 1
    net.advance(0.0, 6.0)
    assert not net.of("a", MessageDelivered) and receipts_from(net, "b") == 0
    resent = a.stats["message_resent"]
    assert resent >= 3  # 0.5, 1.5, 3.5 s: the sender goes on
    got = net.of("b", MessageReceived)
    assert len(got) == 1 + resent  # every repeat is reported again: the owner may save it now
    assert {m.message_id for m in got} == {mid(1)} and b.stats["held_message_repeat"] == resent
    assert b.stats.get("duplicate_message", 0) == 0

    # the disk is back: the owner saves it and confirms; one RECEIPT, delivered once
    assert b.confirm(got[-1].session_id, mid(1), 6.0)
    net.run(6.0)
    (done,) = net.of("a", MessageDelivered)
    assert done.message_id == mid(1) and receipts_from(net, "b") == 1
    assert not b.confirm(got[-1].session_id, mid(1), 6.0)  # once
    net.unsaved.clear()
    net.advance(6.0, 12.0)
    assert len(net.of("b", MessageReceived)) == len(got)  # nothing more comes
    assert not any(s.outbox for s in a.sessions.values())


def test_an_owner_that_never_confirms_leaves_the_message_unsent_and_the_next_session_delivers():
    net = Net(settings=SessionSettings(chat_idle_timeout=10.0))
    net.add("a"), net.add("b")
    net.unsaved.add("b")
    first = chat(net)
    net.advance(0.0, 12.0, step=0.5)
    (unsent,) = net.of("a", MessagesUnsent)  # the session idled out without the receipt
    assert list(unsent.message_ids) == [mid(1)]
    assert not net.of("a", MessageDelivered) and receipts_from(net, "b") == 0
    assert all(not layer.sessions for layer in net.layers.values())
    old = net.of("b", MessageReceived)[-1].session_id
    assert not net.layers["b"].confirm(old, mid(1), 12.0)  # that session is gone: no receipt

    net.unsaved.clear()  # the disk is back: the next session's copy is saved and confirmed
    second = chat(net, now=12.0)  # the owner sends it again, the same id
    assert second != first
    (done,) = net.of("a", MessageDelivered)
    assert done.message_id == mid(1) and done.session_id == second
    assert net.of("b", MessageReceived)[-1].session_id != old


def test_a_confirmed_messages_repeat_gets_its_receipt_again_and_is_not_reported():
    lost = [1]

    def drop(src, dst, data):  # the first RECEIPT is lost
        if src == "b" and data[0] == SIGNAL and len(data) == RECEIPT_DATAGRAM and lost[0]:
            lost[0] -= 1
            return True
        return False

    net = Net(drop=drop)
    chat(net)
    net.advance(0.0, 3.0)
    assert len(net.of("b", MessageReceived)) == 1  # confirmed: the repeat is only acknowledged
    assert net.layers["b"].stats["duplicate_message"] == 1
    assert "held_message_repeat" not in net.layers["b"].stats
    assert len(net.of("a", MessageDelivered)) == 1 and receipts_from(net, "b") == 2


def test_confirm_of_what_is_not_held_sends_nothing(net):
    chat(net)
    b = net.layers["b"]
    (got,) = net.of("b", MessageReceived)
    sent = len(net.log)
    assert not b.confirm(got.session_id, mid(1), 0.0)  # confirmed already (by its owner)
    assert not b.confirm(got.session_id, mid(2), 0.0)  # never came
    assert not b.confirm(12345, mid(1), 0.0)  # no such session
    net.run(0.0)
    assert len(net.log) == sent and not b.stats


def test_a_held_messages_repeats_cost_tokens_and_a_confirmed_ones_do_not():
    inbox = Inbox(8, TokenBucket(0.001, 2, 0.0))
    assert inbox.admits(mid(1), 0.0) and inbox.add(mid(1), hold=True)
    assert inbox.held(mid(1)) and not inbox.known(mid(1))
    assert inbox.admits(mid(1), 0.0)  # the second token
    assert not inbox.admits(mid(1), 0.0)  # a held repeat is metered like a new message
    assert inbox.confirm(mid(1)) and inbox.known(mid(1)) and not inbox.confirm(mid(1))
    assert all(inbox.admits(mid(1), 0.0) for _ in range(100))  # now free: a RECEIPT each


@given(st.lists(st.tuples(st.sampled_from(["add", "hold", "confirm"]), st.integers(0, 9)),
                max_size=80))
def test_the_inbox_holds_exactly_what_came_held_and_was_not_confirmed(script):
    inbox = Inbox(4)
    window: list[int] = []  # the latest 4 ids, oldest first (the model)
    held: set[int] = set()
    for op, i in script:
        if op == "confirm":
            assert inbox.confirm(mid(i)) == (i in held)
            held.discard(i)
        else:
            fresh = inbox.add(mid(i), hold=op == "hold")
            assert fresh == (i not in window)
            if fresh:
                window.append(i)
                if op == "hold":
                    held.add(i)
                if len(window) > 4:
                    held.discard(window.pop(0))  # forgotten: it would be new again
            else:
                window.remove(i)
                window.append(i)
        for j in range(10):
            assert inbox.held(mid(j)) == (j in held)
            assert inbox.known(mid(j)) == (j in window and j not in held)


def test_the_receipt_goes_to_the_peer_that_sent_the_message():
    net = Net()
    net.add("a"), net.add("b"), net.add("c")
    net.unsaved.add("b")
    chat(net, a="a", b="b")
    chat(net, a="c", b="b", i=2, text="from c")
    got = {m.peer_id: m for m in net.of("b", MessageReceived)}
    a, c = as_int(net.layers["a"].identity), as_int(net.layers["c"].identity)
    assert set(got) == {a, c}
    assert net.layers["b"].confirm(got[c].session_id, mid(2), 0.0)
    assert not net.layers["b"].confirm(got[c].session_id, mid(1), 0.0)  # a's is on another
    net.run(0.0)
    assert [d.message_id for d in net.of("c", MessageDelivered)] == [mid(2)]
    assert not net.of("a", MessageDelivered)
