"""A node behind a NAT looks up its own ID now and then (node/upkeep.py `Rejoin.hood_at`,
`RoutingLayer.refresh_neighbourhood`), so that peers that joined near its ID after it hold it.

Issue 13, session 13: in the 2,000-peer relay-load run with protocol joins, 13 IPv4 and
dual-stack calls to filtering or symmetric callees ended `unreachable`: each callee had joined
among the first few hundred and its table still held only the peers of its join (in the 500-peer
reproduction, node 2's held node 0 alone). Peers that joined near its ID later could not admit it (their requests do not
pass its NAT), so a caller's lookup ended at peers that did not hold it (no address: the lookup
failed), or found it through an older peer and asked the nearest (which did not hold it, nor
were kept open by its keep-alives) to forward the punch and the relay offer."""

from __future__ import annotations

import random
from dataclasses import replace

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.experiments.harness.identities import derive_identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.messages import ROUTE_REQ
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.stack import Node
from kadtalk.node.traversal import choose_rendezvous
from kadtalk.node.upkeep import HOOD_BUSY, HOOD_FIRST, HOOD_LONGEST, Rejoin
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import FILTERING, OPEN, SYMMETRIC, NatTable
from kadtalk.sim.network import make_network
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

PEERS = 60  # node 0 the bootstrap, node 1 behind the NAT, 58 later joiners


def world(nat_kind: int, seed: int = 3):
    """Node 0 (public) and node 1 (behind `nat_kind`) kept joined from t = 0; the 58 others,
    public, join through node 0 from t = 5 s, one every 0.1 s. Returns the pieces and the
    events the nodes reported."""
    env = simpy.Environment()
    rng = random.Random(seed)
    identities = [derive_identity(rng) for _ in range(PEERS)]
    ids = [int.from_bytes(i.node_id, "big") for i in identities]
    registry = SharedRegistry(list(ids))
    nat = NatTable(timeout=120.0)
    nat.kinds.extend([OPEN, nat_kind] + [OPEN] * (PEERS - 2))
    events: list[tuple[int, object]] = []
    driver = SimDriver(env, make_network(env, ConstantLatency(0.02), random.Random(2), nat=nat),
                       on_event=lambda addr, event: events.append((addr, event)))
    nodes = [Node(ids[a], registry, random.Random(a), identity=identity, traversal=True)
             for a, identity in enumerate(identities)]
    for node in nodes:
        driver.add(node)

    def join(addr: int, at: float):
        yield env.timeout(at)
        nodes[addr].keep_joined([0] if addr else [], env.now)
        driver.service(addr)

    for addr in range(PEERS):
        env.process(join(addr, 0.0 if addr < 2 else 5.0 + 0.1 * addr))
    return env, nat, driver, nodes, ids, events


def holders(nodes: list[Node], ids: list[int], target: int, count: int) -> list[bool]:
    """Whether each of the `count` peers nearest `target`'s ID holds it in its table."""
    nearest = sorted((a for a in range(PEERS) if a != target),
                     key=lambda a: ids[a] ^ ids[target])[:count]
    return [nodes[a].routing.table.find(ids[target]) >= 0 for a in nearest]


def test_peers_that_joined_after_a_natted_node_hold_it_and_callers_find_it_through_them():
    for kind in (FILTERING, SYMMETRIC):
        env, nat, driver, nodes, ids, events = world(kind)
        env.run(until=HOOD_FIRST - 1)
        natted = nodes[1]
        # before its first look-up: the peers nearest it joined after it and cannot admit it
        # (it joined when the network was node 0), nor does its table know them
        assert not any(holders(nodes, ids, 1, 8))
        assert len(natted.routing.table) <= 2
        assert natted.traversal.nat != "none" and not natted.traversal.independent
        env.run(until=2 * HOOD_FIRST + 30)
        # its look-up of its own ID at HOOD_FIRST: its 8 nearest (a caller's punch_peers
        # rendezvous) hold it, and its keep-alives keep its NAT open to them
        assert all(holders(nodes, ids, 1, 8)), kind
        kept = natted.traversal.keepalive_peers()
        assert all(nat.admits(1, peer, env.now) for peer in kept)
        # a caller's lookup (the last joiner's) finds it, and the rendezvous it would ask
        # are among the peers the NATed node keeps open
        caller = PEERS - 1
        lookup = nodes[caller].find_peer(ids[1], env.now)
        driver.service(caller)
        env.run(until=env.now + 10.0)
        [done] = [e for a, e in events if a == caller and type(e) is LookupCompleted
                  and e.lookup_id == lookup]
        assert done.peer is not None and done.peer[0] == ids[1]
        rendezvous = choose_rendezvous(ids[1], done.closest, count=8)
        assert set(rendezvous) & set(kept), kind


