"""Calls between an IPv4-only and an IPv6-only node through a dual-stack relay (docs/protocol.md
§20-21, "Across address families"): whole nodes on MemoryNet with explicit time; a route hook
gives the dual-stack node its address in each family and drops whatever would cross families
(as a host without that family's route does). Neither end holds a relay before the call: the
call's own search finds one that names its other address in ALLOCATED."""

from __future__ import annotations

from random import Random

from kadtalk.node.addresses import is_ipv6
from kadtalk.node.relay import RelayPath
from kadtalk.node.relay import addresses as relay_addresses
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
    # the offer names the relay's IPv6 address (68 bytes), the forward the caller's IPv4 one
    # (the callee might be dual-stack behind an IPv4 NAT; this one's PUNCH finds no route)
    assert (PUNCH_REQ_RELAY, 68, D4) in ops
    assert (PUNCH_FWD_RELAY, 54, V6) in ops
    fwd = next(p.payload for t, p in hops.log if t >= since and p.payload[:2] == bytes(
        (TRAVERSAL, PUNCH_FWD_RELAY)))
    assert fwd[22:28] == bytes((198, 51, 100, 11)) + P4[1].to_bytes(2, "big")
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


# -- the attacks, played (docs/protocol.md §21, "Across address families") ---------------------

def relay_world(public=(D4, D6)):
    """A dual-stack relay layer at D4 and D6 (one server) and bare relay clients."""
    from kadtalk.node.relay import RelayLayer, RelaySettings

    net = MemoryNet(Hops())
    relay = RelayLayer(identity("relay"), RelaySettings(serve="always"))
    relay.set_public(public)
    net.attach(D4, relay)
    net.attach(D6, Alias(relay))
    for addr, name in ((P4, "owner4"), (V6, "owner6")):
        net.attach(addr, RelayLayer(identity(name)))
    return net, relay


def raw(addr) -> bytes:
    """An address's wire field, whatever it is (the relay's codec would refuse some)."""
    import socket

    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return socket.inet_pton(family, addr[0]) + addr[1].to_bytes(2, "big")


def granted(net, owner, at):
    from kadtalk.node.relay import AllocationGranted

    net.nodes[owner].allocate(at, net.now)
    net.settle(net.now)
    net.run_until(net.now + 1.0)
    [event] = net.of(owner, AllocationGranted)
    return event


def test_the_owner_learns_the_relays_other_address_in_allocated():
    net, _ = relay_world()
    for owner, at, other in ((P4, D4, D6), (V6, D6, D4)):
        event = granted(net, owner, at)
        assert net.nodes[owner].client.held[at].other == other


def test_the_attack_a_relay_asked_to_forward_to_a_special_address_of_the_other_family():
    """An IPv4 owner permits IPv6 addresses a relay must never send to (loopback, link-local,
    multicast, unique-local, its own /64, its own IPv4 behind NAT64 or 6to4), and an IPv6
    owner IPv4 ones (loopback, unspecified, multicast, broadcast, private, its own address):
    every PERMIT is refused with ERROR 4 and the relay forwards nothing; KNOCKs from such
    sources draw no cookie."""
    from kadtalk.node.relay import PermissionRefused

    net, relay = relay_world()
    specials = {P4: [("::1", 5004), ("fe80::1", 5004), ("ff02::1", 5004), ("fc00::1", 5004),
                     ("2001:db8:1::2", 5004), ("64:ff9b::c633:6401", 5004),
                     ("2002:c633:6401::1", 5004)],
                V6: [("127.0.0.1", 5004), ("0.0.0.0", 5004), ("224.0.0.1", 5004),
                     ("255.255.255.255", 5004), ("10.0.0.1", 5004), ("198.51.100.1", 6000)]}
    for owner, at in ((P4, D4), (V6, D6)):
        path = granted(net, owner, at).path
        client = net.nodes[owner].client
        for peer in specials[owner]:
            # as a malicious owner would: the PERMIT straight on the wire (the client's own
            # `permit` would send it too; the refusal is the relay's)
            net.send(Packet(owner, at, relay_wire.permit(path.allocation, raw(peer))))
            net.run_until(net.now + 0.1)
        errors = [p.payload for t, p in net.route.log if p.src in (D4, D6) and p.dst == owner
                  and p.payload[1] == relay_wire.ERROR]
        assert len(errors) == len(specials[owner])
        assert all(e[2:4] == bytes((relay_wire.PERMIT, relay_wire.FORBIDDEN_PEER)) for e in errors)
        net.route.log.clear()
        for knocker in specials[owner]:
            net.send(Packet(knocker, D6 if is_ipv6(knocker) else D4,
                            relay_wire.knock(path.allocation, ipv6=is_ipv6(knocker))))
        net.run_until(net.now + 0.1)
        assert not [p for t, p in net.route.log if p.src in (D4, D6)]  # no cookie, nothing
        del client
    drops = relay.drop_counts()
    assert drops["forbidden_peer"] + drops["forbidden_private"] + drops["forbidden_self"] >= 26
    assert "forwarded" not in relay.stats
    assert not [e for a in (P4, V6) for e in net.of(a, PermissionRefused)]  # (sent raw)


