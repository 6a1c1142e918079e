"""`Node.receive_datagram`'s short way for a ROUTE_REQ (straight to the routing layer, the pump
only when routing holds events) does what the general way (`_route`) does: same answers, probes,
drops, events; a stranger's request while traversal watches still counts as heard."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import REQUEST_SIZE, ROUTE_REQ
from kadtalk.node.routing.route6 import MARKER
from kadtalk.node.stack import Node

IDENT = Identity.generate()
OWN = int.from_bytes(IDENT.node_id, "big")


def make(upper: bool, limits: bool) -> Node:
    rng = Random(7)
    node = Node(OWN, ContactRegistry(), Random(1),
                RoutingSettings(refresh_on_join=False, limits=limits, ipv6=True), 0.0,
                identity=IDENT if upper else None)
    for i in range(60):
        node.add_contact(rng.getrandbits(160), (f"10.1.{i // 200}.{i % 200 + 1}", 5004), 0.0)
    if upper:
        node.find_peer(rng.getrandbits(160), 0.0)  # makes the upper stack; a lookup running
    return node


def outcome(node: Node, now: float) -> tuple:
    events = []
    while (event := node.next_event()) is not None:
        events.append(event)
    return (node.datagrams_to_send(now), node.drop_counts(), events,
            node.routing.probes_skipped, node.routing.limited_answers)


requests = st.builds(
    lambda origin, target, pad, v6, cut: (
        bytes((ROUTE_REQ,)) + origin.to_bytes(20, "big") + target.to_bytes(20, "big")
        + ((MARKER if v6 else b"") + bytes(pad)))[:cut],
    st.integers(0, 2**160 - 1), st.integers(0, 2**160 - 1), st.integers(0, 600), st.booleans(),
    st.integers(1, REQUEST_SIZE + 700))
sources = st.sampled_from([("10.2.0.1", 4000), ("10.2.0.2", 4000), ("198.51.100.7", 5004),
                           ("2001:db8::5", 5004)])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(requests, sources), min_size=1, max_size=12), st.booleans(),
       st.booleans())
def test_a_request_goes_the_short_way_with_the_general_way_s_outcome(batch, upper, limits):
    short, general = make(upper, limits), make(upper, limits)
    assert outcome(short, 0.0) == outcome(general, 0.0)
    for i, (data, source) in enumerate(batch):
        now = 1.0 + i * 0.3
        short.receive_datagram(data, source, now)
        general._route(data, source, now, general.routing.receive_datagram)  # the general way
        assert outcome(short, now) == outcome(general, now)


def test_events_routing_held_are_pumped_by_a_request():
    """An event routing queued outside the stack's commands (here a lookup started on the
    layer itself, with no contacts: over at once) is routed by the next request's pump, as
    `_route` did (a short way that skipped the pump would leave it in the routing layer)."""
    node = Node(OWN, ContactRegistry(), Random(1), RoutingSettings(refresh_on_join=False), 0.0,
                identity=IDENT)
    node.find_peer(5, 0.0)  # the upper stack
    while node.next_event() is not None:
        pass
    node.routing.find_peer(6, 0.0)
    assert node.routing._events and not node._upper.events
    node.receive_datagram(bytes((ROUTE_REQ,)) + (9).to_bytes(20, "big") + bytes(20),
                          ("10.2.0.1", 4000), 1.0)
    assert not node.routing._events and len(node._upper.events) == 1


def test_requests_from_two_public_strangers_still_show_endpoint_independent_filtering():
    """While traversal watches, a request goes the general way: well-formed ones from two
    public hosts never sent to are the evidence (`Traversal.heard`), a malformed one is not."""
    node = Node(OWN, ContactRegistry(), Random(1), RoutingSettings(refresh_on_join=False), 0.0,
                identity=IDENT, traversal=True)
    assert node.traversal.watching
    request = bytes((ROUTE_REQ,)) + (9).to_bytes(20, "big") + bytes(20)
    node.receive_datagram(request[:-1], ("192.0.2.1", 5004), 1.0)  # malformed: nothing
    node.receive_datagram(request, ("198.51.100.7", 5004), 1.0)
    assert not node.traversal.independent
    node.receive_datagram(request, ("203.0.113.80", 5004), 1.5)
    assert node.traversal.independent