def own_lookups(nat: str | None, until: float, busy_until: float = 0.0) -> list[float]:
    """Drive one node (upkeep on, one silent contact; `nat` as its owner told it, None: not
    told) by its own timer up to `until`; the times its requests for its own ID went out.
    Before `busy_until` the routing layer takes no lookup (as with max_lookups running)."""
    identity = derive_identity(random.Random(5))
    node = Node(int.from_bytes(identity.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=identity, traversal=True)
    node.add_contact(99, ("192.0.2.9", 5004), 0.0)
    if nat is not None:
        node.set_nat(nat)
    node.keep_joined([], 0.0)  # a table already: no join, as a daemon with saved contacts
    settings = node.routing.settings
    sent, now, own = [], 0.0, node.node_id.to_bytes(20, "big")[:12]
    while True:
        for data, _ in node.datagrams_to_send(now):
            # a keyed request: the target's last 64 bits are the key (protocol.md section 5.4)
            if data[0] == ROUTE_REQ and data[21:33] == own:
                sent.append(now)
        deadline = node.get_timer()
        if deadline is None or deadline > until:
            return sent
        now = max(now, deadline)
        node.routing.settings = replace(settings, max_lookups=0) if now < busy_until else settings
        node.handle_timer(now)


def test_only_a_node_that_may_be_filtered_looks_up_its_neighbourhood():
    """Behind a NAT (or not told yet) the look-ups come at HOOD_FIRST after the upkeep's start,
    then 2, 4, 8, 10 ... minutes apart (a silent contact: each ends by its timeout); a node
    told it has no NAT sends none (newcomers reach it)."""
    until = 1600.0  # (the silent contact leaves the table after its fifth timeout)
    expected = [HOOD_FIRST]
    while expected[-1] + min(HOOD_FIRST * 2 ** len(expected), HOOD_LONGEST) <= until:
        expected.append(expected[-1] + min(HOOD_FIRST * 2 ** len(expected), HOOD_LONGEST))
    assert expected == [60.0, 180.0, 420.0, 900.0, 1500.0]
    for nat in (None, "cone", "symmetric"):
        sent = own_lookups(nat, until)
        assert sorted(set(sent)) == expected, nat  # the request's retries: the same times
    assert own_lookups("none", until) == []


def test_a_look_up_refused_for_too_many_lookups_is_tried_again_soon_the_wait_not_doubled():
    """(Review R1, session 13: the wait doubled though no look-up went.) Refused at 60 s and
    65 s, the look-up goes at 70 s; the schedule then runs from there: 120 s later, 240 ..."""
    sent = sorted(set(own_lookups("symmetric", 700.0, busy_until=HOOD_FIRST + 2 * HOOD_BUSY)))
    first = HOOD_FIRST + 2 * HOOD_BUSY
    assert sent == [first, first + 2 * HOOD_FIRST, first + 6 * HOOD_FIRST]


ACTIONS = st.lists(st.tuples(st.sampled_from(["timer", "joined", "failed"]),
                             st.floats(0.0, 2000.0, allow_nan=False)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.floats(0.0, 1e6, allow_nan=False), ACTIONS)
def test_the_neighbourhood_schedule_over_any_sequence(start, actions):
    """From the upkeep's start, and again from each successful join, the first look-up is
    HOOD_FIRST later; each one done doubles the wait up to HOOD_LONGEST; a failed join
    changes nothing; the next is always after the last thing that happened."""
    rejoin = Rejoin(["bootstrap"], now=start)
    now, wait = start, HOOD_FIRST
    assert rejoin.hood_at == start + HOOD_FIRST
    for what, after in actions:
        if what == "timer":
            now = max(now, rejoin.hood_at)  # the node's timer fires when due
            rejoin.hood_done(now)
            wait = min(2 * wait, HOOD_LONGEST)
            assert rejoin.hood_at == now + wait
        else:
            now += after
            before = rejoin.hood_at
            rejoin.finished(Joined(now, 5 if what == "joined" else 0, 3, 0, lookup_id=-1))
            if what == "joined":
                wait = HOOD_FIRST
                assert rejoin.hood_at == now + HOOD_FIRST
            else:
                assert rejoin.hood_at == before
        assert HOOD_FIRST <= rejoin.hood_wait == wait <= HOOD_LONGEST
        assert rejoin.hood_at > now or what == "failed"
