"""SessionLayer.move: a call changes path only on a datagram that authenticates for it; any
other datagram over another path changes no session (hypothesis), and an authentic one does."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from kadtalk.node.session.events import IncomingCall
from kadtalk.node.session.state import CallState
from kadtalk.node.session.wire import COOKIE, KEY_RES, MEDIA, SIGNAL

from ..session.conftest import Net, as_int, identity

NOW = 1.0
OTHER = "a's other path"


def talking() -> tuple[Net, int, int]:
    net = Net()
    a, b = net.add("a"), net.add("b")
    sid_a = a.call(as_int(identity("p256", "b")), 0.0, addr="b")
    net.run(0.0)
    (incoming,) = [e for e in net.events["b"] if type(e) is IncomingCall]
    b.answer(0.0, incoming.session_id)
    net.run(0.0)
    assert a.state_of(sid_a) is CallState.TALKING
    return net, sid_a, incoming.session_id


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([MEDIA, SIGNAL, KEY_RES, COOKIE, 0x00, 0x99]),
       body=st.binary(max_size=120))
def test_a_datagram_that_does_not_authenticate_moves_nothing(kind, body):
    net, sid_a, _ = talking()
    a = net.layers["a"]
    before = a.snapshot()
    assert a.move(sid_a, OTHER, bytes((kind,)) + body, NOW) is False
    assert a.snapshot() == before  # no session, index, outbox or event changed
    assert a.sessions[sid_a].addr == "b"


def test_an_authentic_packet_over_another_path_moves_the_call():
    net, sid_a, sid_b = talking()
    a, b = net.layers["a"], net.layers["b"]
    b.send_media(sid_b, b"hello", NOW)
    [(packet, to)] = b.datagrams_to_send(NOW)
    assert to == "a"
    assert a.move(sid_a, OTHER, packet, NOW) is True
    assert a.sessions[sid_a].addr == OTHER
    assert a.move(sid_a, "elsewhere", packet, NOW) is False  # the same packet again: a replay
    assert a.sessions[sid_a].addr == OTHER and a.stats["move_refused"] == 1
    a.send_media(sid_a, b"back", NOW)
    assert {to for _, to in a.datagrams_to_send(NOW)} == {OTHER}  # the frame (and a report)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from([MEDIA, SIGNAL, KEY_RES, COOKIE]), body=st.binary(max_size=300))
def test_nor_does_one_during_the_key_exchange(kind, body):
    net = Net()
    a = net.add("a")
    sid_a = a.call(as_int(identity("p256", "b")), 0.0, addr="b")
    before = a.snapshot()
    assert a.move(sid_a, OTHER, bytes((kind,)) + body, NOW) is False
    assert a.snapshot() == before and a.sessions[sid_a].addr == "b"
    # a forged KEY_RES over another path does not colour the end reason either
    assert a.sessions[sid_a].auth_failures == 0


def test_a_refused_move_keeps_the_calls_order_at_its_address():
    """Two calls awaiting KEY_RES at one address keep their order after a refused move (the
    first in the list is the one a KEY_RES there is tried against first)."""
    net = Net()
    a = net.add("a")
    first = a.call(as_int(identity("p256", "b")), 0.0, addr="b")
    second = a.call(as_int(identity("p256", "c")), 0.0, addr="b")
    order = [s.id for s in a._awaiting["b"]]
    assert a.move(first, OTHER, bytes((KEY_RES,)) + bytes(200), NOW) is False
    assert [s.id for s in a._awaiting["b"]] == order == [first, second]