def test_the_attack_a_relay_never_names_a_special_or_private_address_as_its_other():
    """A relay whose IPv6 addresses are link-local or unique-local only tells an IPv4 owner
    none (34-byte ALLOCATED): it could only send a callee's knocks somewhere special."""
    net, _ = relay_world(public=(D4, ("fe80::1", 5004), ("fc00::1", 5004), ("::1", 5004)))
    granted(net, P4, D4)
    assert net.nodes[P4].client.held[D4].other is None
    sizes = [len(p.payload) for t, p in net.route.log if p.payload[1] == relay_wire.ALLOCATED]
    assert sizes == [34]


def test_the_attack_a_lying_relays_other_address_is_ignored_unless_of_the_other_family():
    from kadtalk.node.relay.client import Held, RelayClient
    from kadtalk.node.relay.settings import RelaySettings
    import collections

    client = RelayClient(identity("owner4"), RelaySettings(), collections.Counter(),
                         lambda *a: None, collections.deque())
    held = client.held[D4] = Held(D4, bytes(16))
    held.state = "allocating"
    from kadtalk.node.relay.addresses import IPV4
    same = relay_wire.allocated(bytes(16), bytes(8), 600, IPV4.to_wire(P4), bytes(18))
    client._on_allocated(held, same, 0.0)  # a zero port: no address
    assert held.state == "granted" and held.other is None


def test_the_attack_a_forged_offer_naming_a_special_relay_of_the_other_family_draws_no_knock():
    """A contact (here the dual-stack rendezvous itself, or anyone forging its address)
    forwards offers naming special IPv6 relay addresses to an IPv6-only callee: it knocks at
    none of them (`relay_offer_refused`); one naming an IPv4 relay it cannot reach draws no
    knock either (`relay_offer_unreachable`)."""
    net, hops = world()
    callee = net.nodes[V6]
    since = net.now
    for relay in (("::1", 3478), ("fe80::1", 3478), ("ff02::1", 3478),
                  ("64:ff9b::7f00:1", 3478), ("fc00::1", 3478)):
        fwd = (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + bytes(20) + bytes(6)
               + relay_addresses.to_wire6(relay) + bytes(8))
        net.send(Packet(D6, V6, fwd))
    net.send(Packet(D6, V6, bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + bytes(26)
                    + relay_addresses.to_wire(Q4) + bytes(8)))
    net.run_until(net.now + 3.0)
    stats = callee._upper.paths.stats
    assert stats["relay_offer_refused"] == 5 and stats["relay_offer_unreachable"] == 1
    assert not [p for t, p in hops.log if t >= since and p.src == V6
                and p.payload[:2] == bytes((relay_wire.RELAY, relay_wire.KNOCK))]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=70), st.booleans(), st.integers(0, 255))
def test_allocated_and_hello_parse_by_size_and_the_client_never_raises(body, over6, flags):
    """Any ALLOCATED: well formed exactly at 34, 46 and 52 bytes; the fields cut by the
    datagram's family cover the message; the client takes or counts it, never raises. A HELLO
    with any flags byte draws a CHALLENGE whose cookie is bound to the flag."""
    import collections

    from kadtalk.node.relay.client import Held, RelayClient
    from kadtalk.node.relay.settings import RelaySettings

    data = bytes((relay_wire.RELAY, relay_wire.ALLOCATED)) + body
    ok = relay_wire.well_formed(data)
    assert ok == (len(data) in (34, 46, 52))
    if ok:
        reflexive, other = relay_wire.allocated_fields(data, over6)
        assert 28 + len(reflexive) + len(other or b"") == len(data)
    relay = D6 if over6 else D4
    client = RelayClient(identity("owner4"), RelaySettings(), collections.Counter(),
                         lambda *a: None, collections.deque())
    held = client.held[relay] = Held(relay, data[2:18].ljust(16, b"\0"))
    held.state = "allocating"
    if ok:
        client.on_answer(data, relay, 0.0)
        assert held.other is None or is_ipv6(held.other) != over6
    hello = relay_wire.hello(bytes(16), flags)
    assert len(hello) == 34 and relay_wire.well_formed(hello)
