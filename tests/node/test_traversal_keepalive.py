"""The keep-alive plan by NAT kind (docs/protocol.md §20), explicit `now`: no NAT, an address
check every few minutes; endpoint-independent filtering (seen: a stranger's datagram got in),
a mapping refresh through two peers; address-dependent filtering, symmetric or not known yet,
the 16 nearest every 20 s. AddressObserved only when something changed. And in the simulator,
the same code keeps a filtering node's rendezvous and a full-cone node's mapping open."""

from __future__ import annotations

import random

import simpy

from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import ADDR_REQ, ADDR_RES, TRAVERSAL, AddressObserved, TraversalSettings
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import FILTERING, FULL_CONE, OPEN, NatTable
from kadtalk.sim.network import make_network
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

PEERS = [(f"10.0.1.{i}", 5004) for i in range(1, 25)]  # 24 contacts
STRANGER = ("198.51.100.7", 5004)
PUBLIC = ("203.0.113.9", 5004)


def node(settings: TraversalSettings | None = None) -> Node:
    ident = Identity.generate()
    n = Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
             identity=ident, traversal=True, traversal_settings=settings)
    for i, addr in enumerate(PEERS):
        n.add_contact(random.Random(i).getrandbits(160), addr, 0.0)
    n.keep_joined([], 0.0)  # upkeep on: keep-alives start at once (the table has contacts)
    return n


def probes(n: Node, until: float, start: float | None = None) -> list[tuple[float, tuple]]:
    """(time, peer) of every ADDR_REQ the node sends up to `until` (from `start`: what it
    queued then, as `keep_joined` probes at once), its timer driving it; each peer answers at
    once, seeing the node at PUBLIC."""
    out = []
    due = start if start is not None else n.get_timer()
    while due is not None and due <= until:
        if due != start:
            n.handle_timer(due)
        for data, to in n.datagrams_to_send(due):
            if data[:2] == bytes((TRAVERSAL, ADDR_REQ)):
                out.append((due, to))
                answer = bytes((TRAVERSAL, ADDR_RES)) + data[2:10] + bytes((203, 0, 113, 9)) \
                    + (5004).to_bytes(2, "big")
                n.receive_datagram(answer, to, due + 0.05)
        n.datagrams_to_send(due + 0.05)
        due = n.get_timer()
    return out


def rounds(sent: list[tuple[float, tuple]]) -> list[tuple[float, int]]:
    """(time, peers asked) of each keep-alive round."""
    times = sorted({t for t, _ in sent})
    return [(t, sum(1 for s, _ in sent if s == t)) for t in times]


def test_not_known_yet_or_address_dependent_filtering_keeps_the_16_nearest_every_20_s():
    n = node()
    assert rounds(probes(n, 60.0, start=0.0)) == [(0.0, 16), (20.0, 16), (40.0, 16), (60.0, 16)]
    n.traversal.set_nat("cone")  # behind a NAT, its filtering not known: no change
    assert rounds(probes(n, 100.0)) == [(80.0, 16), (100.0, 16)]
    assert n.traversal.watching and not n.traversal.independent


def test_a_node_not_behind_a_nat_checks_its_address_every_few_minutes():
    n = node()
    first = probes(n, 0.0, start=0.0)
    assert len(first) == 16
    n.traversal.set_nat("none")  # the owner: our observers see our local address
    assert n.traversal.get_timer() == 300.0  # from the latest keep-alive on
    assert probes(n, 299.0) == []
    assert rounds(probes(n, 900.0)) == [(300.0, 2), (600.0, 2), (900.0, 2)]
    settings = TraversalSettings(address_check_interval=60.0, check_peers=3)
    m = node(settings)
    probes(m, 0.0, start=0.0)
    m.traversal.set_nat("none")
    assert rounds(probes(m, 120.0)) == [(60.0, 3), (120.0, 3)]


def test_endpoint_independent_filtering_refreshes_one_mapping_through_two_peers():
    n = node()
    probes(n, 0.0, start=0.0)
    n.traversal.set_nat("cone")
    # answers from peers we asked, and a datagram from a peer's host at another port, prove
    # nothing: an address-dependent filter admits them too
    peer = n.traversal.keepalive_peers()[3]
    n.receive_datagram(bytes((TRAVERSAL, ADDR_REQ)) + bytes(14), (peer[0], 6000), 1.0)
    n.datagrams_to_send(1.0)
    assert not n.traversal.independent
    # a host we never sent to got through: the NAT filters independently of the endpoint
    n.receive_datagram(bytes((TRAVERSAL, ADDR_REQ)) + bytes(14), STRANGER, 2.0)
    assert n.traversal.independent and not n.traversal.watching
    assert rounds(probes(n, 60.0)) == [(20.0, 2), (40.0, 2), (60.0, 2)]
    # the same peers each time: the nearest (any datagram out refreshes the one mapping)
    assert len({to for _, to in probes(n, 100.0)}) == 2
    # told symmetric (a mapping per destination): back to the 16 nearest
    n.traversal.set_nat("symmetric")
    assert rounds(probes(n, 120.0)) == [(120.0, 16)]


