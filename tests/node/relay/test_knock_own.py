"""A callee knocks at the relay an offer names (`Node._offered`) unless it is special, private,
or its own: any port of its own host, IPv6: its /64 (`Codec.forbidden`'s host rule). Its own
addresses are the ones the owner names (`Node.set_nat(own=)`, whatever the NAT kind: the daemon
names them at start, since an IPv6-only daemon never gets an AddressObserved). Review R1
(session 8): before, only traversal's public address counted (none on an IPv6-only node), so a
contact could make an IPv6 callee knock at its own sshd or at its LAN neighbours."""

from __future__ import annotations

from kadtalk.node.relay import addresses as relay_addresses
from kadtalk.node.relay import wire as relay_wire
from kadtalk.node.traversal import PUNCH_FWD_RELAY, TRAVERSAL
from kadtalk.transport.memory import Packet

from .test_families import D6, V6, world


def offer(relay, n: int) -> bytes:
    """A PUNCH_FWD_RELAY naming `relay` (IPv6) and allocation n x 8."""
    return (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + bytes([n]) * 20 + bytes(6)
            + relay_addresses.to_wire6(relay) + bytes([n]) * 8)


def knocks(hops, since):
    return [(p.dst, len(p.payload)) for t, p in hops.log if t >= since and p.src == V6
            and p.payload[:2] == bytes((relay_wire.RELAY, relay_wire.KNOCK))]


def test_an_offer_naming_the_callees_own_host_or_its_64_draws_no_knock():
    net, hops = world()
    callee = net.nodes[V6]
    callee.set_nat("unknown", None, own=(V6,))  # as the daemon at start: NAT not known yet
    since = net.now
    targets = [(V6[0], 22), ("2001:db8:2::2", 631)]  # its own host's sshd; a LAN neighbour
    for i, relay in enumerate(targets, 1):
        net.send(Packet(D6, V6, offer(relay, i)))  # from a contact (D is in its table)
    net.run_until(net.now + 3.0)
    assert not knocks(hops, since)
    assert callee._upper.paths.stats["relay_offer_refused"] == 2
    # another /64 draws its knock: the rule is about our own host, nothing wider
    net.send(Packet(D6, V6, offer(("2001:db8:3::1", 5004), 3)))
    net.run_until(net.now + 3.0)
    assert {dst for dst, _ in knocks(hops, since)} == {("2001:db8:3::1", 5004)}


def test_a_natted_nodes_own_addresses_stay_known():
    """set_nat(kind, public, own): the own addresses count whatever the kind, not only for a
    public node (whose relay also refuses to forward to them)."""
    net, _ = world()
    callee = net.nodes[V6]
    callee.set_nat("cone", None, own=(V6, None))
    assert callee._own_addresses() == (V6,)


def test_the_daemon_names_its_addresses_at_start(tmp_path, monkeypatch):
    """An IPv6-only daemon gets no AddressObserved (the address probes are IPv4): it names its
    addresses (bound one, each family's route source) to its node at start."""
    from random import Random
    from types import SimpleNamespace

    import kadtalk.app.network as network_module
    from kadtalk.app.config import load_config
    from kadtalk.node.identity import Identity
    from kadtalk.node.routing.contacts import ContactRegistry
    from kadtalk.node.stack import Node

    monkeypatch.setattr(network_module, "route_sources", lambda towards: ["2001:db8:7::2"])
    (tmp_path / "config.toml").write_text("")
    me = Identity.generate()
    node = Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1), identity=me,
                traversal=True)
    net = network_module.Network(load_config(tmp_path / "config.toml", tmp_path),
                                 callers=None, broadcast=lambda event: None)
    net.start(SimpleNamespace(node=node, address=("::", 5004)), 0.0)
    assert node._own_addresses() == (("2001:db8:7::2", 5004),)
    assert net.nat == "unknown" and not node.relay.serving  # nothing else changes
    assert node.relay.codec.forbidden(("2001:db8:7::99", 22), None, node._own_addresses(),
                                      False) == "forbidden_self"
