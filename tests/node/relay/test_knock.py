"""KNOCK / KNOCKED (the relay tells an allocation's owner where a would-be peer is) and the
traversal ops that carry a caller's allocation to its callee (PUNCH_REQ_RELAY, PUNCH_FWD_RELAY):
answers no larger than requests, nothing to an unproven source, refusals counted."""

from __future__ import annotations

from random import Random

from kadtalk.node.relay import Knocked, RelayPath, wire
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    PUNCH_COOKIE,
    PUNCH_FWD_RELAY,
    PUNCH_REQ_RELAY,
    SIZES,
    TRAVERSAL,
)

from .conftest import A, B, R, World, identity

RELAY_ADDR = ("198.51.100.9", 3478)
RELAY_WIRE = bytes((198, 51, 100, 9)) + (3478).to_bytes(2, "big")


def test_a_knock_tells_the_owner_where_the_knocker_is_and_nothing_to_the_knocker():
    world = World()
    path = world.granted(A).path
    out = world.inject(wire.knock(path.allocation), B)
    assert [(p.src, p.dst, p.payload) for p in out[1:]] == [
        (R, A, wire.knocked(path.allocation, bytes((203, 0, 113, 2)) + (5004).to_bytes(2, "big")))]
    assert wire.SIZES[wire.KNOCKED] <= wire.SIZES[wire.KNOCK]
    assert world.of(A, Knocked) == [Knocked(path, B, world.now)]


def test_knocks_that_cannot_become_a_permission_are_counted_drops():
    world = World()
    path = world.granted(A).path
    for data, src in ((wire.knock(bytes(8)), B),  # no such allocation
                      (wire.knock(path.allocation), ("127.0.0.1", 5004)),  # loopback
                      (wire.knock(path.allocation), A)):  # the owner itself
        assert len(world.inject(data, src)) == 1  # the knock, and nothing after it
    assert world.relay.drop_counts() == {"unknown_allocation": 1, "forbidden_peer": 1,
                                         "forbidden_self": 1}
    assert world.of(A, Knocked) == []


def test_a_knock_flood_spends_the_allocations_budget():
    world = World()
    path = world.granted(A).path
    for _ in range(2000):
        world.relay.receive_datagram(wire.knock(path.allocation), B, 1.0)
    knocked = world.relay.stats["knocked"]
    assert knocked * 16 <= 20_000 + 16  # the burst, in bytes: 1,250 knocks at most
    assert world.relay.drop_counts()["over_allocation_rate"] == 2000 - knocked


def test_a_knocked_nobody_asked_for_is_unsolicited():
    world = World()
    path = world.granted(A).path
    layer = world.at(A)
    layer.receive_datagram(wire.knocked(bytes(8), bytes(6)), R, 0.0)  # not our allocation
    layer.receive_datagram(wire.knocked(path.allocation, bytes(6)), B, 0.0)  # not our relay
    assert layer.drop_counts() == {"unsolicited": 2}


def node(name: str) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1), identity=me,
                traversal=True)


def test_a_rendezvous_forwards_the_relay_part_only_for_a_validated_requester():
    rendezvous, caller, callee = node("rv"), node("caller"), node("callee")
    callee_addr, caller_addr = ("203.0.113.20", 5004), ("203.0.113.21", 5004)
    rendezvous.add_contact(callee.node_id, callee_addr, 0.0)
    request = (bytes((TRAVERSAL, PUNCH_REQ_RELAY)) + caller.node_id.to_bytes(20, "big")
               + callee.node_id.to_bytes(20, "big") + RELAY_WIRE + bytes(range(8)))
    assert len(request) == SIZES[PUNCH_REQ_RELAY] == 56
    rendezvous.receive_datagram(request, caller_addr, 0.0)
    [(cookie_msg, to)] = rendezvous.datagrams_to_send(0.0)
    assert to == caller_addr and cookie_msg[1] == PUNCH_COOKIE and len(cookie_msg) == 18
    rendezvous.receive_datagram(request + cookie_msg[2:], caller_addr, 0.1)  # 72 bytes
    [(forward, to)] = rendezvous.datagrams_to_send(0.1)
    assert to == callee_addr and forward[1] == PUNCH_FWD_RELAY
    assert len(forward) == SIZES[PUNCH_FWD_RELAY] == 42 <= len(request)
    assert forward[2:22] == caller.node_id.to_bytes(20, "big")
    assert forward[22:28] == bytes((203, 0, 113, 21)) + (5004).to_bytes(2, "big")
    assert forward[28:42] == RELAY_WIRE + bytes(range(8))  # relay and allocation, unread


def offer(caller: Node, relay_wire: bytes = RELAY_WIRE) -> bytes:
    return (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + caller.node_id.to_bytes(20, "big")
            + bytes((203, 0, 113, 21)) + (5004).to_bytes(2, "big") + relay_wire + bytes(8))


def test_the_callee_punches_and_knocks_only_for_a_contact_and_a_usable_relay():
    callee, caller = node("callee"), node("caller")
    contact = ("198.51.100.30", 5004)
    callee.add_contact(int.from_bytes(identity("rv").node_id, "big"), contact, 0.0)
    callee.datagrams_to_send(0.0)
    callee.receive_datagram(offer(caller), ("198.51.100.31", 5004), 1.0)  # a stranger
    assert callee.datagrams_to_send(1.0) == []
    assert callee.drop_counts()["punch_fwd_stranger"] == 1
    callee.receive_datagram(offer(caller), contact, 2.0)
    sent = callee.datagrams_to_send(2.0)
    punches = [d for d, to in sent if to == ("203.0.113.21", 5004)]
    knocks = [d for d, to in sent if to == RELAY_ADDR]
    assert len(punches) == 2 and knocks == [wire.knock(bytes(8))] * 2
    assert callee.relay.client.knows(RelayPath(RELAY_ADDR, bytes(8)))  # accepts DATA through it
    loopback = bytes((127, 0, 0, 1)) + (3478).to_bytes(2, "big")
    callee.receive_datagram(offer(caller, loopback), contact, 3.0)
    assert [to for _, to in callee.datagrams_to_send(3.0)] == [("203.0.113.21", 5004)] * 2
    assert callee._upper.paths.stats["relay_offer_refused"] == 1  # no knock at loopback


def test_a_knock_for_no_call_of_ours_permits_nothing():
    world = World()
    path = world.granted(A).path
    n = node("owner")
    n._knocked(Knocked(path, B, 0.0))
    assert n._upper.paths.stats["knock_unexpected"] == 1
    assert n.datagrams_to_send(0.0) == []
