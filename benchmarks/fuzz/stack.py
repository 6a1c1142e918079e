"""The whole node (node/stack.py): any first byte through `LAYER_OF` into routing, session or
traversal, on a Node with an identity, traversal and its upkeep on (rejoin, keep-alives), calls
placed through lookups (so a found callee draws PUNCH_REQs and KEY_REQs), timers fired when due.

Seeds come from a real call: a peer B calls the node A on kadtalk.transport.memory and sends it
media, and A joins through its contacts; every datagram sent then is a seed, and B's stream
packets stay valid for A's call with it.
"""

from __future__ import annotations

from random import Random
from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import WALL, Target, Violation, datagrams
from benchmarks.fuzz.routing import amplification, answer_pending, routing_seeds
from benchmarks.fuzz.session import OPEN
from benchmarks.fuzz.traversal import FAST
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry, ipv4_to_wire
from kadtalk.node.session.events import IncomingCall
from kadtalk.node.stack import LAYER_OF, NONE, TRAVERSAL_LAYER, Node
from kadtalk.node.traversal import AddressObserved
from kadtalk.transport.memory import MemoryNet, Packet

def make_node(identity: Identity, seed: int) -> Node:
    return Node(
        int.from_bytes(identity.node_id, "big"), ContactRegistry(), Random(seed), None, 0.0,
        identity=identity, session_settings=OPEN, clock_offset=WALL, traversal=True,
        traversal_settings=FAST,
    )


class StackState:
    A, B = ("10.4.0.1", 5004), ("10.4.0.2", 5004)  # the node under test, and its caller
    STRANGER = ("198.51.100.8", 9998)  # never asked anything: the amplification check

    def __init__(self) -> None:
        self.rng = Random(13)
        self.now = 1.0
        self.arm()

    def arm(self) -> None:
        """A fresh node A in a call with B, its upkeep on; the seeds are what was sent."""
        sent: list[Packet] = []

        def route(packet: Packet, now: float) -> tuple:
            sent.append(packet)
            return ((0.0, packet),)

        self.a, b = make_node(Identity.generate(), 1), make_node(Identity.generate(), 2)
        self.b_id = b.node_id
        net = MemoryNet(route, now=self.now)
        net.attach(self.A, self.a)
        net.attach(self.B, b)
        self.contacts = [("10.3.0.%d" % (i + 1), 5004) for i in range(40)]
        for addr in self.contacts:
            self.a.add_contact(self.rng.getrandbits(160), addr, self.now)
        self.a.keep_joined(self.contacts[:3], self.now)
        sid = b.call(self.a.node_id, self.now, addr=self.A)
        net.settle(self.now)
        self.a.answer(self.now, net.of(self.A, IncomingCall)[0].session_id)
        net.settle(self.now)
        b.send_media(sid, b"hello", self.now)
        net.settle(self.now)
        net.detach(self.A)  # from now on the fuzz alone talks to A
        self.seeds = [p.payload for p in sent] + routing_seeds()


def stack_strategy(state: StackState) -> st.SearchStrategy:
    any_type = st.builds(
        lambda t, body: bytes([t]) + body, st.integers(0, 255), st.binary(max_size=300)
    )
    return st.tuples(
        st.one_of(datagrams(state.seeds, list(range(8)), 600), any_type),
        st.integers(0, 3),  # source: the caller B, a contact, a stranger, any address
        st.integers(0, 2),  # a routing response: as is, meeting a request, naming B as found
        st.integers(0, 3),  # what A does first: nothing, call someone, answer, hang up
    )


def run_stack(state: StackState, item: tuple) -> None:
    data, which, as_answer, action = item
    node = state.a
    state.now += 0.02
    now = state.now
    if action == 1 and node.routing.lookups_running < 3:
        node.call(state.rng.choice([state.b_id, state.rng.getrandbits(160)]), now)
    elif action > 1 and node.session is not None and node.session.sessions:
        session_id = state.rng.choice(list(node.session.sessions))  # one, of any role or state
        node.answer(now, session_id) if action == 2 else node.hang_up(now, session_id)
    addr: Any = state.B
    if which == 1:
        met = answer_pending(node, len(data), data, as_answer > 0)
        addr, data = met or (state.contacts[len(data) % 40], data)
        if as_answer == 2 and len(data) >= 41 and data[0] == 1:  # the callee found, at B
            data = data[:41] + state.b_id.to_bytes(20, "big") + ipv4_to_wire(state.B) + data[41:]
    elif which == 2:
        addr = state.STRANGER
    elif which == 3:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000)
    layer = LAYER_OF[data[0]] if data else NONE
    drops = node.drop_counts()
    traversal = sum(node.traversal.stats.values())
    node.receive_datagram(data, addr, now)
    if layer == NONE:
        grew = node.drop_counts() - drops
        if list(grew.items()) != [("unknown_type" if data else "empty", 1)]:
            raise Violation(f"a datagram of no layer is not one counted drop: {dict(grew)}")
    reached = sum(node.traversal.stats.values()) > traversal
    timer = node.get_timer()
    if timer is not None and timer <= now:
        node.handle_timer(now)
    sent = sum(len(out) for out, dst in node.datagrams_to_send(now) if dst == state.STRANGER)
    if addr == state.STRANGER:
        amplification(node, addr, len(data), sent)
    event = node.next_event()
    while event is not None:
        reached = reached or type(event) is AddressObserved
        event = node.next_event()
    if layer == TRAVERSAL_LAYER and not reached:
        raise Violation("a traversal datagram did not reach the traversal layer")
    if node.session is not None and len(node.session.sessions) > 200:
        state.arm()


TARGETS = [
    Target(
        "node-stack",
        "Node: LAYER_OF dispatch to routing, session, traversal; upkeep, calls, timers",
        StackState,
        stack_strategy,
        run_stack,
    ),
]
