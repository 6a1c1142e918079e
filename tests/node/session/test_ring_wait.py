"""The callee waits for the first RING as long as a caller rings unheard.

A caller shows "ringing" as soon as its KEY_RES arrives and sends RING every `ring_interval`
until it hears the callee or has heard nothing for `peer_timeout` (peer_vanished). The callee
rings only when a RING arrives (the RING proves the caller holds the key of its KEY_REQ). In
the namespace testbed at 30 % core loss through a relay (51 % a relayed direction; session 12's
CI, "callee_never_rang") five RINGs in a row were lost: the callee forgot the handshake after
its 5 s `handshake_timeout`, the later RINGs found no session (`no_session`), and the caller
rang for 10 s while the callee never rang: a phone ringing at one end only. In memory (the
testbed's five nodes, 20 ms, 30 % loss) 13 of 500 dials did so. The callee now waits at least
`peer_timeout` (+ a round trip) for the RING. Explicit time, no sleeps.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    SessionSettings,
)
from kadtalk.node.session.wire import MEDIA, SIGNAL
from kadtalk.transport.memory import Packet

from .conftest import Net, as_int

STREAM = (MEDIA, SIGNAL)


class LossyNet(Net):
    """`delay` one way; the caller's stream packets (its RINGs until the callee rings) are lost
    as `losses` says, in order, and every one after the pattern is lost too (a path that died)
    unless `then_deliver`. Counts the caller's stream packets delivered to the callee."""

    def __init__(self, losses: list[bool], delay: float, then_deliver: bool = False):
        super().__init__()
        self.losses, self.delay, self.then_deliver = list(losses), delay, then_deliver
        self.stream_sent = self.stream_delivered = 0

    def _route(self, packet: Packet, now: float) -> tuple:
        self.log.append(packet)
        if packet.src == "a" and packet.payload[0] in STREAM:
            k = self.stream_sent
            self.stream_sent += 1
            lost = self.losses[k] if k < len(self.losses) else not self.then_deliver
            if lost:
                return ()
            self.stream_delivered += 1
        return ((self.delay, packet),)


def dial(net: LossyNet, until: float) -> None:
    a, b = net.add("a"), net.add("b")
    a.call(as_int(b.identity), 0.0, addr="b")
    net.settle(0.0)
    net.run_until(until)


def rang(net: Net) -> bool:
    return any(e.state is CallState.RINGING for e in net.of("a", CallProgress))


def test_the_default_wait_outlasts_a_caller_ringing_unheard():
    s = SessionSettings()
    assert s.handshake_timeout >= s.peer_timeout + s.ring_interval
    with pytest.raises(ValueError):
        SessionSettings(handshake_timeout=s.peer_timeout - 1.0)


def test_seven_lost_rings_then_one_arrives_the_callee_rings():
    """Before: the callee forgot the handshake at 5 s; the eighth RING (7 s) found no
    session, and the caller ended peer_vanished at 10 s while the callee had never rung."""
    net = LossyNet([True] * 7, delay=0.02, then_deliver=True)
    dial(net, 8.0)
    assert rang(net)
    (incoming,) = net.of("b", IncomingCall)
    assert 7.0 < incoming.at < 7.2
    assert not net.layers["b"].stats["no_session"]
    assert net.layers["b"].answer(net.now, incoming.session_id)
    net.settle(net.now)
    net.run_until(net.now + 0.1)  # the ANSWER's one-way delay
    assert [e.state for e in net.of("a", CallProgress)][-1] is CallState.TALKING


@given(losses=st.lists(st.booleans(), max_size=14), delay=st.floats(0.0, 0.45))
def test_a_ring_that_reaches_the_callee_always_rings_it(losses, delay):
    """Any loss of the caller's RINGs (then none, or all, lost), any one-way delay up to
    0.45 s: when a RING the caller sent reaches the callee, the callee rings (no RING finds the
    handshake forgotten); when none does, the caller's ringing ends peer_vanished and the
    callee has forgotten the handshake quietly by a ring interval after. Both ends agree
    whether it rang, except for that final second."""
    for then_deliver in (False, True):
        net = LossyNet(losses, delay, then_deliver)
        dial(net, 40.0)
        assert rang(net)
        b = net.layers["b"]
        assert not b.stats["no_session"], (losses, delay, then_deliver)
        if net.stream_delivered:
            assert len(net.of("b", IncomingCall)) == 1
        else:
            assert not net.of("b", IncomingCall)
            (end,) = net.of("a", CallEnded)
            assert end.reason is EndReason.PEER_VANISHED
            assert b.pending_handshakes == 0 and b.stats["handshake_timeout"] == 1
