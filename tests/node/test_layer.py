"""The layer surface (kadtalk.node.layer): every layer and the Node satisfy the Protocols, by
isinstance and by signature; events share typed base classes; the stack routes by a table."""

from __future__ import annotations

import collections
import inspect
import random

import pytest

from kadtalk.node.identity import Identity
from kadtalk.node.layer import ContactView, Event, Layer, Registry, SharedAnswers
from kadtalk.node.relay import RelayLayer
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted, RoutingEvent
from kadtalk.node.session.events import (
    CallEnded,
    CallProgress,
    IncomingCall,
    MediaReceived,
    MissedCall,
    ReceiverReport,
    SessionEvent,
)
from kadtalk.node.stack import (LAYER_OF, NONE, RELAY_LAYER, ROUTING, SESSION, STORAGE_LAYER,
                                TRAVERSAL_LAYER, Node)
from kadtalk.node.storage import StorageLayer
from kadtalk.node.traversal import AddressObserved, Traversal, TraversalEvent
from kadtalk.sim.dualstack import DualStackRegistry
from kadtalk.sim.registry import SharedRegistry


def members(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items()
            if callable(value) and not name.startswith("_") or name == "__len__"]


def same_signature(obj: object, protocol: type) -> list[str]:
    """The protocol's methods whose parameters `obj`'s (bound or static) methods name otherwise."""
    wrong = []
    for name in members(protocol):
        want = list(inspect.signature(getattr(protocol, name)).parameters)[1:]  # without self
        have = list(inspect.signature(getattr(obj, name)).parameters)
        if have != want:
            wrong.append(f"{type(obj).__name__}.{name}{tuple(have)} != {tuple(want)}")
    return wrong


def identity_node(traversal: bool = True) -> Node:
    ident = Identity.generate()
    return Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=ident, traversal=traversal)


def every_layer() -> list:
    node = identity_node()
    node.call(12345, 0.0)  # creates the session layer
    routing_only = Node(7, ContactRegistry(), random.Random(1))
    ident = Identity.generate()
    return [node, routing_only, node.routing, node.session, node.traversal,
            RelayLayer(ident), StorageLayer(ident)]


def test_every_layer_satisfies_the_layer_protocol_by_isinstance_and_signature():
    layers = every_layer()
    assert [type(x).__name__ for x in layers] == ["Node", "Node", "RoutingLayer", "SessionLayer",
                                                   "Traversal", "RelayLayer", "StorageLayer"]
    for layer in layers:
        assert isinstance(layer, Layer), type(layer).__name__
    for layer in layers:
        assert same_signature(layer, Layer) == []
    # the check itself can fail: a class lacking `now` in datagrams_to_send does not pass
    class Old:
        stats = None

        def receive_datagram(self, data, addr, now): ...

        def datagrams_to_send(self): ...

        def next_event(self): ...

        def get_timer(self): ...

        def handle_timer(self, now): ...

    assert isinstance(Old(), Layer)  # runtime_checkable sees names only ...
    assert same_signature(Old(), Layer) == ["Old.datagrams_to_send() != ('now',)"]
    assert not isinstance(object(), Layer)


def test_both_registries_satisfy_the_registry_protocol():
    shared = (SharedRegistry([1, 2, 3]), DualStackRegistry([1, 2, 3]))
    for registry in (ContactRegistry(), *shared):
        assert isinstance(registry, Registry)
        assert same_signature(registry, Registry) == []
    assert ContactRegistry.recycles and not SharedRegistry.recycles
    assert SharedRegistry([1, 2]).retain([]) == 0  # never frees an honest node's handle
    # one that never recycles gives the answers' format the routing layer asks it for
    assert not isinstance(ContactRegistry(), SharedAnswers)
    for registry, ipv6 in zip(shared, (False, True)):
        assert isinstance(registry, SharedAnswers) and not registry.recycles
        assert same_signature(registry, SharedAnswers) == []
        head, codec, kept = registry.answer_format(5, ipv6)
        assert head == bytes((0x0B if ipv6 else 0x01,)) + (5).to_bytes(20, "big")
        assert callable(codec) and type(kept) is dict


def test_the_node_offers_traversal_a_contact_view():
    node = identity_node()
    assert isinstance(node.traversal.contacts, ContactView)
    assert same_signature(node.traversal.contacts, ContactView) == []


def test_events_share_one_base_class_per_layer():
    for kind in (LookupCompleted, Joined):
        assert issubclass(kind, RoutingEvent) and issubclass(kind, Event)
    for kind in (CallProgress, IncomingCall, MissedCall, CallEnded, MediaReceived, ReceiverReport):
        assert issubclass(kind, SessionEvent) and not issubclass(kind, RoutingEvent)
    assert issubclass(AddressObserved, TraversalEvent) and issubclass(TraversalEvent, Event)
    assert inspect.signature(Node.next_event).return_annotation == "Event | None"


def test_the_stack_routes_by_a_table_from_first_byte_to_layer():
    assert [LAYER_OF[b] for b in range(12)] == [ROUTING, ROUTING, SESSION, SESSION, SESSION,
                                                SESSION, TRAVERSAL_LAYER, SESSION, RELAY_LAYER,
                                                NONE, STORAGE_LAYER, ROUTING]  # 0x0b ROUTE6_RES
    assert all(LAYER_OF[b] == NONE for b in range(12, 256))


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"), (b"\x09", "unknown_type"), (b"\x08", "malformed"), (b"\x0a", "malformed"),
    (b"\xff" * 30, "unknown_type"),
    (bytes((0x06, 0x09)), "malformed"), (bytes((0x02,)), None),
])
def test_drop_counts_cover_every_layer(data, reason):
    node = identity_node()
    node.receive_datagram(data, ("10.0.0.9", 4000), 0.0)
    drops = node.drop_counts()
    assert sum(drops.values()) == 1, drops
    if reason is not None:
        assert drops[reason] == 1


def test_traversal_counts_sent_datagrams_but_drop_counts_hold_only_drops():
    node = identity_node()
    node.probe_address([("10.0.0.2", 4000)], 0.0)
    node.datagrams_to_send(0.0)
    assert node.traversal.stats["addr_req_sent"] == 1
    assert node.drop_counts() == collections.Counter()
