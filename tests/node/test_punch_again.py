"""The second punch round (docs/protocol.md §20), driven by explicit time in MemoryNet: a caller
that has neither the callee's PUNCH nor its KEY_RES `punch_again` smoothed round trips after its
punch asks the callee's neighbours a find-closest lookup finds, those of the first round left out."""

from __future__ import annotations

import random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.session import CallEnded, CallProgress, CallState, IncomingCall
from kadtalk.node.stack import Node
from kadtalk.node.traversal import TraversalSettings
from kadtalk.transport.memory import FilteringNat, Link, MemoryNet

A_NAT, B_NAT = ("203.0.113.1", 5004), ("203.0.113.2", 5004)
R_PUBLIC, X_PUBLIC, D_GONE = ("198.51.100.1", 5004), ("198.51.100.2", 5004), ("198.51.100.3", 5004)


def node(**traversal) -> Node:
    ident = Identity.generate()
    return Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=ident, traversal=True,
                traversal_settings=TraversalSettings(punch_peers=1, **traversal))


def world(**traversal) -> tuple[MemoryNet, Node, Node, Node]:
    """a calls b, behind a filtering NAT that admits only r, b's keep-alive peer. a knows only
    x, which holds b, r and d, a peer that has left (nobody at its address) and is nearer b
    than anyone. One rendezvous a call (`punch_peers=1`): the find-peer lookup's nearest is d."""
    b = node(**traversal)
    r, x = sorted((node(**traversal) for _ in range(2)), key=lambda n: n.node_id ^ b.node_id)
    a = node(**traversal)
    nat = FilteringNat(route=Link(delay=0.01))  # 20 ms round trips
    nat.add(A_NAT)
    nat.add(B_NAT)
    net = MemoryNet(nat)
    for addr, n in ((A_NAT, a), (B_NAT, b), (R_PUBLIC, r), (X_PUBLIC, x)):
        net.attach(addr, n)
    b.join([R_PUBLIC], 0.0)  # b's NAT now admits r (the daemon's keep-alives keep it so)
    net.settle(0.0)
    net.run_until(1.0)
    assert b.traversal.keepalive_peers() == [R_PUBLIC]
    assert r.add_contact(b.node_id, B_NAT, net.now)
    assert a.add_contact(x.node_id, X_PUBLIC, net.now)
    for node_id, addr in ((b.node_id, B_NAT), (r.node_id, R_PUBLIC), (b.node_id ^ 1, D_GONE)):
        assert x.add_contact(node_id, addr, net.now)
    return net, a, b, r


def call(net: MemoryNet, a: Node, b: Node, limit: float = 30.0) -> tuple[str, float]:
    """a calls b, b answers when it rings: how a's call went, and when."""
    outcome: list = []
    seen = {A_NAT: 0, B_NAT: 0}

    def done() -> bool:
        for addr in (A_NAT, B_NAT):
            new = net.events[addr][seen[addr]:]
            seen[addr] += len(new)
            for e in new:
                if type(e) is IncomingCall:
                    net.nodes[addr].answer(net.now, e.session_id)
                    net.service(addr)
                elif type(e) is CallProgress and e.state is CallState.TALKING and addr == A_NAT:
                    outcome.append(("talking", net.now))
                elif type(e) is CallEnded and addr == A_NAT:
                    outcome.append((e.reason.value, net.now))
        return bool(outcome)

    a.call(b.node_id, net.now)
    net.service(A_NAT)
    net.run(until=done, limit=net.now + limit)
    return outcome[0]


def test_without_a_second_round_a_punch_through_a_departed_neighbour_fails():
    net, a, b, r = world(punch_again=0.0)
    start = net.now
    outcome, at = call(net, a, b)
    assert outcome == "unreachable" and at > start + 15  # every KEY_REQ try filtered
    assert a.traversal.last_rendezvous == (D_GONE,)
    assert r.traversal.stats["punch_forwarded"] == 0


def test_a_second_round_through_a_find_closest_reaches_the_callee_through_its_keepalive_peer():
    net, a, b, r = world()
    start = net.now
    outcome, at = call(net, a, b)
    assert outcome == "talking"
    assert at - start < 2.0  # the KEY_REQ retransmitted at 1.5 s gets through the punched hole
    assert a.traversal.last_rendezvous == (R_PUBLIC,)  # d asked first, then r (d left out)
    assert r.traversal.stats["punch_forwarded"] >= 1 and b.traversal.stats["punch_sent"] >= 1


def test_no_second_round_once_the_callee_has_punched():
    """With d gone from x's table, b's neighbour r is the first round's rendezvous: b's PUNCH
    comes within a few round trips, so the call needs no second round."""
    net, a, b, r = world()
    x = net.nodes[X_PUBLIC]
    assert x.routing.table.remove(x.routing.table.find(b.node_id ^ 1))
    start = net.now
    assert call(net, a, b)[0] == "talking"
    assert net.now - start < 0.5
    assert a.traversal.last_rendezvous == (R_PUBLIC,)
    assert not a._upper.punch_watch  # b's PUNCH ended the watch
    net.run_until(net.now + 2.0)
    assert r.traversal.stats["punch_forwarded"] == 1  # one PUNCH_REQ reached r, no second
    assert a.routing.lookups_running == 0
