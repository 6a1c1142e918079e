"""Calls between an IPv4-only and an IPv6-only node through a dual-stack relay (docs/protocol.md
§20-21, "Across address families"): whole nodes on MemoryNet with explicit time; a route hook
gives the dual-stack node its address in each family and drops whatever would cross families
(as a host without that family's route does). Neither end holds a relay before the call: the
call's own search finds one that names its other address in ALLOCATED."""

from __future__ import annotations

from random import Random

from kadtalk.node.addresses import is_ipv6
from kadtalk.node.relay import RelayPath
from kadtalk.node.relay import wire as relay_wire
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (PUNCH_FWD_RELAY, PUNCH_REQ, PUNCH_REQ_RELAY, TRAVERSAL)
from kadtalk.transport.memory import MemoryNet, Packet

from .conftest import identity
from .dht import WALL, Call

D4, D6 = ("198.51.100.1", 5004), ("2001:db8:1::1", 5004)  # the dual-stack relay
P4 = ("198.51.100.11", 5004)  # public, IPv4 only
Q4 = ("198.51.100.12", 5004)  # public, IPv4 only (a relay without IPv6)
V6 = ("2001:db8:2::1", 5004)  # IPv6 only
DUAL = {D4: D6, D6: D4}


class Hops:
    """Route: 10 ms a hop; the dual-stack node's datagrams leave from its address in the
    destination's family; nothing crosses families; everything logged."""

    def __init__(self) -> None:
        self.log: list[tuple[float, Packet]] = []

    def __call__(self, packet: Packet, now: float):
        src = packet.src
        if src in DUAL and is_ipv6(src) != is_ipv6(packet.dst):
            src = DUAL[src]
        out = Packet(src, packet.dst, packet.payload)
        self.log.append((now, out))
        if is_ipv6(src) != is_ipv6(packet.dst):
            return ()  # no route in that family
        return ((0.01, out),)


class Alias:
    """The dual-stack node's second address: what arrives there goes to the node."""

    def __init__(self, node: Node):
        self.node = node

    def receive_datagram(self, data: bytes, addr, now: float) -> None:
        self.node.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float):
        return self.node.datagrams_to_send(now)

    def next_event(self):
        return None

    def get_timer(self):
        return self.node.get_timer()

    def handle_timer(self, now: float) -> None:
        self.node.handle_timer(now)


def node(name: str, ipv6: bool) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(len(name)),
                RoutingSettings(ipv6=ipv6), identity=me, clock_offset=WALL, traversal=True)


def world():
    hops = Hops()
    net = MemoryNet(hops)
    dual = node("dual-stack relay", True)
    net.attach(D4, dual)
    net.attach(D6, Alias(dual))
    dual.set_nat("none", D4, own=(D6,))  # as the daemon: its IPv6 route source is its own too
    for addr, name in ((P4, "ipv4 only"), (Q4, "ipv4 relay")):
        net.attach(addr, node(name, False))
        net.nodes[addr].set_nat("none", addr)
    net.attach(V6, node("ipv6 only", True))
    for addr, boot in ((P4, D4), (Q4, D4), (V6, D6)):
        net.nodes[addr].keep_joined([boot], net.now)
        net.settle(net.now)
        net.run_until(net.now + 2.0)
    net.run_until(net.now + 10.0)
    return net, hops


def traversal_ops(hops: Hops, since: float, src=None) -> list[tuple[int, int, object]]:
    return [(p.payload[1], len(p.payload), p.dst) for t, p in hops.log if t >= since
            and p.payload[:1] == bytes((TRAVERSAL,)) and (src is None or p.src == src)]


def test_an_ipv4_only_caller_reaches_an_ipv6_only_callee_through_a_dual_stack_relay():
    net, hops = world()
    since = net.now
    call = Call(net, a=P4, b=V6)
    assert call.connect() == "talking"
    assert type(call.path(P4)) is RelayPath and call.path(P4).relay == D4  # its own, at IPv4
    assert call.path(V6) == RelayPath(D6, call.path(P4).allocation)  # the same, at IPv6
    sent, got = call.media(0.2)
    assert len(sent) >= 8 and len(got) >= 8  # audio both ways
    ops = traversal_ops(hops, since)
    # the offer names the relay's IPv6 address (68 bytes), the forward carries no address
    assert (PUNCH_REQ_RELAY, 68, D4) in ops
    assert (PUNCH_FWD_RELAY, 54, V6) in ops
    fwd = next(p.payload for t, p in hops.log if t >= since and p.payload[:2] == bytes(
        (TRAVERSAL, PUNCH_FWD_RELAY)))
    assert fwd[22:28] == bytes(6)
    assert relay_wire.allocated_fields  # the ALLOCATED that named D6 was 52 bytes:
    assert any(p.payload[:2] == bytes((relay_wire.RELAY, relay_wire.ALLOCATED))
               and len(p.payload) == 52 for t, p in hops.log if t >= since)
    stats = net.nodes[P4]._upper.paths.stats
    assert stats["across_families"] == 1 and stats["family_relay_found"] == 1


def test_an_ipv6_only_caller_reaches_an_ipv4_only_callee_through_a_dual_stack_relay():
    net, hops = world()
    since = net.now
    call = Call(net, a=V6, b=P4)
    assert call.connect() == "talking"
    assert call.path(V6) == RelayPath(D6, call.path(V6).allocation)
    assert call.path(P4) == RelayPath(D4, call.path(V6).allocation)
    sent, got = call.media(0.2)
    assert len(sent) >= 8 and len(got) >= 8
    ops = traversal_ops(hops, since)
    assert (PUNCH_REQ_RELAY, 56, D6) in ops  # an IPv4 relay address, sent over IPv6
    assert (PUNCH_FWD_RELAY, 42, P4) in ops  # forwarded into IPv4, no requester address
    assert not [op for op in ops if op[0] == PUNCH_REQ]  # nothing to punch across families


def test_ipv4_only_calls_still_go_direct_and_ask_for_nothing_across_families():
    net, hops = world()
    since = net.now
    call = Call(net, a=P4, b=Q4)
    assert call.connect() == "talking"
    assert call.path(P4) == Q4
    assert "across_families" not in (net.nodes[P4]._upper.paths or _Empty()).stats


class _Empty:
    stats: dict = {}
