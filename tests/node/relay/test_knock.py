"""KNOCK / KNOCK_COOKIE / KNOCKED (a would-be peer proves its address to the relay, which then
tells the allocation's owner where it is) and the traversal ops that carry a caller's
allocation to its callee (PUNCH_REQ_RELAY, PUNCH_FWD_RELAY): answers no larger than requests,
nothing but a metered cookie to an unproven source, no permission for an unproven peer (the
reflection attack played), refusals counted."""

from __future__ import annotations

from random import Random

from kadtalk.node.relay import Knocked, PermissionRefused, RelayPath, wire
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    PUNCH_COOKIE,
    PUNCH_FWD_RELAY,
    PUNCH_REQ_RELAY,
    SIZES,
    TRAVERSAL,
)

from .conftest import A, B, C, R, World, identity

RELAY_ADDR = ("198.51.100.9", 3478)
RELAY_WIRE = bytes((198, 51, 100, 9)) + (3478).to_bytes(2, "big")


def test_a_knock_draws_a_cookie_and_only_its_echo_tells_the_owner():
    world = World()
    path = world.granted(A).path
    b_wire = bytes((203, 0, 113, 2)) + (5004).to_bytes(2, "big")
    out = world.inject(wire.knock(path.allocation), B)  # a bare KNOCK: asks for a cookie
    [(src, dst, answer)] = [(p.src, p.dst, p.payload) for p in out[1:]]
    assert (src, dst, answer[:10]) == (R, B, bytes((wire.RELAY, wire.KNOCK_COOKIE)) +
                                       path.allocation)
    assert len(answer) == wire.SIZES[wire.KNOCK_COOKIE] <= wire.SIZES[wire.KNOCK] == 16
    assert world.of(A, Knocked) == []  # the owner hears nothing of an unproven address
    out = world.inject(wire.knock(path.allocation, answer[10:16]), B)  # the echo
    assert [(p.src, p.dst, p.payload) for p in out[1:]] == [
        (R, A, wire.knocked(path.allocation, b_wire))]
    assert wire.SIZES[wire.KNOCKED] <= wire.SIZES[wire.KNOCK]
    assert world.of(A, Knocked) == [Knocked(path, B, world.now)]
    assert world.relay.server.allocations[path.allocation].proven == (B,)


def test_a_knocking_layer_echoes_each_cookie_once_and_at_most_twice():
    world = World()
    path = world.granted(A).path
    start = len(world.log)
    world.knock(B, path)
    hops = [(p.src, p.dst, p.payload[1], len(p.payload)) for p in world.log[start:]]
    assert sorted(hops) == sorted(
        [(B, R, wire.KNOCK, 16)] * 4 + [(R, B, wire.KNOCK_COOKIE, 16)] * 2
        + [(R, A, wire.KNOCKED, 16)] * 2)
    assert world.at(B).stats["knock_echoed"] == 2
    cookie = wire.knock(path.allocation, b"\x01" * 6, wire.KNOCK_COOKIE)
    world.inject(cookie, R, B)  # a third cookie (forged from R's address): no third echo
    world.at(B).knock(path, 20.0)  # a new knock, but the cookie comes too late
    world.at(B).datagrams_to_send(20.0)
    world.at(B).receive_datagram(cookie, R, 20.0 + 10.0)
    world.at(B).receive_datagram(cookie, C, 20.0)  # nor from another address than the relay
    assert world.at(B).datagrams_to_send(30.0) == []
    assert world.at(B).drop_counts() == {"unsolicited": 3}


VICTIM = ("203.0.113.66", 5004)  # no node there: it never knocked


def bytes_to(world: World, addr) -> int:
    return sum(len(p.payload) for p in world.log if p.dst == addr)


def test_the_attack_an_owner_naming_a_victim_that_never_knocked_sends_it_nothing():
    """The reflection the cookie closes (docs/protocol.md §21): the owner of an allocation
    permits a victim's address and sends DATA for it. Before the cookie the relay forwarded
    every DATA to the victim; now PERMIT is refused and not one byte goes there."""
    world = World()
    a = world.at(A)
    path = world.granted(A).path
    a.permit(path, VICTIM, 0.0)
    world.settle(0.0)
    assert world.of(A, PermissionRefused) == [
        PermissionRefused(path, VICTIM, "unproven_peer", 0.0)]
    for i in range(100):
        a.send(path, bytes(1000), 0.01 * i)  # 100 kB aimed at the victim
        world.settle(0.01 * i)
    assert bytes_to(world, VICTIM) == 0
    assert world.relay.drop_counts() == {"unproven_peer": 1, "no_permission": 100}


