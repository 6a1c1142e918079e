"""RINGs lost on a relayed path (the namespace testbed at 30 % core loss, session 12's CI:
"callee_never_rang"): the caller rings once its KEY_RES came through the relay and sends RING
every second; the callee forgot its half-open handshake 5 s after its KEY_RES, so with the
first five relayed RINGs lost the later ones found no session and the caller rang 10 s into
nothing. The callee now waits as long as a caller rings unheard (node/session
`handshake_timeout`). Whole nodes, explicit time; datagrams dropped by rule, not by chance."""

from __future__ import annotations

from kadtalk.node.relay import RELAY, RelayPath, wire
from kadtalk.node.session.events import CallProgress, IncomingCall
from kadtalk.node.session.state import CallState
from kadtalk.node.session.wire import SIGNAL

from .dht import A, B, Call
from .test_lossy_setup import A_PUBLIC, Drop
from .test_setup import symmetric_pair


def relayed_signal_from_caller(p) -> bool:
    """A's stream packets through its relay: until B rings, its RINGs."""
    return (p.src[0] == A_PUBLIC and p.payload[:2] == bytes((RELAY, wire.DATA))
            and p.payload[wire.HEADER:wire.HEADER + 1] == bytes((SIGNAL,)))


def test_seven_relayed_rings_lost_the_eighth_rings_the_callee():
    net, nat = symmetric_pair()
    drop = nat.route = Drop(nat.route, relayed_signal_from_caller, 7)
    call = Call(net)
    assert call.connect() == "talking"  # before: peer_vanished, B never rang
    assert drop.dropped == 7 and type(call.path(A)) is RelayPath
    ringing = next(e.at for e in call.new(A)
                   if type(e) is CallProgress and e.state is CallState.RINGING)
    (incoming,) = [e for e in call.new(B) if type(e) is IncomingCall]
    assert 6.5 < incoming.at - ringing < 8.0  # the eighth RING, 7 s after the first
    assert not net.nodes[B].session.stats["no_session"]
