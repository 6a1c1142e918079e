"""Relayed calls inside a call's set-up, with whole nodes: relays found among contacts, offered
in the punch, knocked at by the callee, and the call moving between paths only on datagrams
the session authenticates."""

from __future__ import annotations

from kadtalk.node.relay import RelayPath
from kadtalk.transport.memory import FilteringNat, SymmetricNat

from .dht import A, B, B_OPEN, R1, R2, Call, network


def symmetric_pair(route=None) -> tuple:
    nat = SymmetricNat() if route is None else SymmetricNat(route)
    nat.add(A, "203.0.113.1")
    nat.add(B, "203.0.113.2")
    return network(nat), nat


def test_two_symmetric_nats_call_through_a_public_nodes_relay_with_media_both_ways():
    net, nat = symmetric_pair()
    a, b = net.nodes[A], net.nodes[B]
    assert a.needs_relay and b.needs_relay  # their keep-alives found the NATs symmetric
    assert {p.relay for p in a.relays_held()} == {R1, R2}  # found among contacts, no server
    call = Call(net)
    assert call.connect() == "talking"
    assert type(call.path(A)) is RelayPath and call.path(A) == call.path(B)  # A's allocation
    to_b, to_a = call.media(1.0)
    assert to_b == [b"a%d" % i for i in range(50)] and to_a == [b"b%d" % i for i in range(50)]
    assert nat.filtered > 0  # the direct attempts (KEY_REQ, PUNCH, upgrade checks) never got in