def test_the_attack_with_knocks_forged_from_the_victim_costs_it_only_cookies():
    """The owner also forges KNOCKs from the victim's address and guesses the cookie: the victim
    gets one 16-byte KNOCK_COOKIE per metered bare knock (never more bytes than were forged in
    its name); every guess is a counted, metered drop; nothing proves the victim, so PERMIT is
    still refused and no DATA reaches it."""
    world = World()
    a = world.at(A)
    path = world.granted(A).path
    forged = 0
    for i in range(50):
        world.inject(wire.knock(path.allocation), VICTIM, now=0.01 * i)
        forged += 16
        for guess in range(20):
            world.inject(wire.knock(path.allocation, bytes((1, i, guess, 0, 0, 0))), VICTIM,
                         now=0.01 * i)
            forged += 16
    to_victim = [p.payload for p in world.log if p.dst == VICTIM]
    assert all(p[1] == wire.KNOCK_COOKIE and len(p) == 16 for p in to_victim)
    assert 0 < len(to_victim) <= 5 + 1  # the source's burst, and 2/s over half a second
    drops = world.relay.drop_counts()
    assert drops["bad_knock_cookie"] + drops["rate_limited_source"] + len(to_victim) \
        == forged // 16
    a.permit(path, VICTIM, 1.0)
    for i in range(10):
        a.send(path, bytes(500), 1.0)
    world.settle(1.0)
    assert [p.payload[1] for p in world.log if p.dst == VICTIM] == [wire.KNOCK_COOKIE] * len(
        to_victim)  # still nothing but the cookies
    assert world.of(A, Knocked) == []
    assert world.relay.drop_counts()["unproven_peer"] == 1


def test_forged_expired_and_replayed_elsewhere_cookies_are_counted_drops():
    world = World()
    path = world.granted(A).path
    other = world.granted(C).path  # another allocation on the same relay
    cookie = world.inject(wire.knock(path.allocation), B, now=0.0)[1].payload[10:16]
    rotation = world.relay.settings.cookie_rotation
    tries = [
        (wire.knock(path.allocation, bytes(5) + b"\x01"), B, 1.0),  # forged
        (wire.knock(path.allocation, cookie), VICTIM, 1.0),  # B's cookie from elsewhere
        (wire.knock(other.allocation, cookie), B, 1.0),  # B's cookie for another allocation
        (wire.knock(path.allocation, cookie), B, 2 * rotation + 1.0),  # expired
    ]
    for data, src, now in tries:
        world.settle(now)  # the clock first (the clients refresh meanwhile)
        assert len(world.inject(data, src, now=now)) == 1  # the knock, and nothing after it
    assert world.relay.drop_counts() == {"bad_knock_cookie": 4}
    assert world.of(A, Knocked) == world.of(C, Knocked) == []
    # a fresh cookie, echoed within one rotation (always good; up to two at most), proves B
    world.settle(3 * rotation)
    cookie = world.inject(wire.knock(path.allocation), B)[1].payload[10:16]
    world.settle(4 * rotation - 1.0)
    world.inject(wire.knock(path.allocation, cookie), B)
    assert [e.peer for e in world.of(A, Knocked)] == [B]


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


def test_a_knock_flood_is_metered_and_echoes_spend_the_allocations_budget():
    world = World()
    path = world.granted(A).path
    relay = world.relay
    for _ in range(2000):
        relay.receive_datagram(wire.knock(path.allocation), B, 1.0)
    cookies = [d for d, to in relay.datagrams_to_send(1.0) if to == B]
    assert len(cookies) == relay.stats["knock_cookie_sent"] == 5  # the source's burst
    assert relay.drop_counts()["rate_limited_source"] == 1995
    echo = wire.knock(path.allocation, cookies[0][10:16])
    for _ in range(2000):
        relay.receive_datagram(echo, B, 1.0)
    knocked = relay.stats["knocked"]
    assert knocked * 16 <= 20_000 + 16  # the burst, in bytes: 1,250 knocks at most
    assert relay.drop_counts()["over_allocation_rate"] == 2000 - knocked


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
