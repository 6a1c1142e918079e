"""The keep-alive plan by NAT kind (docs/protocol.md §20), explicit `now`: no NAT, an address
check every few minutes; endpoint-independent filtering (seen: a stranger's PROBE of our own
reachability check got in, lately), a mapping refresh through two peers; address-dependent
filtering, symmetric or not known yet, the 16 nearest every 20 s. Any other datagram, garbage
or well-formed, from a LAN host, over IPv6 or from the public side, proves nothing. Only IPv4
peers are kept or asked to punch (traversal drops IPv6). AddressObserved only when something
changed. And in the simulator, the same code keeps a filtering node's rendezvous and a
full-cone node's mapping open."""

from __future__ import annotations

import random

import simpy

from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.traversal import (
    ADDR_REQ,
    ADDR_RES,
    PROBE,
    PROBE_REQ,
    PUNCH_REQ,
    TRAVERSAL,
    AddressObserved,
    TraversalSettings,
    choose_rendezvous,
)
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import FILTERING, FULL_CONE, OPEN, NatTable
from kadtalk.sim.network import make_network
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

PEERS = [(f"10.0.1.{i}", 5004) for i in range(1, 25)]  # 24 contacts
STRANGER = ("198.51.100.7", 5004)
PUBLIC = ("203.0.113.9", 5004)


def is_traversal(datagram: bytes, kind: int) -> bool:
    """A traversal message of `kind`: its first byte says traversal, its second the kind (a
    routing datagram's second byte is its sender's ID's first, random here: 1 in 256 a match)."""
    return datagram[0] == TRAVERSAL and datagram[1] == kind


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


def stranger_probe(n: Node, now: float, source: tuple = STRANGER) -> None:
    """Our own reachability check, and its PROBE from `source` (a host we never sent to)."""
    n.traversal.check_reachability([PEERS[0]], now)
    n.datagrams_to_send(now)
    nonce = next(iter(n.traversal._checks))
    n.receive_datagram(bytes((TRAVERSAL, PROBE)) + nonce, source, now + 0.1)


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
    stranger_probe(n, 1.5, source=(peer[0], 6000))  # a PROBE from a host we sent to: nothing
    assert not n.traversal.independent
    # a PROBE of our check from a host we never sent to got through: the NAT filters
    # independently of the endpoint
    stranger_probe(n, 2.0)
    assert n.traversal.independent and n.traversal.watching  # it goes on, for the re-checks
    assert rounds(probes(n, 60.0)) == [(20.0, 2), (40.0, 2), (60.0, 2)]
    # the same peers each time: the nearest (any datagram out refreshes the one mapping)
    assert len({to for _, to in probes(n, 100.0)}) == 2
    # told symmetric (a mapping per destination): back to the 16 nearest
    n.traversal.set_nat("symmetric")
    assert rounds(probes(n, 120.0)) == [(120.0, 16)]


def test_a_new_public_address_voids_what_was_seen_of_the_old_nat():
    n = node()
    probes(n, 0.0, start=0.0)
    stranger_probe(n, 1.0)
    assert n.traversal.independent
    events = []
    while (e := n.next_event()) is not None:
        events.append(e)
    assert [type(e) for e in events] == [AddressObserved]  # 16 answers, one change
    # the next refresh asks two peers; the other fourteen views go (they would outvote them)
    n.handle_timer(20.0)
    asked = [to for data, to in n.datagrams_to_send(20.0) if is_traversal(data, ADDR_REQ)]
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
    stranger_probe(n, 2.0)
    assert not n.traversal.independent  # no longer watched: it cannot tell
    assert n.traversal.reachability().unclear == 1
    assert n.traversal.keepalive_plan() == (16, 20.0)


def test_repeated_answers_emit_no_event():
    n = node()
    probes(n, 40.0, start=0.0)  # three rounds of 16 answers, all the same view
    events = []
    while (e := n.next_event()) is not None:
        events.append(e)
    assert [(type(e), e.public) for e in events] == [(AddressObserved, PUBLIC)]
    assert n.traversal.stats["addr_req_sent"] == 48


