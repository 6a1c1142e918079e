"""A call between two IPv6-only nodes behind stateful IPv6 firewalls (RFC 6092: inbound only
from a peer the host sent to within 120 s), relays off: whole nodes on MemoryNet with explicit
time. The caller's KEY_REQ is dropped at the callee's firewall until the callee, asked through
an IPv6 rendezvous (PUNCH6_REQ / PUNCH6_FWD, docs/protocol.md §20 "IPv6 hole punching"),
PUNCHes the caller: both firewalls are then open (simultaneous open). Without the IPv6 punch
the same call does not set up."""

from __future__ import annotations

from random import Random

import pytest

from kadtalk.node.relay import RelaySettings
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.node.traversal import PUNCH, PUNCH6_FWD, PUNCH6_REQ, TRAVERSAL, Traversal
from kadtalk.transport.memory import MemoryNet, Packet

from tests.node.relay.conftest import identity
from tests.node.relay.dht import WALL, Call

R = [("2001:db8:10%d::1" % i, 5004) for i in range(1, 5)]  # open IPv6 hosts
A, B = ("2001:db8:a::1", 5004), ("2001:db8:b::1", 5004)  # both behind firewalls


class Firewalls:
    """Route: 10 ms a hop; a datagram to a walled host passes only from a peer it sent to
    within `timeout` (a timer per peer, as sim/nat.py's DualStackNat); everything logged."""

    def __init__(self, walled: set, timeout: float = 120.0):
        self.walled, self.timeout = walled, timeout
        self.sent: dict[tuple, float] = {}
        self.log: list[tuple[float, Packet, bool]] = []

    def __call__(self, packet: Packet, now: float):
        src, dst = packet.src, packet.dst
        if src in self.walled:
            self.sent[(src, dst)] = now
        last = self.sent.get((dst, src))
        passes = dst not in self.walled or (last is not None and now - last <= self.timeout)
        self.log.append((now, packet, passes))
        return ((0.01, packet),) if passes else ()

    def forget(self, a, b) -> None:
        """`a` and `b` have sent each other nothing lately."""
        self.sent.pop((a, b), None)
        self.sent.pop((b, a), None)


def node(name: str) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(len(name)),
                RoutingSettings(ipv6=True), identity=me, clock_offset=WALL, traversal=True,
                relay_settings=RelaySettings(enabled=False))


def world() -> tuple[MemoryNet, Firewalls]:
    fw = Firewalls({A, B})
    net = MemoryNet(fw)
    for addr in R:
        net.attach(addr, node(f"open {addr[0]}"))
        net.nodes[addr].set_nat("none", addr)
    net.attach(A, node("alice"))
    net.attach(B, node("bob"))
    for addr in R + [A, B]:
        net.nodes[addr].keep_joined([R[0]] if addr != R[0] else [], net.now)
        net.settle(net.now)
        net.run_until(net.now + 1.0)
    # keep-alives: B's keep its neighbours' way in open; and each firewalled node's look-up of
    # its own ID, 60 s after its upkeep started (node/upkeep.py HOOD_FIRST), is over: its
    # requests to the other would open their firewalls to each other (the next comes 120 s on)
    net.run_until(net.now + 75.0)
    fw.forget(A, B)  # they are strangers to each other's firewalls now
    return net, fw


def ops(fw: Firewalls, since: float, op: int) -> list[tuple[Packet, bool]]:
    return [(p, passes) for t, p, passes in fw.log if t >= since
            and p.payload[:2] == bytes((TRAVERSAL, op))]


def test_two_firewalled_ipv6_hosts_call_directly_after_an_ipv6_punch():
    net, fw = world()
    since = net.now
    call = Call(net, a=A, b=B)
    assert call.connect(limit=10.0) == "talking"
    assert call.talking_at - since < 2.0  # the first KEY_REQ's retransmission got in
    assert call.path(A) == B and call.path(B) == A  # direct, no relay (relays are off)
    requests = ops(fw, since, PUNCH6_REQ)
    assert requests and all(p.src == A and p.dst in R for p, _ in requests)
    forwards = ops(fw, since, PUNCH6_FWD)
    assert any(p.dst == B and passes for p, passes in forwards)  # B's keep-alives let it in
    assert all(p.payload[22:40] == bytes.fromhex("20010db8000a00000000000000000001138c")
               for p, _ in forwards)  # naming A's address as the rendezvous saw it
    punches = [(p, passes) for p, passes in ops(fw, since, PUNCH) if p.src == B]
    assert punches and all(p.dst == A and passes for p, passes in punches)
    # the caller's first KEY_REQ was dropped at B's firewall: the punch was needed
    first = next(passes for t, p, passes in fw.log if t >= since and p.src == A
                 and p.dst == B and p.payload[:1] == b"\x02")
    assert not first
    sent, got = call.media(0.2)
    assert len(sent) >= 8 and len(got) >= 8  # audio both ways


def test_without_the_ipv6_punch_the_same_call_does_not_set_up(monkeypatch: pytest.MonkeyPatch):
    """The control: the same world with `punch6` sending nothing: the KEY_REQs die at B's
    firewall (the key exchange is still waiting, or over, when the punched call talked)."""
    monkeypatch.setattr(Traversal, "punch6", lambda self, *args: None)
    net, fw = world()
    since = net.now
    call = Call(net, a=A, b=B)
    assert call.connect(limit=2.0) != "talking"
    assert not ops(fw, since, PUNCH6_REQ)
    key_reqs = [passes for t, p, passes in fw.log if t >= since and p.src == A and p.dst == B
                and p.payload[:1] == b"\x02"]
    assert key_reqs and not any(key_reqs)
