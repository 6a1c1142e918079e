"""NAT traversal messages (0x06), sans-I/O: observed addresses, rendezvous, punches, limits."""

from __future__ import annotations

import random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    ADDR_REQ,
    ADDR_RES,
    PUNCH,
    PUNCH_FWD,
    PUNCH_REQ,
    SIZES,
    TRAVERSAL,
    AddressObserved,
    Traversal,
)

A, B, R = ("10.0.0.1", 4001), ("10.0.0.2", 4002), ("10.0.0.3", 4003)


def node(traversal: bool = True, identity: bool = True) -> Node:
    ident = Identity.generate()
    node_id = int.from_bytes(ident.node_id, "big")
    return Node(node_id, ContactRegistry(), random.Random(1),
                identity=ident if identity else None, traversal=traversal)


def deliver(src: Node, src_addr, nodes: dict, now: float) -> list[tuple[bytes, tuple]]:
    """Hand everything `src` sends to the node at its destination; return what was sent."""
    sent = src.datagrams_to_send(now)
    for data, dst in sent:
        if dst in nodes:
            nodes[dst].receive_datagram(data, src_addr, now)
    return sent


def events(n: Node) -> list:
    out = []
    while (e := n.next_event()) is not None:
        out.append(e)
    return out


def test_a_node_learns_its_address_from_the_peers_it_asks():
    a, r1, r2 = node(), node(), node()
    a.probe_address([R, B], 0.0)
    sent = a.datagrams_to_send(0.0)
    assert [(d[:2], len(d), to) for d, to in sent] == [(bytes((TRAVERSAL, ADDR_REQ)), 16, R),
                                                      (bytes((TRAVERSAL, ADDR_REQ)), 16, B)]
    # the peers see a at its NAT's outside address 192.0.2.9:5004
    r1.receive_datagram(sent[0][0], ("192.0.2.9", 5004), 0.1)
    r2.receive_datagram(sent[1][0], ("192.0.2.9", 5004), 0.1)
    answers = r1.datagrams_to_send(0.1) + r2.datagrams_to_send(0.1)
    assert all(len(d) == 16 and d[1] == ADDR_RES for d, _ in answers)  # no bigger than asked
    a.receive_datagram(answers[0][0], R, 0.2)
    a.receive_datagram(answers[1][0], B, 0.2)
    seen = [e for e in events(a) if type(e) is AddressObserved]
    assert [e.observed for e in seen] == [("192.0.2.9", 5004)] * 2
    assert seen[-1].public == ("192.0.2.9", 5004) and not seen[-1].symmetric
    assert a.traversal.public == ("192.0.2.9", 5004)


def test_only_the_peer_asked_can_tell_a_node_its_address_and_symmetric_nats_show():
    a, r = node(), node()
    a.probe_address([R], 0.0)
    req = a.datagrams_to_send(0.0)[0][0]
    r.receive_datagram(req, ("192.0.2.9", 5004), 0.0)
    answer = r.datagrams_to_send(0.0)[0][0]
    a.receive_datagram(answer, B, 0.1)  # from someone else
    a.receive_datagram(bytes((TRAVERSAL, ADDR_RES)) + bytes(8) + bytes(6), R, 0.1)  # bad nonce
    assert a.traversal.public is None and a.traversal.stats["unsolicited"] == 2
    a.receive_datagram(answer, R, 0.1)
    a.receive_datagram(answer, R, 0.1)  # a replay: the nonce is used up
    assert a.traversal.stats["unsolicited"] == 3
    # a second peer sees another port: endpoint-dependent mapping (symmetric NAT)
    a.probe_address([B], 0.2)
    req = a.datagrams_to_send(0.2)[0][0]
    r.receive_datagram(req, ("192.0.2.9", 6000), 0.2)
    a.receive_datagram(r.datagrams_to_send(0.2)[0][0], B, 0.3)
    assert a.traversal.symmetric


def test_a_rendezvous_relays_a_punch_request_only_to_a_node_in_its_table():
    a, b, r = node(), node(), node()
    nodes = {A: a, B: b, R: r}
    r.add_contact(b.node_id, B, 0.0)
    a.traversal.punch(b.node_id, [R], 0.0)
    sent = deliver(a, A, nodes, 0.0)
    assert [len(d) for d, _ in sent] == [SIZES[PUNCH_REQ]]
    fwd = deliver(r, R, nodes, 0.0)
    assert [(d[1], len(d), to) for d, to in fwd] == [(PUNCH_FWD, 28, B)]  # smaller than asked
    punches = b.datagrams_to_send(0.0)
    assert punches and all(d[1] == PUNCH and to == A for d, to in punches)
    for data, _ in punches:
        a.receive_datagram(data, B, 0.0)
    assert a.traversal.stats["punch_received"] == len(punches)
    # a target the rendezvous does not know: nothing is sent anywhere
    a.traversal.punch(12345, [R], 1.0)
    deliver(a, A, nodes, 1.0)
    assert r.datagrams_to_send(1.0) == [] and r.traversal.stats["punch_unknown_target"] == 1


