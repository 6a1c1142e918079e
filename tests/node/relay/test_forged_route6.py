"""An IPv4-only caller's call lookup reads the callee's IPv6 address out of ROUTE6_RES answers
(`Node._named`): only answers the routing layer takes (`RoutingLayer.awaits`: our request to
that address for that target, by the ID we asked there) may set it, name rendezvous or start a
relay search. Review R1 (session 8): before, every ROUTE6_RES did, from any (spoofed) source."""

from __future__ import annotations

from kadtalk.node.routing.messages import RouteResponse
from kadtalk.node.routing.route6 import encode_response
from kadtalk.node.traversal import PUNCH_REQ_RELAY, TRAVERSAL

from .dht import Call
from .test_families import P4, V6, world

VICTIM = ("198.51.100.99", 5004)  # never part of the network: the spoofed source
FORGED = ("2001:db8:bad::1", 5004)


def test_an_unsolicited_route6_res_neither_names_the_callee_nor_draws_datagrams():
    net, hops = world()
    caller = net.nodes[P4]
    ghost = 0x1234567890ABCDEF1234567890ABCDEF12345678  # a callee nobody holds (offline)
    caller.call(ghost, net.now)
    assert ghost in caller._upper.named
    forged = encode_response(RouteResponse(0xBAD, ghost, [(ghost, FORGED)], ipv6=True))
    since = net.now
    caller.receive_datagram(forged, VICTIM, net.now)  # nobody asked VICTIM anything
    net.service(P4)
    assert caller._upper.named[ghost][0] is None  # the callee's address is not the forger's
    assert caller._upper.named[ghost][1] == []  # nor is the forger a rendezvous
    net.run_until(net.now + 20.0)  # past the relay client's HELLO retries (15.5 s)
    assert not [p for t, p in hops.log if t >= since and p.dst == VICTIM]  # no reflection
    assert caller.routing.stats["unsolicited"] >= 1  # routing dropped it, counted


def test_forged_answers_with_ids_near_the_callee_take_no_rendezvous_slot():
    """choose_rendezvous sorts named responders by XOR distance: 8 forged answers claiming IDs
    next to the callee's, from 8 spoofed sources, would take every slot of the first punch and
    receive the caller's PUNCH_REQ_RELAY (naming its allocation, a capability: §21)."""
    net, hops = world()
    callee_id = net.nodes[V6].node_id
    since = net.now
    call = Call(net, a=P4, b=V6)
    caller = net.nodes[P4]
    spoofed = [(f"198.51.100.{100 + i}", 5004) for i in range(1, 9)]
    for i, src in enumerate(spoofed, 1):
        forged = encode_response(RouteResponse(callee_id ^ i, callee_id,
                                               [(callee_id, FORGED)], ipv6=True))
        caller.receive_datagram(forged, src, net.now)
    net.service(P4)
    assert call.connect(limit=30.0) == "talking"  # through the real rendezvous
    assert not [p.dst for t, p in hops.log if t >= since and p.dst in spoofed]
    assert not [p for t, p in hops.log if t >= since and p.dst == FORGED]
    assert not [p for t, p in hops.log if t >= since and p.dst in spoofed
                and p.payload[:2] == bytes((TRAVERSAL, PUNCH_REQ_RELAY))]