def test_no_datagram_but_a_stranger_s_probe_moves_a_filtering_node_off_the_safe_plan():
    """Review finding: one datagram (garbage, empty, over IPv6, from a LAN host or a
    well-formed request from the public side) from a host never sent to switched a filtering
    node to two peers for good. Only a PROBE carrying our nonce may, and not from a source on
    our side of a NAT."""
    stray = [(b"\xff", ("192.168.1.66", 1)), (b"", ("2001:db8::66", 4444)),
             (b"\x01" + bytes(30), ("::ffff:10.0.1.1", 5004)),
             (bytes((TRAVERSAL, ADDR_REQ)) + bytes(14), STRANGER),
             (bytes((TRAVERSAL, PROBE)) + bytes(8), STRANGER)]  # a nonce not ours
    for data, source in stray:
        n = node()
        probes(n, 0.0, start=0.0)
        n.traversal.set_nat("cone")
        n.receive_datagram(data, source, 1.0)
        n.datagrams_to_send(1.0)
        assert n.traversal.keepalive_plan() == (16, 20.0), (data, source)
        assert rounds(probes(n, 40.0)) == [(20.0, 16), (40.0, 16)]
    for inside in [("192.168.1.66", 5004), ("10.9.9.9", 5004), ("100.64.1.2", 5004),
                   ("169.254.1.1", 5004), ("127.0.0.1", 5004), ("2001:db8::66", 5004)]:
        n = node()
        probes(n, 0.0, start=0.0)
        stranger_probe(n, 1.0, source=inside)  # our nonce, but it need not have crossed a NAT
        assert n.traversal.keepalive_plan() == (16, 20.0), inside
        assert n.traversal.reachability().unclear == 1


def test_a_cone_node_checks_its_reachability_itself_and_evidence_grows_old():
    """Behind a cone NAT the keep-alive timer runs the reachability check through the two
    nearest: from one `address_check_interval` after the start, at most once an interval, and
    not while strangers have shown the filtering lately; evidence holds for two intervals: a
    node that stops seeing strangers goes back to the 16 nearest."""
    n = node()
    n.traversal.set_nat("cone")

    def checks(start: int, end: int) -> list[tuple[int, bytes, tuple]]:
        found = []
        for t in range(start, end + 1, 20):
            n.handle_timer(float(t))
            found += [(t, d, to) for d, to in n.datagrams_to_send(float(t))
                      if is_traversal(d, PROBE_REQ)]
        return found

    assert checks(0, 280) == []  # the first interval after the start: none
    asked = checks(300, 300)
    assert [to for _, _, to in asked] == n.traversal.keepalive_peers()[:2]
    # a helper forwards (PROBE_ACK) and a stranger's PROBE with our nonce comes in
    nonce = asked[0][1][2:10]
    n.receive_datagram(bytes((TRAVERSAL, 0x0C)) + nonce, asked[0][2], 300.1)
    n.receive_datagram(bytes((TRAVERSAL, PROBE)) + nonce, STRANGER, 300.2)
    assert n.traversal.independent and n.traversal.keepalive_plan() == (2, 20.0)
    # the next check at the first round 300 s past the evidence; nothing comes of it
    assert [t for t, _, _ in checks(320, 900)] == [620, 620]
    assert n.traversal.independent  # 300.2 s + 600 s not yet past
    n.handle_timer(920.0)
    sent = [to for data, to in n.datagrams_to_send(920.0) if is_traversal(data, ADDR_REQ)]
    assert not n.traversal.independent and len(sent) == 16


def test_well_formed_requests_from_two_public_strangers_show_the_filtering():
    """Without a check: well-formed requests (here ADDR_REQ) from `stranger_hosts` (2)
    public hosts never sent to; one is not enough (a peer behind a CGNAT pool may answer from
    another address), nor two ports of one host, nor a malformed one."""
    n = node()
    probes(n, 0.0, start=0.0)
    request = bytes((TRAVERSAL, ADDR_REQ)) + bytes(14)
    n.receive_datagram(request, STRANGER, 1.0)
    n.receive_datagram(request, (STRANGER[0], 7000), 1.0)
    n.receive_datagram(request[:-1], ("198.51.100.8", 5004), 1.0)  # malformed
    n.receive_datagram(b"\x00" + bytes(10), ("198.51.100.9", 5004), 1.0)  # malformed routing
    assert not n.traversal.independent
    n.receive_datagram(request, ("192.0.2.1", 5004), 1.5)
    assert n.traversal.independent
    assert rounds(probes(n, 40.0)) == [(20.0, 2), (40.0, 2)]


def test_an_owner_s_check_in_flight_is_left_alone():
    """`kadtalk doctor`'s check is not cut short by the timer's (it would forget its nonces)."""
    n = node()
    n.traversal.set_nat("cone")
    n.traversal.check_reachability([PEERS[0]], 299.0)
    n.datagrams_to_send(299.0)
    nonce = next(iter(n.traversal._checks))
    n.handle_timer(300.0)  # its own would be due now
    assert [d for d, _ in n.datagrams_to_send(300.0) if is_traversal(d, PROBE_REQ)] == []
    assert nonce in n.traversal._checks
    n.handle_timer(600.0)
    assert len([d for d, _ in n.datagrams_to_send(600.0) if is_traversal(d, PROBE_REQ)]) == 2


