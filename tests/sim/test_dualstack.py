"""IPv6 in the simulated network: the hosts' families, the stateful IPv6 firewall (sim/nat.py
`DualStackNat`) with explicit time, the addresses node code sees and the driver that carries
both families (sim/dualstack.py), and ROUTE6_RES carrying the simulator's IPv4 contacts."""

from random import Random

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.addresses import host_key, is_ipv6, subnet_key
from kadtalk.node.relay.addresses import Codec
from kadtalk.node.routing.messages import RouteResponse
from kadtalk.node.routing.route6 import decode_response, encode_response
from kadtalk.sim.dualstack import DualStackDriver, DualStackRegistry, MaskedLatency, v6_address
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import (DUAL_STACK, FILTERING, FULL_CONE, OPEN, SYMMETRIC, V4_ONLY, V6,
                             V6_ONLY, DualStackNat, NatTable)
from kadtalk.sim.network import make_network

TIMEOUT = 10.0


def hosts(*spec):
    """A DualStackNat of (NAT kind, family, firewalled) hosts."""
    nat = DualStackNat(TIMEOUT)
    for kind, family, walled in spec:
        nat.kinds.append(kind)
        nat.families.append(family)
        nat.firewalled.append(walled)
    return nat


# -- the IPv6 firewall: a state machine, against a reference ---------------------------------


def firewall_admits(walled, history, dst, src, now):
    """Reference: an open host takes everything; a firewalled one only from a peer it sent to
    within TIMEOUT (address-and-port-dependent filtering, a timer per peer)."""
    if not walled[dst]:
        return True
    sent = [t for t, s, r in history if s == dst and r == src]
    return bool(sent) and now - max(sent) <= TIMEOUT


@settings(max_examples=80, deadline=None)
@given(
    walled=st.lists(st.booleans(), min_size=2, max_size=6),
    steps=st.lists(st.tuples(st.floats(0, 8), st.integers(0, 5), st.integers(0, 5)), max_size=60),
)
def test_the_firewall_matches_the_reference(walled, steps):
    n = len(walled)
    nat = hosts(*[(OPEN, V6_ONLY, int(w)) for w in walled])
    history = []
    now = 0.0
    for gap, a, b in steps:
        now += gap
        src, dst = a % n, b % n
        for x in range(n):
            for y in range(n):
                assert nat.admits(x | V6, y | V6, now) == firewall_admits(walled, history, x, y, now)
        nat.outbound(src | V6, dst | V6, now)
        history.append((now, src, dst))


def test_a_firewall_opens_for_the_one_peer_until_the_timeout_exactly():
    nat = hosts((OPEN, V6_ONLY, 1), (OPEN, V6_ONLY, 0), (OPEN, DUAL_STACK, 0))
    a, b, c = 0 | V6, 1 | V6, 2 | V6
    assert not nat.admits(a, b, 0.0)  # unsolicited: dropped
    assert nat.admits(b, a, 0.0)  # an open host takes it
    nat.outbound(a, b, 5.0)
    assert nat.admits(a, b, 5.0) and nat.admits(a, b, 5.0 + TIMEOUT)
    assert not nat.admits(a, b, 5.0 + TIMEOUT + 1e-6)  # the state expired
    assert not nat.admits(a, c, 6.0)  # another peer: still filtered
    nat.outbound(a, b, 14.0)  # a refresh restarts the timer
    assert nat.admits(a, b, 14.0 + TIMEOUT)
    nat.forget(0)  # the host left: its state is gone
    assert not nat.admits(a, b, 15.0)


def test_the_ipv4_side_keeps_the_nat_rules_and_the_families_do_not_mix():
    # a dual-stack host behind a filtering NAT with a firewall, and an open IPv6-only one
    nat = hosts((FILTERING, DUAL_STACK, 1), (OPEN, DUAL_STACK, 0))
    plain = NatTable(TIMEOUT)
    plain.kinds.extend((FILTERING, OPEN))
    nat.outbound(0, 1, 0.0)  # over IPv4: opens the NAT, not the firewall
    plain.outbound(0, 1, 0.0)
    assert nat.admits(0, 1, 1.0) == plain.admits(0, 1, 1.0) is True
    assert not nat.admits(0 | V6, 1 | V6, 1.0)
    nat.outbound(0 | V6, 1 | V6, 2.0)  # over IPv6: opens the firewall, not the NAT
    assert nat.admits(0 | V6, 1 | V6, 3.0)
    assert nat.admits(0, 1, 3.0) and not nat.admits(0, 1, 10.5)  # the NAT's own timer
    assert nat.mapped() == 2


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), v6=st.floats(0, 1), firewall=st.floats(0, 1))
def test_families_are_drawn_with_their_shares_and_public_ipv4_hosts_have_open_ipv6(
        seed, v6, firewall):
    rng = Random(seed)
    nat = DualStackNat()
    for _ in range(400):
        nat.add_node(rng, 0.3, 0.2, 0.1)
        nat.add_family(rng, v6 / 2, v6 / 2, firewall)
    for kind, family, walled in zip(nat.kinds, nat.families, nat.firewalled):
        if family == V4_ONLY or (family == DUAL_STACK and kind == OPEN):
            assert not walled
    if v6 == 0:
        assert set(nat.families) <= {V4_ONLY}
    if firewall == 1:  # every IPv6 host not on public IPv4 is behind a firewall
        assert all(w for k, f, w in zip(nat.kinds, nat.families, nat.firewalled)
                   if f == V6_ONLY or (f == DUAL_STACK and k != OPEN))


