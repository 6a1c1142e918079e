"""A real node's answers kept as table handles until sent (issue 15): a request read in place
is served exactly as the codec's RouteRequest is; the datagram is the per-contact encoding of
the closest contacts as they were when the request was served, even when the registry
recycles their handles before it goes out; the kept entry bytes never outlive a handle's
contact; `messages_to_send` still gives RouteResponse objects."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import (
    MAX_REQUEST_SIZE, REQUEST_SIZE, ROUTE_RES, MalformedMessage, RouteResponse,
)
from kadtalk.node.routing.route6 import MARKER, ROUTE6_REQUEST_SIZE, ROUTE6_RES, _tagged
from kadtalk.node.routing.route6 import decode as decode_any

from .test_codec_entries import TO_WIRE, reference

OWN = 0x5A << 152
SOURCE = ("192.0.2.7", 4000)


def layer_with(contacts: int, seed: int = 1, **changes) -> RoutingLayer:
    layer = RoutingLayer(OWN, ContactRegistry(), Random(seed), RoutingSettings(**changes))
    rng = Random(seed)
    for i in range(contacts):
        layer.add_contact(rng.getrandbits(160), (f"198.51.100.{i % 250 + 1}", 5000 + i), 0.0)
    return layer


def expected(layer: RoutingLayer, target: int, handles: list[int], six: bool) -> bytes:
    """The answer the serve path built before: (ID, address) pairs, each contact encoded."""
    ids, addrs = layer.registry.ids, layer.registry.addrs
    msg = RouteResponse(OWN, target, [(ids[h], addrs[h]) for h in handles])
    kind, to_wire = (ROUTE6_RES, _tagged(TO_WIRE)) if six else (ROUTE_RES, TO_WIRE)
    return reference(kind, msg, to_wire)


def request(origin: int, target: int, size: int = REQUEST_SIZE, fill: bytes = b"") -> bytes:
    head = bytes((0,)) + origin.to_bytes(20, "big") + target.to_bytes(20, "big")
    return head + (fill + bytes(max(0, size - REQUEST_SIZE - len(fill))))[:size - REQUEST_SIZE]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**160 - 1), st.integers(0, 2**160 - 1),
       st.one_of(st.integers(0, REQUEST_SIZE + 8),
                 st.integers(MAX_REQUEST_SIZE - 4, MAX_REQUEST_SIZE + 4),
                 st.sampled_from([ROUTE6_REQUEST_SIZE, 100])),
       st.sampled_from([b"", MARKER, MARKER[:3], b"IPv7"]), st.booleans())
def test_a_request_read_in_place_is_served_as_the_codecs_request(origin, target, size, fill,
                                                                  limits):
    data = request(origin, target, size, fill) if size >= REQUEST_SIZE else request(
        origin, target)[:size]
    in_place, decoded = (layer_with(30, limits=limits) for _ in range(2))
    in_place.receive_datagram(data, SOURCE, 0.0)
    try:
        msg, _ = decode_any(data, decoded.registry.addr_from_wire, ipv6=decoded.settings.ipv6)
    except MalformedMessage as error:
        decoded.count(error.reason)
    else:
        decoded.receive_message(msg, SOURCE, 0.0)
    assert in_place.datagrams_to_send(0.0) == decoded.datagrams_to_send(0.0)
    assert in_place.stats == decoded.stats and in_place.limited_answers == decoded.limited_answers


def test_an_answer_waiting_to_be_sent_keeps_its_handles_when_the_registry_recycles():
    layer = layer_with(40, limits=False)
    registry, table = layer.registry, layer.table
    target = Random(5).getrandbits(160)
    layer.receive_datagram(request(7, target), SOURCE, 0.0)
    closest = table.closest(target, 20, registry.intern(7, SOURCE))
    answer = expected(layer, target, closest, False)
    gone = closest[0]
    table.remove(gone)  # no longer in the table: only the waiting answer names it
    layer._forget_unreferenced()
    for i in range(10):  # new contacts take whatever handles were freed
        registry.intern(1000 + i, ("203.0.113.9", 6000 + i))
    assert registry.ids[gone] != 1000 + 9 and registry.addrs[gone] is not None
    out = layer.datagrams_to_send(0.0)
    assert out[0] == (answer, SOURCE)


def test_kept_entries_are_forgotten_with_the_handles_they_belong_to():
    layer = layer_with(15, limits=False)  # no bucket full: a newcomer becomes an entry
    registry, table = layer.registry, layer.table
    target = Random(5).getrandbits(160)
    layer.receive_datagram(request(7, target), SOURCE, 0.0)
    layer.datagrams_to_send(0.0)  # every entry of that answer is now kept by handle
    gone = table.closest(target, 1)[0]
    table.remove(gone)
    layer._forget_unreferenced()
    assert registry.addrs[gone] is None  # freed
    for i in range(1, 10):  # contacts next to the target take the freed handles
        if registry.intern(target ^ i, ("203.0.113.9", 6000 + i)) == gone:
            break
    assert registry.ids[gone] ^ target < 10 and table.observe(gone, 0.0)
    layer.receive_datagram(request(7, target), SOURCE, 1.0)
    closest = table.closest(target, 20, registry.intern(7, SOURCE))
    assert closest[0] == gone
    assert layer.datagrams_to_send(1.0)[0] == (expected(layer, target, closest, False), SOURCE)


def test_messages_to_send_gives_the_answer_as_a_route_response():
    layer = layer_with(30, limits=False)
    registry = layer.registry
    target = Random(9).getrandbits(160)
    layer.receive_datagram(request(7, target, ROUTE6_REQUEST_SIZE, MARKER), SOURCE, 0.0)
    (msg, addr), *_ = layer.messages_to_send(0.0)
    closest = layer.table.closest(target, 20, registry.intern(7, SOURCE))
    assert addr == SOURCE and msg == RouteResponse(
        OWN, target, [(registry.ids[h], registry.addrs[h]) for h in closest], True)
    assert msg.ipv6
