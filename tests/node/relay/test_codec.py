"""Relay addresses through a node's registry (relay/addresses.py `Codec`), with explicit time.

The daemon's registry must give exactly the rules the relay had for (host, port) tuples, and the
simulator's integer addresses (sim/registry.py: 10.0.0.0 + i, flow ports of symmetric NATs) must
run the same relay code: an allocation, a knock, a permission and DATA both ways.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.relay import (AllocationGranted, Knocked, RelayedData, RelayLayer, RelayPath,
                                RelaySettings)
from kadtalk.node.relay import addresses
from kadtalk.node.relay.addresses import IPV4, Codec
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.sim.registry import SharedRegistry, flow_address
from kadtalk.transport.memory import MemoryNet

from .conftest import identity

DAEMON = Codec(ContactRegistry())
SIM = Codec(SharedRegistry(list(range(16))))

hosts = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
    st.sampled_from(["1", "1.2.3", "01.2.3.4", "localhost", "", "1.2.3.4.5", "::ffff:1.2.3.4"]))
ports = st.one_of(st.integers(-5, 70_000), st.sampled_from([0, 1, 65535, 65536]))
tuples = st.tuples(hosts, ports)
anything = st.one_of(tuples, st.none(), st.integers(), st.text(max_size=5),
                     st.tuples(hosts), st.tuples(hosts, ports, ports))


@given(anything)
def test_the_daemons_registry_gives_the_relay_its_own_tuple_rules(addr):
    assert DAEMON.to_wire(addr) == IPV4.to_wire(addr)


@given(tuples, tuples, st.lists(tuples, max_size=2), st.booleans())
def test_the_daemons_registry_forbids_what_the_tuple_rules_forbid(peer, owner, own, private):
    assert DAEMON.forbidden(peer, owner, own, private) == \
        addresses.forbidden(peer, owner, own, private)


def test_simulated_addresses_travel_as_their_registry_writes_them():
    assert SIM.to_wire(3) == bytes([10, 0, 0, 3, 0x13, 0x8C])  # 10.0.0.3:5004
    assert SIM.from_wire(SIM.to_wire(3)) == 3
    flow = flow_address(3, 41_000)
    assert SIM.from_wire(SIM.to_wire(flow)) == flow and SIM.host(flow) == SIM.host(3)
    assert SIM.to_wire(("10.0.0.3", 5004)) is None  # not a simulated address: no spelling
    # 10.0.0.0/8 is private: a relay forwards there only with forward_private (the LAN setting)
    assert SIM.forbidden(3, 4, (), False) == "forbidden_private"
    assert SIM.forbidden(3, 4, (), True) is None
    assert SIM.forbidden(3, 3, (), True) == "forbidden_self"  # the owner itself
    assert SIM.forbidden(flow, 4, (3,), True) == "forbidden_self"  # the relay's own host


def test_a_relay_runs_on_simulated_addresses():
    """Owner 1 allocates at relay 0, peer 2 (seen at a flow port) knocks, 1 permits it, and
    DATA goes both ways: the relay's code unchanged, the addresses the simulator's."""
    settings = RelaySettings(forward_private=True)
    net = MemoryNet()
    relay = RelayLayer(identity("relay"), settings, codec=SIM)
    relay.set_public([0])
    owner = RelayLayer(identity("a"), settings, codec=SIM)
    peer = RelayLayer(identity("b"), settings, codec=SIM)
    peer_at = flow_address(2, 45_000)
    for addr, layer in ((0, relay), (1, owner), (peer_at, peer)):
        net.attach(addr, layer)
    owner.allocate(0, 0.0)
    net.settle(0.0)
    (granted,) = [e for e in net.events[1] if type(e) is AllocationGranted]
    path = granted.path
    assert type(path) is RelayPath and path.relay == 0
    peer.knock(path, 0.1)
    net.settle(0.1)
    (knocked,) = [e for e in net.events[1] if type(e) is Knocked]
    assert knocked.peer == peer_at  # where the relay sees the knocker
    owner.permit(path, knocked.peer, 0.2)
    net.settle(0.2)
    assert owner.send(path, b"\x04hello", 0.3)
    net.settle(0.3)
    assert [e.payload for e in net.events[peer_at] if type(e) is RelayedData] == [b"\x04hello"]
    assert peer.send(path, b"\x04back", 0.4)
    net.settle(0.4)
    assert [e.payload for e in net.events[1] if type(e) is RelayedData] == [b"\x04back"]
    assert relay.stats["forwarded"] == 2 and relay.stats["forwarded_bytes"] > len(b"\x04hello")
    assert relay.drop_counts() == {}
    assert relay.server.allocations[path.allocation].host == SIM.host(1)


@given(st.ip_addresses(v=6), st.integers(1, 65535))
def test_an_ipv6_address_has_one_18_byte_spelling(ip, port):
    import socket

    text = socket.inet_ntop(socket.AF_INET6, ip.packed)  # the UDP driver's spelling
    wire = DAEMON.to_wire((text, port))
    assert wire == ip.packed + port.to_bytes(2, "big")
    assert DAEMON.from_wire(wire) == (text, port) and IPV4.to_wire((text, port)) == wire
    assert DAEMON.host((text, port)) == ip.packed[:8]  # caps count its /64
    assert DAEMON.to_wire((text.upper(), port)) in (None, wire)  # another spelling: none
    assert DAEMON.to_wire((text, 0)) is None and DAEMON.from_wire(ip.packed + bytes(2)) is None


@given(st.ip_addresses(v=6), st.ip_addresses(v=6))
def test_two_ipv6_addresses_are_one_host_exactly_when_they_share_a_slash_64(a, b):
    import socket

    ha = DAEMON.host((socket.inet_ntop(socket.AF_INET6, a.packed), 5004))
    hb = DAEMON.host((socket.inet_ntop(socket.AF_INET6, b.packed), 5004))
    assert (ha == hb) == (a.packed[:8] == b.packed[:8])
    assert len(ha) == 8 and ha != DAEMON.host(("192.0.2.1", 5004))


def test_non_canonical_and_scoped_ipv6_spellings_have_no_wire_form():
    for host in ("2001:DB8::1", "2001:db8:0::1", "2001:0db8::1", "fe80::1%eth0", "[2001:db8::1]"):
        assert DAEMON.to_wire((host, 5004)) is None, host
    assert DAEMON.forbidden(("2001:DB8::1", 5004), ("192.0.2.1", 1), (), False) == \
        "forbidden_peer"


def test_an_embedded_ipv4_is_compared_with_own_addresses_in_the_registrys_form():
    """A relay's own addresses may be a registry's (the simulator's integers): the NAT64, 6to4
    and Teredo forms of its IPv4 are its own host all the same (relay/addresses.py)."""
    for v6 in ("64:ff9b::a00:3", "2002:a00:3::1", "2001:0:4136:e378:8000:63bf:f5ff:fffc"):
        assert SIM.forbidden((v6, 5004), 4, (3,), True) == "forbidden_self", v6  # 10.0.0.3
        assert SIM.forbidden((v6, 5004), 4, (5,), True) is None, v6
        assert SIM.forbidden((v6, 5004), 4, (3,), False) == "forbidden_private", v6
