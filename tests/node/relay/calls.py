"""Whole nodes for relayed calls: a world where two NATed nodes (transport.memory.SymmetricNat)
call each other through a third node's relay, the paths handed over by the test."""

from __future__ import annotations

from random import Random
from typing import Any, Callable

from kadtalk.node.relay import AllocationGranted, PermissionGranted, RelayPath, RelaySettings
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.session.events import CallEnded, CallProgress, IncomingCall
from kadtalk.node.session.state import CallState
from kadtalk.node.stack import Node
from kadtalk.transport.memory import MemoryNet, Route, SymmetricNat

from .conftest import identity

WALL = 1_767_225_600.0
R = ("198.51.100.1", 5004)  # the relay: public
A, B = ("10.1.0.1", 5004), ("10.2.0.1", 5004)  # behind symmetric NATs
A_PUBLIC, B_PUBLIC = "203.0.113.1", "203.0.113.2"


def node(name: str, settings: RelaySettings | None = None) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(len(name)),
                identity=me, clock_offset=WALL, relay_settings=settings)


def world(route: Callable[[Route], Route] | None = None) -> tuple[MemoryNet, SymmetricNat]:
    """R serving, A and B behind symmetric NATs; `route(next)` may wrap the wire (after the
    NATs: a malicious relay sees and changes what leaves R)."""
    nat = SymmetricNat()
    if route is not None:
        nat.route = route(nat.route)
    nat.add(A, A_PUBLIC)
    nat.add(B, B_PUBLIC)
    net = MemoryNet(nat)
    net.attach(R, node("relay", RelaySettings(serve="always")))
    net.attach(A, node("alice"))
    net.attach(B, node("bob"))
    return net, nat


def relay_path(net: MemoryNet) -> tuple[RelayPath, Any]:
    """B allocates (so it learns where the relay sees it, and its NAT stays open to R); A
    allocates; B knocks there (proving that address) and A permits it. The addresses B and A
    swap here travel in the call set-up (the next step): here the test hands them over."""
    a, b = net.nodes[A], net.nodes[B]
    b.relay.allocate(R, net.now)
    a.relay.allocate(R, net.now)
    net.settle(net.now)
    (b_granted,) = net.of(B, AllocationGranted)
    (a_granted,) = net.of(A, AllocationGranted)
    b.relay.knock(a_granted.path, net.now)  # B proves its address at A's allocation
    net.settle(net.now)
    a.relay.permit(a_granted.path, b_granted.reflexive, net.now)
    net.settle(net.now)
    assert net.of(A, PermissionGranted)
    return a_granted.path, b_granted.reflexive


def place_call(net: MemoryNet, addr: Any, limit: float) -> list:
    """A calls B at `addr`, B answers when it rings: A's outcome ("talking" or why it ended)."""
    a, b = net.nodes[A], net.nodes[B]
    outcome: list = []
    seen = {A: 0, B: 0}

    def done() -> bool:
        for at in (A, B):
            events = net.events[at]
            new, seen[at] = events[seen[at]:], len(events)
            for e in new:
                if type(e) is IncomingCall:
                    net.nodes[at].answer(net.now, e.session_id)
                    net.service(at)
                elif type(e) is CallProgress and e.state is CallState.TALKING and at == A:
                    outcome.append("talking")
                elif type(e) is CallEnded and at == A:
                    outcome.append(e.reason.value)
        return bool(outcome)

    a.call(b.node_id, net.now, addr=addr)
    net.service(A)
    net.run(until=done, limit=limit)
    return outcome