def test_malformed_and_flooding_input_is_counted_and_bounded():
    t = Traversal(1, random.Random(1))
    for bad in (bytes((TRAVERSAL,)), bytes((TRAVERSAL, 9)) + bytes(20),
                bytes((TRAVERSAL, ADDR_REQ)) + bytes(3)):
        t.receive_datagram(bad, A, 0.0, lambda _: None)
    assert t.stats["malformed"] == 3 and not t.outbox
    req = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    for _ in range(1000):
        t.receive_datagram(req, A, 0.0, lambda _: None)
    assert len(t.outbox) <= 10  # one source's burst
    fwd = bytes((TRAVERSAL, PUNCH_FWD)) + bytes(20) + bytes((192, 0, 2, 1, 0x13, 0x8C))
    for i in range(1000):
        t.receive_datagram(fwd, ("10.1.%d.%d" % (i // 250, i % 250 + 1), 1), 1.0, lambda _: None)
    assert t.stats["punch_sent"] <= 20  # all punches together, whoever asks


def test_routing_only_nodes_and_nodes_without_traversal_ignore_0x06():
    msg = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    for n in (node(traversal=False), node(identity=False, traversal=True)):
        n.receive_datagram(msg, A, 0.0)
        assert n.traversal is None
        assert n.datagrams_to_send(0.0) == []
        assert n.drop_counts()["unknown_type"] == 1


class FilteringNats:
    """A tiny world: hosts behind address-and-port-filtering NATs (endpoint-independent mapping:
    the host's port is kept) and public hosts; instant delivery, explicit time."""

    def __init__(self):
        self.nodes: dict[tuple, Node] = {}  # public address -> node
        self.natted: set[tuple] = set()
        self.opened: dict[tuple, set] = {}  # NAT'd public address -> remote endpoints it sent to
        self.now = 0.0

    def add(self, addr: tuple, behind_nat: bool, traversal: bool) -> Node:
        n = node(traversal=traversal)
        self.nodes[addr] = n
        if behind_nat:
            self.natted.add(addr)
            self.opened[addr] = set()
        return n

    def flush(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, n in list(self.nodes.items()):
                for data, dst in n.datagrams_to_send(self.now):
                    moved = True
                    if src in self.natted:
                        self.opened[src].add(dst)
                    if dst in self.natted and src not in self.opened[dst]:
                        continue  # filtered: the host never sent to this sender
                    if dst in self.nodes:
                        self.nodes[dst].receive_datagram(data, src, self.now)

    def run_until(self, done, limit: float = 60.0) -> None:
        self.flush()
        while not done() and self.now < limit:
            timers = [t for t in (n.get_timer() for n in self.nodes.values()) if t is not None]
            self.now = max(self.now, min(timers)) if timers else limit
            for n in self.nodes.values():
                n.handle_timer(self.now)
            self.flush()


def call_between_filtering_nats(traversal: bool) -> list:
    from kadtalk.node.session import CallEnded, CallProgress, CallState, IncomingCall

    world = FilteringNats()
    a_addr, b_addr, r_addr = ("203.0.113.1", 5004), ("203.0.113.2", 5004), ("198.51.100.1", 5004)
    a = world.add(a_addr, True, traversal)
    b = world.add(b_addr, True, traversal)
    r = world.add(r_addr, False, traversal)
    b.join([r_addr], 0.0)  # b has talked to r: its NAT admits r (the daemon's keep-alives)
    world.flush()
    a.add_contact(r.node_id, r_addr, 0.0)
    r.add_contact(b.node_id, b_addr, 0.0)
    outcome: list = []

    def done() -> bool:
        for n in (a, b):
            while (e := n.next_event()) is not None:
                if type(e) is IncomingCall:
                    n.answer(world.now, e.session_id)
                elif type(e) is CallProgress and e.state is CallState.TALKING and n is a:
                    outcome.append("talking")
                elif type(e) is CallEnded and n is a:
                    outcome.append(e.reason.value)
        return bool(outcome)

    a.call(b.node_id, world.now)
    world.run_until(done)
    return outcome


def test_hole_punching_connects_two_filtering_nats_that_cannot_connect_without_it():
    assert call_between_filtering_nats(traversal=False) == ["unreachable"]
    assert call_between_filtering_nats(traversal=True) == ["talking"]