def test_a_new_public_address_voids_what_was_seen_of_the_old_nat():
    n = node()
    probes(n, 0.0, start=0.0)
    n.receive_datagram(bytes((TRAVERSAL, ADDR_REQ)) + bytes(14), STRANGER, 1.0)
    assert n.traversal.independent
    events = []
    while (e := n.next_event()) is not None:
        events.append(e)
    assert [type(e) for e in events] == [AddressObserved]  # 16 answers, one change
    # the next refresh asks two peers; the other fourteen views go (they would outvote them)
    n.handle_timer(20.0)
    asked = [to for data, to in n.datagrams_to_send(20.0) if data[1] == ADDR_REQ]
    assert len(asked) == 2 and set(n.traversal.observed) == set(asked)
    # both now see us elsewhere (another network): from then on, the safe plan
    n.traversal.probe(asked, 21.0)
    for data, to in n.datagrams_to_send(21.0):
        n.receive_datagram(bytes((TRAVERSAL, ADDR_RES)) + data[2:10]
                           + bytes((198, 51, 100, 1)) + (5004).to_bytes(2, "big"), to, 21.1)
    assert n.traversal.public == ("198.51.100.1", 5004)
    assert not n.traversal.independent
    assert n.traversal.keepalive_plan() == (16, 20.0)
    changed = []
    while (e := n.next_event()) is not None:
        changed.append(e)
    # each answer that moved an observer's view is told
    assert len(changed) == 2 and changed[-1].public == ("198.51.100.1", 5004)


def test_watching_stops_past_its_limit_and_stays_on_the_safe_plan():
    n = node(TraversalSettings(watch_limit=30))
    probes(n, 0.0, start=0.0)
    n.probe_address([(f"10.0.2.{i}", 5004) for i in range(20)], 1.0)  # 16 + 20 destinations
    n.datagrams_to_send(1.0)
    assert not n.traversal.watching and not n.traversal.independent
    n.receive_datagram(bytes((TRAVERSAL, ADDR_REQ)) + bytes(14), STRANGER, 2.0)
    assert not n.traversal.independent  # no longer watched: it cannot tell
    assert n.traversal.keepalive_plan() == (16, 20.0)


def test_repeated_answers_emit_no_event():
    n = node()
    probes(n, 40.0, start=0.0)  # three rounds of 16 answers, all the same view
    events = []
    while (e := n.next_event()) is not None:
        events.append(e)
    assert [(type(e), e.public) for e in events] == [(AddressObserved, PUBLIC)]
    assert n.traversal.stats["addr_req_sent"] == 48


def _sim_world(kinds: list[int], nat_timeout: float = 30.0):
    env = simpy.Environment()
    rng = random.Random(7)
    identities = [derive_identity(rng) for _ in kinds]
    ids = [int.from_bytes(i.node_id, "big") for i in identities]
    registry = SharedRegistry(list(ids))
    nat = NatTable(timeout=nat_timeout)
    nat.kinds.extend(kinds)
    driver = SimDriver(env, make_network(env, ConstantLatency(0.02), random.Random(2), nat=nat))
    nodes = [Node(ids[a], registry, random.Random(a), identity=identity, traversal=True)
             for a, identity in enumerate(identities)]
    for node_ in nodes:
        driver.add(node_)
    for addr, node_ in enumerate(nodes):
        node_.keep_joined([0] if addr else [], env.now)
        driver.service(addr)
    return env, nat, nodes


def test_in_the_simulator_the_same_code_keeps_filtering_and_full_cone_nodes_reachable():
    """24 public nodes, two full-cone, two filtering, 30 s mappings, ten minutes: a
    filtering node keeps every rendezvous open with the 16 nearest every 20 s; a full-cone node
    sees a stranger's datagram, refreshes its one mapping through two peers, and anyone reaches
    it; the open nodes find strangers get in too."""
    kinds = [OPEN] * 24 + [FULL_CONE] * 2 + [FILTERING] * 2
    env, nat, nodes = _sim_world(kinds)
    env.run(until=600.0)
    for addr in (26, 27):
        traversal = nodes[addr].traversal
        assert not traversal.independent and traversal.keepalive_plan() == (16, 20.0)
        rendezvous = traversal.keepalive_peers()
        assert rendezvous and all(nat.admits(addr, r, env.now) for r in rendezvous)
        assert traversal.stats["keepalive"] >= 600 / 20  # a round every 20 s
        assert not all(nat.admits(addr, other, env.now) for other in range(28))
    for addr in (24, 25):
        traversal = nodes[addr].traversal
        assert traversal.independent and traversal.keepalive_plan() == (2, 20.0)
        assert all(nat.admits(addr, other, env.now) for other in range(28))
        assert traversal.stats["addr_req_sent"] <= 16 + 600 / 20 * 2 + 2
    assert all(nodes[a].traversal.independent for a in range(24))
