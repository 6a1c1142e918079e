"""The serve path (RoutingLayer._serve, issue 15): an answer is byte for byte the per-contact
encoding of the table's closest contacts, IPv4 and IPv6, ROUTE_RES and ROUTE6_RES, and a
requester whose address was probed within the second draws no probe and is counted as skipped."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import (
    MAX_REQUEST_SIZE, ROUTE_RES, RouteRequest, RouteResponse, encode_request,
)
from kadtalk.node.routing.route6 import ROUTE6_REQUEST_SIZE, ROUTE6_RES, _tagged
from kadtalk.node.routing.route6 import encode_request as encode_request6

from .test_codec_entries import TO_WIRE, reference

ids = st.integers(1, 2**160 - 1)
v4 = st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535))
v6 = st.tuples(st.ip_addresses(v=6).map(str), st.integers(1, 65535))


@settings(max_examples=60, deadline=None)
@given(ids, ids, ids, st.lists(st.tuples(ids, st.one_of(v4, v6)), max_size=60), st.booleans())
def test_an_answer_is_the_per_contact_encoding_of_the_closest(own, origin, target, contacts, six):
    layer = RoutingLayer(own, ContactRegistry(), Random(1), RoutingSettings(ipv6=six))
    for node_id, addr in contacts:
        layer.add_contact(node_id, addr, 0.0)
    source = ("2001:db8::7", 4000) if six else ("192.0.2.7", 4000)
    data = (encode_request6(RouteRequest(origin, target, ROUTE6_REQUEST_SIZE, True)) if six
            else encode_request(RouteRequest(origin, target, MAX_REQUEST_SIZE)))  # answered in full
    for now in (0.0, 0.5):  # the second answer: every entry from the cache, the probe skipped
        layer.receive_datagram(data, source, now)
        out = layer.datagrams_to_send(now)
        if origin == own:
            assert out == []
            continue
        registry = layer.registry
        handle = registry.intern(origin, source)
        closest = layer.table.closest(target, layer.settings.k, handle)
        pairs = [(registry.ids[h], registry.addrs[h]) for h in closest]  # the old serve path's
        expected = RouteResponse(own, target, pairs)
        kind, to_wire = (ROUTE6_RES, _tagged(None)) if six else (ROUTE_RES, TO_WIRE)
        assert out[0] == (reference(kind, expected, to_wire), source)


def test_a_requester_probed_within_the_second_is_skipped_then_probed_again():
    layer = RoutingLayer(1 << 159, ContactRegistry(), Random(1), RoutingSettings())
    source = ("192.0.2.7", 4000)
    data = encode_request(RouteRequest(5, 9))
    sent = []
    for now in (0.0, 0.2, 0.9, 1.5):
        layer.receive_datagram(data, source, now)
        sent.append(len(layer.datagrams_to_send(now)))  # the answer, and a probe or not
    assert sent == [2, 1, 1, 2] and layer.probes_skipped == 2
