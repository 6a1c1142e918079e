"""How a NATed node comes to hold its relays (issue 13, session 7), whole nodes, explicit time:
asked as soon as its NAT is known, several contacts at once in random order (HELLO is stateless
at a relay), the first to answer allocated at, a silent one given up after two HELLOs, and the
nearest offered to callers."""

from __future__ import annotations

from kadtalk.node.relay import wire
from kadtalk.node.relay.client import HELLO_TRIES
from kadtalk.node.relay.paths import ASK_SPARE
from kadtalk.node.traversal import PUNCH_REQ_RELAY, TRAVERSAL
from kadtalk.transport.memory import Packet

from kadtalk.node.routing.contacts import ipv4_to_wire

from .dht import B_OPEN, PUBLIC, R1, R2, Call, network

A_OPEN = ("203.0.113.1", 5004)


class Hops:
    """Route hook: 10 ms a hop, 40 ms for a hop to or from R1 (the far relay); logs packets."""

    def __init__(self) -> None:
        self.log: list[tuple[float, Packet]] = []

    def __call__(self, packet: Packet, now: float):
        self.log.append((now, packet))
        return [(0.040 if R1 in (packet.src, packet.dst) else 0.010, packet)]


def told_natted(join_for: float = 10.0) -> tuple:
    hops = Hops()
    net = network(hops, a=A_OPEN, b=B_OPEN, join_for=join_for)
    a = net.nodes[A_OPEN]
    assert a.relays_held() == []  # public until told otherwise: it holds none
    told = net.now
    a.set_nat("cone")  # the daemon's NAT check: behind a NAT
    net.service(A_OPEN)
    return net, hops, told


def hellos(hops: Hops, since: float) -> list[tuple[float, object]]:
    return [(t, p.dst) for t, p in hops.log if t >= since and p.src == A_OPEN
            and p.payload[:2] == bytes((wire.RELAY, wire.HELLO))]


def test_the_first_relays_are_asked_at_once_several_at_a_time_and_held_within_a_second():
    net, hops, told = told_natted()
    a = net.nodes[A_OPEN]
    net.run_until(told + 1.0)
    first: dict = {}
    for t, dst in hellos(hops, told):
        first.setdefault(dst, t)
    # all at the moment the NAT was known (not at the next keep-alive), up to 2 + ASK_SPARE
    assert first and set(first.values()) == {told}
    asked = set(first)
    assert len(asked) == 2 + ASK_SPARE and asked == set(PUBLIC) | {B_OPEN}  # the whole table
    held = a.relays_held()
    assert {p.relay for p in held} == {R1, R2}  # the two that serve, whichever answered first
    # the nearest first: R2 answers in 20 ms, R1 in 80: R2's allocation is the one offered
    assert held[0].relay == R2 and a.relay.client.held[R2].rtt < a.relay.client.held[R1].rtt


def test_a_silent_contact_is_given_up_after_two_hellos_and_not_asked_again_soon():
    net, hops, told = told_natted()
    net.run_until(told + 30.0)
    sent = hellos(hops, told)
    silent = [dst for _, dst in sent if dst not in (R1, R2)]
    assert silent
    for addr in set(silent):  # a contact that does not relay: two HELLOs, 0.5 s apart
        times = [t for t, dst in sent if dst == addr]
        assert len(times) == HELLO_TRIES and times[1] - times[0] == 0.5


def test_a_call_offers_the_nearest_relay_held():
    net, hops, told = told_natted()
    net.run_until(told + 2.0)
    since = net.now
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    offers = [p for t, p in hops.log if t >= since and p.src == A_OPEN
              and p.payload[:2] == bytes((TRAVERSAL, PUNCH_REQ_RELAY))]
    assert offers
    named = {p.payload[42:48] for p in offers}
    assert named == {ipv4_to_wire(R2)}


def test_candidates_are_the_table_in_random_order_not_the_longest_lived_first():
    net, hops, told = told_natted()
    a = net.nodes[A_OPEN]
    orders = {tuple(a._relay_candidates()) for _ in range(20)}
    assert len(orders) > 1  # shuffled each time
    table = {addr for _, addr in a.best_peers()}
    assert all(set(order) == table for order in orders)



def test_a_relay_that_served_us_and_went_away_is_asked_once_then_waits():
    """A relay that served us is asked again at once when we are short, but once: when it
    has gone (its two HELLOs unanswered) it waits RETRY_RELAY like any contact (before, it
    stayed in `served` and drew two HELLOs at every 2 s look: 568 in 600 s)."""
    from kadtalk.node.relay.paths import RETRY_RELAY

    net, hops, told = told_natted()
    a = net.nodes[A_OPEN]
    net.run_until(told + 5.0)
    assert {p.relay for p in a.relays_held()} == {R1, R2}
    gone = net.now
    for relay in (R1, R2):
        net.detach(relay)
    net.run_until(gone + RETRY_RELAY - 1)
    sent = [dst for _, dst in hellos(hops, gone)]
    for relay in (R1, R2):
        assert sent.count(relay) == HELLO_TRIES  # the one ask after it left
    assert not a._upper.paths.served
