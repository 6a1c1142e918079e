"""The relay layer inside a Node: on by default with an identity (serving only once public),
off with `RelaySettings(enabled=False)`, absent without an identity; its drops, timer and
events reach the Node's surface; a RelayPath never enters the routing table."""

from __future__ import annotations

from random import Random

from kadtalk.node.relay import AllocationGranted, RelayPath, RelaySettings, wire
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node

from .calls import A, B, R, place_call, relay_path, world
from .conftest import identity

SOURCE = ("203.0.113.5", 4000)


def make(settings: RelaySettings | None = None, with_identity: bool = True) -> Node:
    me = identity("node")
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1),
                identity=me if with_identity else None, relay_settings=settings)


def test_on_by_default_but_serving_only_once_public():
    node = make()
    node.receive_datagram(wire.hello(bytes(16)), SOURCE, 0.0)
    assert node.datagrams_to_send(0.0) == []
    assert node.drop_counts() == {"not_serving": 1}
    node.relay.set_public([("198.51.100.7", 5004)])
    node.receive_datagram(wire.hello(bytes(16)), SOURCE, 0.0)
    ((answer, dst),) = node.datagrams_to_send(0.0)
    assert answer[:2] == bytes((wire.RELAY, wire.CHALLENGE)) and dst == SOURCE


def test_the_off_switch_and_routing_only_nodes_speak_no_relay():
    for node in (make(RelaySettings(enabled=False)), make(with_identity=False)):
        node.receive_datagram(wire.hello(bytes(16)), SOURCE, 0.0)
        assert node.relay is None and node.datagrams_to_send(0.0) == []
        assert node.drop_counts() == {"unknown_type": 1}


def test_serve_always_and_never():
    node = make(RelaySettings(serve="always"))
    node.receive_datagram(wire.hello(bytes(16)), SOURCE, 0.0)
    assert len(node.datagrams_to_send(0.0)) == 1
    node = make(RelaySettings(serve="never"))
    node.relay.set_public([("198.51.100.7", 5004)])
    node.receive_datagram(wire.hello(bytes(16)), SOURCE, 0.0)
    assert node.datagrams_to_send(0.0) == [] and node.drop_counts() == {"not_serving": 1}


def test_the_nodes_timer_and_events_carry_the_relays():
    node = make()
    assert node.get_timer() > 0.5  # the routing table's refresh
    node.relay.allocate(R, 0.0)
    ((hello, dst),) = node.datagrams_to_send(0.0)
    assert hello[1] == wire.HELLO and dst == R
    assert node.get_timer() == 0.5  # the retransmission
    node.handle_timer(0.5)
    assert [d[1] for d, _ in node.datagrams_to_send(0.5)] == [wire.HELLO]


def test_a_relayed_call_leaves_no_relay_path_in_the_routing_table():
    net, _ = world()
    path, _ = relay_path(net)
    assert net.of(A, AllocationGranted)
    assert place_call(net, path, limit=30.0) == ["talking"]
    for at in (A, B):
        registry = net.nodes[at].routing.registry
        assert not [a for a in registry.addrs if type(a) is RelayPath]


def test_a_session_datagram_to_a_path_the_node_does_not_hold_is_not_sent():
    node = make()
    node.call(7, 0.0, addr=RelayPath(R, bytes(8)))
    assert node.datagrams_to_send(0.0) == []
    assert node.stats["unrelayable"] == 1
