"""A small network of whole nodes with upkeep and traversal (the daemon's node), some behind
NATs: relays are found, offered in the punch and used during a call's set-up, with no address
handed over by the test (docs/protocol.md §21, "Relayed calls")."""

from __future__ import annotations

from random import Random
from typing import Any, Hashable

from kadtalk.node.identity import Identity
from kadtalk.node.relay import RelaySettings
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.session.events import CallEnded, CallProgress, IncomingCall, MediaReceived
from kadtalk.node.session.state import CallState
from kadtalk.node.stack import Node
from kadtalk.transport.memory import MemoryNet, Route

from .conftest import identity

WALL = 1_767_225_600.0
R1, R2 = ("198.51.100.1", 5004), ("198.51.100.2", 5004)  # public, serving as relays
P1, P2, P3 = ("198.51.100.11", 5004), ("198.51.100.12", 5004), ("198.51.100.13", 5004)
A, B = ("10.1.0.1", 5004), ("10.2.0.1", 5004)  # private addresses (behind the test's NATs)
B_OPEN = ("203.0.113.2", 5004)  # B with a public address of its own (a filtering NAT's)
PUBLIC = (R1, R2, P1, P2, P3)


def node(name: str, settings: RelaySettings | None = None, me: Identity | None = None) -> Node:
    me = me or identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(len(name)),
                identity=me, clock_offset=WALL, traversal=True, relay_settings=settings)


def network(route: Route, a: Hashable = A, b: Hashable = B, relays: tuple = (R1, R2),
            settings: RelaySettings | None = None, join_for: float = 80.0,
            b_identity: Identity | None = None) -> MemoryNet:
    """Public nodes (those in `relays` serve), A and B at `a` / `b`; everyone joins through P1
    and keeps joined; the public ones are told so (`set_nat("none")`, as the daemon does)."""
    net = MemoryNet(route)
    for addr in PUBLIC:
        net.attach(addr, node(f"public {addr[0]}", settings))
    net.attach(a, node("alice", settings))
    net.attach(b, node("bob", settings, b_identity))
    for addr in PUBLIC:
        n = net.nodes[addr]
        if addr in relays:
            n.set_nat("none", addr)
        else:
            n.set_nat("none", None)  # public, but not relaying (as if its owner said never)
    for addr in PUBLIC:
        net.nodes[addr].keep_joined([P1] if addr != P1 else [], net.now)
        net.settle(net.now)
        net.run_until(net.now + 1.0)
    for addr in (a, b):
        net.nodes[addr].keep_joined([P1], net.now)
        net.settle(net.now)
        net.run_until(net.now + 1.0)
    net.run_until(max(join_for, net.now))  # keep-alives (NATs found symmetric), allocations
    return net


class Call:
    """A calls B (a lookup, the punch, the key exchange); B answers when it rings."""

    def __init__(self, net: MemoryNet, a: Hashable = A, b: Hashable = B):
        self.net, self.a, self.b = net, a, b
        self.start = len(net.events[a]), len(net.events[b])
        self.placed = net.now
        self.sid_a = net.nodes[a].call(net.nodes[b].node_id, net.now)
        self.sid_b: int | None = None
        self.talking_at: float | None = None
        net.service(a)

    def new(self, addr: Hashable) -> list:
        return self.net.events[addr][self.start[0] if addr == self.a else self.start[1]:]

    def step(self) -> bool:
        for e in self.new(self.b):
            if type(e) is IncomingCall and self.sid_b is None:
                self.sid_b = e.session_id
                self.net.nodes[self.b].answer(self.net.now, e.session_id)
                self.net.service(self.b)
        for e in self.new(self.a):
            if type(e) is CallProgress and e.state is CallState.TALKING:
                self.talking_at = self.talking_at or e.at
                return True
            if type(e) is CallEnded:
                return True
        return False

    def connect(self, limit: float = 30.0) -> str:
        self.net.run(until=self.step, limit=self.net.now + limit)
        ended = [e for e in self.new(self.a) if type(e) is CallEnded]
        return ended[0].reason.value if ended else ("talking" if self.talking_at else "waiting")

    def media(self, seconds: float, tag: bytes = b"") -> tuple[list[bytes], list[bytes]]:
        """Both sides send a frame every 20 ms for `seconds`; what each received."""
        net = self.net
        a, b = net.nodes[self.a], net.nodes[self.b]
        got_a, got_b = len(net.of(self.a, MediaReceived)), len(net.of(self.b, MediaReceived))
        now = net.now
        for i in range(round(seconds / 0.02)):
            a.send_media(self.sid_a, tag + b"a%d" % i, now)
            b.send_media(self.sid_b, tag + b"b%d" % i, now)
            net.service(self.a)
            net.service(self.b)
            now += 0.02
            net.run_until(now)
        return ([e.payload for e in net.of(self.b, MediaReceived)[got_b:]],
                [e.payload for e in net.of(self.a, MediaReceived)[got_a:]])

    def path(self, addr: Hashable) -> Any:
        node = self.net.nodes[addr]
        sid = self.sid_a if addr == self.a else self.sid_b
        session = node.session.sessions.get(sid)
        return None if session is None else session.addr