def test_shares_out_of_range_are_refused():
    with pytest.raises(ValueError):
        DualStackNat().add_family(Random(1), 0.7, 0.5, 1.0)
    with pytest.raises(ValueError):
        DualStackNat().add_family(Random(1), 0.1, 0.1, 1.5)


# -- addresses and the registry ----------------------------------------------------------------


def test_each_node_has_its_own_slash_64_and_256_share_a_slash_48():
    addrs = [v6_address(n) for n in range(600)]
    assert all(is_ipv6(a) for a in addrs)
    assert len({host_key(a[0]) for a in addrs}) == 600
    assert len({subnet_key(a[0]) for a in addrs}) == 3  # 0-255, 256-511, 512-599
    assert v6_address(5) == ("fd00:0:0:5::1", 5004)


def test_both_families_are_private_to_the_relays_as_a_lan_is():
    """A relay names its private other-family address only to a private owner (9b424a2): the
    simulated IPv6 addresses must be private as the IPv4 ones (10.0.0.0/8) are, else no
    simulated relay names its IPv4 side to an IPv6-only owner (v6 -> v4 calls unreachable)."""
    codec = Codec(DualStackRegistry([10, 20, 30]))
    for addr in (1, v6_address(1)):
        assert codec.forbidden(addr, None, (), False) == "forbidden_private"
        assert codec.forbidden(addr, None, (), True) is None  # SIM_RELAYS' forward_private


def test_the_registry_interns_ipv6_tuples_beside_the_integers():
    reg = DualStackRegistry([10, 20, 30])
    six = v6_address(1)
    h = reg.intern(20, six)
    assert h == 3 and reg.intern(20, six) == h and reg.intern(20, 1) == 1
    assert reg.handles_at(six) == [h] and reg.handles_at(1) == [1]
    assert reg.addr_to_wire(six) is None and len(reg.addr_to_wire(1)) == 6
    assert reg.subnet(six) == subnet_key(six[0]) and reg.subnet(1) == 0


def test_route6_res_carries_the_simulators_ipv4_contacts_beside_ipv6_ones():
    """ROUTE6_RES's IPv4 entries use the registry's 6-byte form, as ROUTE_RES's do (a
    node/routing/route6.py change: before, a simulated IPv4 contact was left out)."""
    reg = DualStackRegistry([10, 20, 30])
    contacts = ((20, 1), (30, v6_address(2)), (10, 0))
    data = encode_response(RouteResponse(99, 7, contacts, True), reg.addr_to_wire)
    msg, skipped = decode_response(data, addr_from_wire=reg.addr_from_wire)
    assert skipped == 0 and msg.contacts == contacts
    msg, skipped = decode_response(data, ipv6=False, addr_from_wire=reg.addr_from_wire)
    assert skipped == 1 and msg.contacts == ((20, 1), (10, 0))


# -- the driver ------------------------------------------------------------------------------


class Recorder:
    """A stand-in node: sends what it is told, records what arrives and from where."""

    def __init__(self):
        self.out, self.got = [], []

    def datagrams_to_send(self, now):
        out, self.out = self.out, []
        return out

    def receive_datagram(self, data, addr, now):
        self.got.append((data, addr, now))

    def next_event(self):
        return None

    def get_timer(self):
        return None


def network_of(nat):
    env = simpy.Environment()
    net = make_network(env, MaskedLatency(ConstantLatency(0.01)), Random(1), nat=nat)
    driver = DualStackDriver(env, net)
    nodes = [Recorder() for _ in nat.families]
    for node in nodes:
        driver.add(node)
    return env, driver, nodes


def test_each_family_is_carried_only_between_hosts_that_have_it():
    # 0: IPv4-only public, 1: IPv6-only open, 2: dual-stack public, 3: IPv6-only firewalled
    nat = hosts((OPEN, V4_ONLY, 0), (OPEN, V6_ONLY, 0), (OPEN, DUAL_STACK, 0),
                (OPEN, V6_ONLY, 1))
    env, driver, nodes = network_of(nat)
    six = [v6_address(n) for n in range(4)]
    nodes[0].out = [(b"a", 2), (b"b", 1), (b"c", six[2])]  # IPv4 to 2; 1 has no IPv4; no IPv6
    nodes[1].out = [(b"d", six[2]), (b"e", 0), (b"f", six[3])]  # IPv6 to 2; no IPv4 route
    nodes[2].out = [(b"g", six[1]), (b"h", 0)]
    for n in range(3):
        driver.service(n)
    env.run(until=1.0)
    assert nodes[2].got == [(b"a", 0, 0.01), (b"d", six[1], 0.01)]
    assert nodes[1].got == [(b"g", six[2], 0.01)] and nodes[0].got == [(b"h", 2, 0.01)]
    assert nodes[3].got == []  # its firewall dropped the unsolicited datagram
    assert driver.no_route == 3 and nat.filtered == 1
    nodes[3].out = [(b"i", six[1])]  # once it has sent to 1, 1's answer gets in
    driver.service(3)
    nodes[1].out = [(b"j", six[3])]
    driver.service(1)
    env.run(until=2.0)
    assert nodes[3].got == [(b"j", six[1], 1.01)]