def _dual_stack_node() -> Node:
    ident = Identity.generate()
    own = int.from_bytes(ident.node_id, "big")
    n = Node(own, ContactRegistry(), random.Random(1), RoutingSettings(ipv6=True), identity=ident,
             traversal=True)
    rng = random.Random(5)
    for i in range(24):  # half IPv6, half IPv4, interleaved by distance
        addr = (f"2001:db8:{i + 1:x}::1", 5004) if i % 2 == 0 else (f"198.51.100.{i + 1}", 5004)
        assert n.add_contact(own ^ rng.getrandbits(150 + i % 3), addr, 0.0)
    return n


def test_keepalives_count_each_family_and_rendezvous_are_ipv4_peers_only():
    """Review finding: 7 of a dual-stack node's 16 ADDR_REQs went to IPv6 contacts, and the
    full-cone plan's two peers could both be IPv6 (nothing refreshed the IPv4 mapping). The
    IPv4 peers are counted on their own: the plan's number of them, and besides (session 9) the
    16 nearest IPv6 ones, for a stateful IPv6 firewall (it filters by peer whatever the NAT's
    filtering: two IPv6 peers would not do for a full-cone NAT's plan)."""
    n = _dual_stack_node()
    n.keep_joined([], 0.0)
    asked = [to for data, to in n.datagrams_to_send(0.0) if data[:2] == bytes((TRAVERSAL, ADDR_REQ))]
    four = [to for to in asked if ":" not in to[0]]
    assert len(four) == 12  # all 12 IPv4 ones
    assert sorted(set(asked) - set(four)) == sorted(a for a in n.routing.registry.addrs
                                                    if ":" in a[0])  # and the 12 IPv6 ones
    stranger_probe(n, 1.0)
    peers = n.traversal.keepalive_peers()
    assert len([p for p in peers if ":" not in p[0]]) == 2
    assert len([p for p in peers if ":" in p[0]]) == 12
    assert not any(":" in host for host, _ in n.rendezvous(n.node_id, 8))
    assert len(n.rendezvous(n.node_id, 8)) == 8
    # a call's rendezvous: the lookup's nearest that can take a PUNCH_REQ
    closest = [(i, (f"2001:db8::{i}", 5004)) for i in range(1, 5)] + [(9, ("198.51.100.9", 5004))]
    assert choose_rendezvous(0, closest, count=3, usable=n.traversal.usable) \
        == [("198.51.100.9", 5004)]
    n.traversal.punch(7, choose_rendezvous(7, closest, count=8, usable=n.traversal.usable), 2.0)
    assert [to for d, to in n.datagrams_to_send(2.0) if is_traversal(d, PUNCH_REQ)] \
        == [("198.51.100.9", 5004)]


def _sim_world(kinds: list[int], nat_timeout: float = 30.0,
               settings: RoutingSettings | None = None):
    env = simpy.Environment()
    rng = random.Random(7)
    identities = [derive_identity(rng) for _ in kinds]
    ids = [int.from_bytes(i.node_id, "big") for i in identities]
    registry = SharedRegistry(list(ids))
    nat = NatTable(timeout=nat_timeout)
    nat.kinds.extend(kinds)
    driver = SimDriver(env, make_network(env, ConstantLatency(0.02), random.Random(2), nat=nat))
    nodes = [Node(ids[a], registry, random.Random(a), settings, identity=identity, traversal=True)
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
    gets strangers' requests, refreshes its one mapping through two peers, and anyone reaches
    it; the open nodes find strangers get in too; with no strangers left, the evidence ages.
    In a world of 28 that all join at once, the strangers' requests came from the joins'
    refreshes and probes; since 04aea03 the defaults refresh by filling (`refresh_fill`) and
    probe at most `cache_probes` (2) newcomers a full bucket, and this small world then sends
    a full-cone node no stranger's request in ten minutes (it keeps the filtering plan: 16
    peers every 20 s, reachable, more keep-alives). The test plays the rule with the paper's
    maintenance; how often a full-cone node sees strangers under the new defaults in a large
    network is not measured yet."""
    kinds = [OPEN] * 24 + [FULL_CONE] * 2 + [FILTERING] * 2
    paper = RoutingSettings(cache_probes=20, refresh_fill=False)
    env, nat, nodes = _sim_world(kinds, settings=paper)
    env.run(until=600.0)  # strangers' requests came in the first second
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
    # ten minutes on, every host has been sent to (28 nodes) and nobody checks (NAT kinds not
    # told): the evidence is old, back to the 16 nearest. The last strangers' requests came at
    # 60 s: the filtering nodes' first look-up of their own ID (node/upkeep.py HOOD_FIRST)
    env.run(until=700.0)
    assert not any(nodes[a].traversal.independent for a in range(28))
