"""NAT traversal messages (0x06), sans-I/O: observed addresses, rendezvous, punches, limits,
the PUNCH_FWD reflection attack (issue 17, attack 3), keep-alives on the layer's own timer."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined
from kadtalk.node.session import CallEnded, CallProgress, CallState, IncomingCall
from kadtalk.node.session.layer import SessionLayer
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    ADDR_REQ,
    ADDR_RES,
    COOKIE_SIZE,
    PUNCH,
    PUNCH_COOKIE,
    PUNCH_FWD,
    PUNCH_REQ,
    SIZES,
    TRAVERSAL,
    AddressObserved,
    TraversalSettings,
    choose_rendezvous,
    nat_kind,
)
from kadtalk.transport.memory import FilteringNat, MemoryNet

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
    # one event: the second peer confirms what the first said (events tell changes only)
    seen = [e for e in events(a) if type(e) is AddressObserved]
    assert [(e.observer, e.observed) for e in seen] == [(R, ("192.0.2.9", 5004))]
    assert seen[-1].public == ("192.0.2.9", 5004) and not seen[-1].symmetric
    assert a.traversal.public == ("192.0.2.9", 5004)
    assert a.traversal.observed == {R: ("192.0.2.9", 5004), B: ("192.0.2.9", 5004)}


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
    b.add_contact(r.node_id, R, 0.0)  # b's keep-alives go to r: r is b's contact
    a.traversal.punch(b.node_id, [R], 0.0)
    sent = deliver(a, A, nodes, 0.0)
    assert [len(d) for d, _ in sent] == [SIZES[PUNCH_REQ]]
    # r has never heard from A: it sends A a cookie (smaller than the request), forwards nothing
    cookie = deliver(r, R, nodes, 0.0)
    assert [(d[1], len(d), to) for d, to in cookie] == [(PUNCH_COOKIE, 18, A)]
    assert b.datagrams_to_send(0.0) == []
    # a repeats its request with the cookie: A has proven it receives what r sends there
    again = deliver(a, A, nodes, 0.0)
    assert [(d[1], len(d)) for d, _ in again] == [(PUNCH_REQ, SIZES[PUNCH_REQ] + COOKIE_SIZE)]
    fwd = deliver(r, R, nodes, 0.0)
    assert [(d[1], len(d), to) for d, to in fwd] == [(PUNCH_FWD, 28, B)]  # smaller than asked
    punches = b.datagrams_to_send(0.0)
    assert punches and all(d[1] == PUNCH and to == A for d, to in punches)
    for data, _ in punches:
        a.receive_datagram(data, B, 0.0)
    assert a.traversal.stats["punch_received"] == len(punches)
    # the next punch through r carries the remembered cookie: forwarded at once
    a.traversal.punch(b.node_id, [R], 1.0)
    deliver(a, A, nodes, 1.0)
    assert [d[1] for d, _ in deliver(r, R, nodes, 1.0)] == [PUNCH_FWD]
    # a target the rendezvous does not know: nothing is sent anywhere
    a.traversal.punch(12345, [R], 2.0)
    deliver(a, A, nodes, 2.0)
    assert r.datagrams_to_send(2.0) == [] and r.traversal.stats["punch_unknown_target"] == 1


def test_a_requester_in_the_rendezvous_table_needs_no_cookie():
    a, b, r = node(), node(), node()
    nodes = {A: a, B: b, R: r}
    r.add_contact(b.node_id, B, 0.0)
    r.add_contact(a.node_id, A, 0.0)
    b.add_contact(r.node_id, R, 0.0)
    a.traversal.punch(b.node_id, [R], 0.0)
    deliver(a, A, nodes, 0.0)
    assert [(d[1], to) for d, to in deliver(r, R, nodes, 0.0)] == [(PUNCH_FWD, B)]
    assert [to for _, to in b.datagrams_to_send(0.0)] == [A, A]


VICTIM = ("192.0.2.1", 5004)


def punch_fwd_naming(victim: tuple) -> bytes:
    return (bytes((TRAVERSAL, PUNCH_FWD)) + bytes(20) + bytes(map(int, victim[0].split(".")))
            + victim[1].to_bytes(2, "big"))


def test_reflection_attack_a_direct_punch_fwd_from_a_stranger_sends_nothing():
    """Issue 17, attack 3: 28 bytes sent straight to a node made it send 44 bytes of PUNCH to
    any third address named inside. Only a contact of the routing table may ask for a PUNCH."""
    target = node()
    target.add_contact(12345, R, 0.0)  # its rendezvous: a contact
    stranger = ("198.51.100.66", 4000)
    for i in range(200):
        target.receive_datagram(punch_fwd_naming(VICTIM), stranger, i * 0.01)
    sent = target.datagrams_to_send(2.0)
    assert [to for _, to in sent if to == VICTIM] == []
    drops = target.drop_counts()  # metered before the contact check, which scans the table
    assert drops["punch_fwd_stranger"] + sum(
        n for reason, n in drops.items() if reason.startswith("rate_limited")) == 200
    target.receive_datagram(punch_fwd_naming(VICTIM), R, 2.0)  # the same from the contact works
    assert [(d[1], to) for d, to in target.datagrams_to_send(2.0)] == [(PUNCH, VICTIM)] * 2


def test_what_remains_a_punch_fwd_forged_from_a_contacts_address_is_bounded():
    """Known limit (docs/protocol.md §20): the contact check reads the source address, so a
    forger who knows a contact's address still draws PUNCHes toward an address of its choice,
    but never more than `punch_rate` a second (plus the burst), at 44 bytes for 28 sent."""
    target = node()
    target.add_contact(12345, R, 0.0)
    rate, burst = target.traversal.settings.punch_rate, target.traversal.settings.punch_burst
    sent_bytes = 0
    for i in range(1000):  # 100 forged datagrams a second for 10 s
        target.receive_datagram(punch_fwd_naming(VICTIM), R, i * 0.01)
        sent_bytes += sum(len(d) for d, to in target.datagrams_to_send(i * 0.01) if to == VICTIM)
    drops = target.drop_counts()
    refused = drops.get("punch_refused", 0) + sum(
        n for reason, n in drops.items() if reason.startswith("rate_limited"))
    assert 0 < sent_bytes <= 44 * (rate * 10 + burst)
    assert refused >= 1000 - sent_bytes // 44  # every forged datagram not obeyed was metered


def test_an_address_outside_the_wire_ranges_is_a_counted_drop():
    """A driver may hand in any address: one that cannot be encoded is dropped, not raised."""
    target = node()
    target.add_contact(12345, R, 0.0)
    for bad in [("10.0.0.9", 70000), ("10.0.0.9", -1), ("not an address", 1)]:
        for data in (bytes((TRAVERSAL, ADDR_REQ)) + bytes(14),
                     bytes((TRAVERSAL, PUNCH_REQ)) + bytes(40)):
            target.receive_datagram(data, bad, 0.0)
    assert target.drop_counts()["unusable_source"] == 6


def test_reflection_through_a_rendezvous_a_spoofed_punch_req_reaches_nobody():
    """The same attack one hop further: a PUNCH_REQ whose source is forged to be the victim
    makes the rendezvous answer the victim with one small cookie, never a PUNCH_FWD."""
    b, r = node(), node()
    r.add_contact(b.node_id, B, 0.0)
    req = bytes((TRAVERSAL, PUNCH_REQ)) + bytes(20) + b.node_id.to_bytes(20, "big")
    for i in range(50):
        r.receive_datagram(req, VICTIM, i * 0.1)
        r.receive_datagram(req + bytes(COOKIE_SIZE), VICTIM, i * 0.1)  # a guessed cookie
    sent = r.datagrams_to_send(5.0)
    assert sent and all(d[1] == PUNCH_COOKIE and to == VICTIM for d, to in sent)
    assert sum(len(d) for d, _ in sent) < 0.25 * 50 * (2 * len(req) + COOKIE_SIZE)
    assert r.traversal.stats["punch_forwarded"] == 0 and r.traversal.stats["bad_cookie"] > 0


def test_a_cookie_from_someone_not_asked_is_ignored():
    a = node()
    a.receive_datagram(bytes((TRAVERSAL, PUNCH_COOKIE)) + bytes(16), R, 0.0)
    assert a.datagrams_to_send(0.0) == [] and a.drop_counts()["unsolicited"] == 1


def test_an_expired_cookie_draws_a_fresh_one():
    a, b, r = node(), node(), node()
    nodes = {A: a, B: b, R: r}
    r.add_contact(b.node_id, B, 0.0)
    a.traversal.punch(b.node_id, [R], 0.0)
    for _ in range(3):  # request, cookie, request with the cookie
        deliver(a, A, nodes, 0.0)
        deliver(r, R, nodes, 0.0)
    assert r.traversal.stats["punch_forwarded"] == 1
    later = 3 * r.traversal.settings.cookie_lifetime  # both secrets have rotated away
    a.traversal.punch(b.node_id, [R], later)
    for _ in range(3):
        deliver(a, A, nodes, later)
        deliver(r, R, nodes, later)
    stats = r.traversal.stats
    assert stats["bad_cookie"] == 1 and stats["punch_cookie_sent"] == 2
    assert stats["punch_forwarded"] == 2


def test_malformed_and_flooding_input_is_counted_and_bounded():
    n = node()
    n.add_contact(777, R, 0.0)
    for bad in (bytes((TRAVERSAL,)), bytes((TRAVERSAL, 9)) + bytes(20),
                bytes((TRAVERSAL, ADDR_REQ)) + bytes(3), bytes((TRAVERSAL, PUNCH_REQ)) + bytes(50)):
        n.receive_datagram(bad, A, 0.0)
    assert n.drop_counts()["malformed"] == 4 and n.datagrams_to_send(0.0) == []
    req = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    for _ in range(1000):
        n.receive_datagram(req, A, 0.0)
    assert len(n.datagrams_to_send(0.0)) <= 10  # one source's burst
    for i in range(1000):
        n.receive_datagram(punch_fwd_naming(VICTIM), R, 1.0 + i / 1e6)
    assert n.traversal.stats["punch_sent"] <= 20  # all punches together, whoever asks


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=70), st.booleans()), max_size=20))
def test_the_parser_never_raises_and_never_answers_more_than_it_was_sent(datagrams):
    n = node()
    n.add_contact(777, R, 0.0)
    n.probe_address([R], 0.0)
    n.datagrams_to_send(0.0)
    for i, (body, from_contact) in enumerate(datagrams):
        data = bytes((TRAVERSAL,)) + body
        src = R if from_contact else A
        n.receive_datagram(data, src, 0.1 * i)
        back = sum(len(d) for d, to in n.datagrams_to_send(0.1 * i) if to == src)
        assert back <= len(data)
    assert sum(n.drop_counts().values()) <= len(datagrams)


def test_settings_are_checked_and_used():
    with pytest.raises(ValueError):
        TraversalSettings(keepalive_interval=0)
    with pytest.raises(ValueError, match="punch_again"):
        TraversalSettings(punch_again=-1)
    ident = Identity.generate()
    n = Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
             identity=ident, traversal=True, traversal_settings=TraversalSettings(punch_copies=5))
    n.add_contact(777, R, 0.0)
    n.receive_datagram(punch_fwd_naming(VICTIM), R, 0.0)
    assert len(n.datagrams_to_send(0.0)) == 5


def test_keepalives_run_on_the_layers_own_timer_once_joined():
    """The daemon's keep-alives, now the layer's: with the upkeep on, address probes to the
    contacts nearest our ID at once after a successful join and every keepalive_interval
    (explicit now, no sleeping)."""
    n, r = node(), node()
    interval = n.traversal.settings.keepalive_interval
    n.keep_joined([R], 0.0)  # the daemon's way: upkeep on
    req = n.datagrams_to_send(0.0)
    assert n.traversal.get_timer() is None  # no contacts yet: nobody to keep
    r.receive_datagram(req[0][0], A, 0.0)
    for data, _ in r.datagrams_to_send(0.0):
        n.receive_datagram(data, R, 0.05)  # the join's answer: r enters n's table
    while n.get_timer() is not None and n.get_timer() <= 0.05 and n.traversal.get_timer() is None:
        n.handle_timer(n.get_timer())
    joined = events(n)
    assert any(type(e) is Joined and e.success for e in joined)
    assert n.traversal.get_timer() == 0.05
    probes = []
    now = 0.05
    while now < 0.05 + 3 * interval:
        now = n.get_timer()
        n.handle_timer(now)
        for d, to in n.datagrams_to_send(now):
            if d[:2] == bytes((6, ADDR_REQ)):
                probes.append((now, to))
            elif d[0] == 0:  # r answers the join's refresh lookups, or n would drop it as dead
                r.receive_datagram(d, A, now)  # (how often depends on the random IDs: 3 % failed)
                for answer, _ in r.datagrams_to_send(now):
                    if answer[0] == 1:
                        n.receive_datagram(answer, R, now)
    times = [t for t, _ in probes]
    assert times == pytest.approx([0.05, 0.05 + interval, 0.05 + 2 * interval, 0.05 + 3 * interval])
    assert {to for _, to in probes} == {R}
    # without the upkeep (a join by hand, as the fuzz target's node), no keep-alives
    m = node()
    m.join([R], 0.0)
    r.receive_datagram(m.datagrams_to_send(0.0)[0][0], B, 0.0)
    for data, _ in r.datagrams_to_send(0.0):
        m.receive_datagram(data, R, 0.05)
    assert len(m.routing.table) == 1 and m.traversal.get_timer() is None


def test_keepalives_start_when_a_node_without_bootstrap_gets_contacts():
    """The first node of a network has nobody to join: its keep-alives start once others have
    joined through it (its table is no longer empty), and stop while the table is empty."""
    n = node()
    n.keep_joined([], 0.0)
    assert n.get_timer() is None or n.get_timer() > 1000  # nothing to do: no join, no probes
    n.add_contact(777, R, 5.0)
    assert n.traversal.get_timer() == 5.0
    n.handle_timer(5.0)
    sent = n.datagrams_to_send(5.0)
    assert [to for d, to in sent if d[:2] == bytes((TRAVERSAL, ADDR_REQ))] == [R]
    n.routing.table.remove(n.routing.table.find(777))
    n.handle_timer(25.0)
    assert n.datagrams_to_send(25.0) == [] and n.traversal.get_timer() is None


def test_nat_kind_from_an_observation_and_the_local_address():
    seen = AddressObserved(R, ("203.0.113.9", 5004), ("203.0.113.9", 5004), False, 0.0)
    assert nat_kind(seen, ("203.0.113.9", 5004)) == "none"
    assert nat_kind(seen, ("10.0.0.2", 5004)) == "cone"
    assert nat_kind(seen, None) == "unknown"
    assert nat_kind(AddressObserved(R, seen.observed, seen.public, True, 0.0), None) == "symmetric"


def test_routing_only_nodes_and_nodes_without_traversal_ignore_0x06():
    msg = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    for n in (node(traversal=False), node(identity=False, traversal=True)):
        n.receive_datagram(msg, A, 0.0)
        assert n.traversal is None
        assert n.datagrams_to_send(0.0) == []
        assert n.drop_counts()["unknown_type"] == 1


A_NAT, B_NAT, R_PUBLIC = ("203.0.113.1", 5004), ("203.0.113.2", 5004), ("198.51.100.1", 5004)


def filtering_nats(a: Node, b: Node, r: Node) -> MemoryNet:
    """A tiny world: a and b behind address-and-port-filtering NATs (endpoint-independent
    mapping: a host keeps its port), r public; instant delivery, explicit time. b has joined
    through r, so its NAT admits r (the daemon's keep-alives keep it so); a knows r, r knows b."""
    nat = FilteringNat()
    nat.add(A_NAT)
    nat.add(B_NAT)
    world = MemoryNet(nat)
    for addr, n in ((A_NAT, a), (B_NAT, b), (R_PUBLIC, r)):
        world.attach(addr, n)
    b.join([R_PUBLIC], 0.0)
    world.settle(0.0)
    a.add_contact(r.node_id, R_PUBLIC, 0.0)
    r.add_contact(b.node_id, B_NAT, 0.0)
    return world


def place_call(world: MemoryNet, limit: float = 60.0) -> list:
    """a calls b and b answers when it rings: a's outcome ("talking" or how the call ended)."""
    a, b = world.nodes[A_NAT], world.nodes[B_NAT]
    outcome: list = []
    seen = {A_NAT: 0, B_NAT: 0}

    def done() -> bool:
        for addr in (A_NAT, B_NAT):
            events = world.events[addr]
            new, seen[addr] = events[seen[addr]:], len(events)
            for e in new:
                if type(e) is IncomingCall:
                    world.nodes[addr].answer(world.now, e.session_id)
                    world.service(addr)
                elif type(e) is CallProgress and e.state is CallState.TALKING and addr == A_NAT:
                    outcome.append("talking")
                elif type(e) is CallEnded and addr == A_NAT:
                    outcome.append(e.reason.value)
        return bool(outcome)

    a.call(b.node_id, world.now)
    world.service(A_NAT)
    world.run(until=done, limit=limit)
    return outcome


def call_between_filtering_nats(traversal: bool) -> list:
    return place_call(filtering_nats(*(node(traversal=traversal) for _ in range(3))))


def test_hole_punching_connects_two_filtering_nats_that_cannot_connect_without_it():
    assert call_between_filtering_nats(traversal=False) == ["unreachable"]
    assert call_between_filtering_nats(traversal=True) == ["talking"]


X_PUBLIC = ("198.51.100.2", 5004)


def test_a_call_punches_through_the_callees_neighbour_its_lookup_found_not_its_own_contact():
    """The caller a knows only x, a public peer that holds the callee b in its table but that b
    never sent to (b's filtering NAT drops x). b's keep-alive peer is r, its neighbour, which a
    does not know. a's lookup asks x, whose answer names b and r: the punch must go through r
    (the rendezvous are the lookup's nearest contacts, not a's table's; docs/protocol.md §20)."""
    a, b, r, x = (node() for _ in range(4))
    nat = FilteringNat()
    nat.add(A_NAT)
    nat.add(B_NAT)
    world = MemoryNet(nat)
    for addr, n in ((A_NAT, a), (B_NAT, b), (R_PUBLIC, r), (X_PUBLIC, x)):
        world.attach(addr, n)
    b.join([R_PUBLIC], 0.0)  # b's NAT now admits r (the daemon's keep-alives keep it so)
    world.settle(0.0)
    assert r.add_contact(b.node_id, B_NAT, 0.0)
    assert a.add_contact(x.node_id, X_PUBLIC, 0.0)  # a knows only x ...
    assert x.add_contact(b.node_id, B_NAT, 0.0) and x.add_contact(r.node_id, R_PUBLIC, 0.0)
    # ... so a's own choice of rendezvous (x) shares nobody with the peers b keeps its NAT open to
    assert a.rendezvous(b.node_id) == [X_PUBLIC]
    assert b.traversal.keepalive_peers() == [R_PUBLIC]
    assert place_call(world) == ["talking"]
    assert R_PUBLIC in a.traversal.last_rendezvous
    assert r.traversal.stats["punch_forwarded"] >= 1 and b.traversal.stats["punch_sent"] >= 1
    assert nat.filtered >= 1  # x's relay, at least, hit b's NAT: only r's got through


def test_rendezvous_are_the_candidates_nearest_the_target_each_address_once():
    target = 0b1000
    lookup = [(target, "callee"), (0b1001, "n1"), (0b1100, "far"), (0b1011, "n3")]
    table = [(0b1010, "n2"), (0b1001, "n1")]
    assert choose_rendezvous(target, lookup, table, count=3) == ["n1", "n2", "n3"]
    assert choose_rendezvous(target, lookup, count=8) == ["n1", "n3", "far"]
    assert choose_rendezvous(target, [(target, "callee")], count=3) == []


# -- the path a punch opens is used at once (issue 12: set-up time under churn) -------------------


def test_address_probe_answers_feed_the_round_trip_the_lookups_use():
    a, r = node(), node()
    assert a.routing.smoothed_rtt is None
    a.probe_address([R], 0.0)
    [(data, _)] = a.datagrams_to_send(0.0)
    r.receive_datagram(data, ("192.0.2.9", 5004), 0.1)
    [(answer, _)] = r.datagrams_to_send(0.1)
    a.receive_datagram(answer, R, 0.25)
    assert a.routing.smoothed_rtt == pytest.approx(0.25)
    a.receive_datagram(answer, R, 0.5)  # a copy: its nonce was used, nothing measured
    assert a.routing.smoothed_rtt == pytest.approx(0.25)


def test_a_punch_arriving_sends_the_key_req_again_at_once(monkeypatch):
    """Without the trigger the caller's second KEY_REQ waits for the 0.5 s retransmission."""
    world = filtering_nats(*(node() for _ in range(3)))
    assert place_call(world) == ["talking"]
    assert world.now < 0.5
    monkeypatch.setattr(SessionLayer, "path_opened", lambda self, addr, now: None)
    world = filtering_nats(*(node() for _ in range(3)))
    assert place_call(world) == ["talking"]
    assert world.now >= 0.5


def test_forged_punches_buy_one_key_req_per_call_at_most():
    a, b = node(), node()
    a.call(b.node_id, 0.0, addr=B_NAT)
    [(key_req, dst)] = a.datagrams_to_send(0.0)
    assert dst == B_NAT
    punch = bytes((TRAVERSAL, PUNCH)) + b.node_id.to_bytes(20, "big")
    for i in range(10):
        a.receive_datagram(punch, B_NAT, 0.01 * (i + 1))
    assert a.datagrams_to_send(0.1) == [(key_req, B_NAT)]  # one, the same bytes
    a.receive_datagram(punch, ("203.0.113.66", 5004), 0.2)  # from elsewhere: nothing
    assert a.datagrams_to_send(0.2) == []
    a.handle_timer(0.3)
    assert a.datagrams_to_send(0.3) == []  # and the schedule was not shortened
