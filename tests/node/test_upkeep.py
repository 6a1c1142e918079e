"""Network upkeep inside the node (kadtalk.node.upkeep): the one join-retry rule, rejoining with
back-off (explicit now), and a simulated node behind a NAT kept reachable by the very keep-alive
code the daemon runs."""

from __future__ import annotations

import random

import pytest
import simpy

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined
from kadtalk.node.routing.messages import ROUTE_REQ
from kadtalk.node.stack import Node
from kadtalk.node.traversal import TraversalSettings
from kadtalk.node.upkeep import JOIN_RETRY, JOIN_RETRY_DELAY, JoinRetry, Rejoin
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import FILTERING, OPEN, NatTable
from kadtalk.sim.network import make_network
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

SILENT = ("192.0.2.50", 5004)  # a bootstrap address nobody answers at


def test_the_join_retry_rule():
    assert JOIN_RETRY_DELAY == JOIN_RETRY.first == 1.0
    assert [JOIN_RETRY.delay(n) for n in range(0, 13)] == [
        1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert JoinRetry(first=2.0, quick=0, longest=5.0).delay(3) == 5.0
    with pytest.raises(ValueError):
        JoinRetry(first=0.0)


def drive(node: Node, until: float) -> list[tuple[float, str]]:
    """Run the node's timer up to `until`; return (time, what) for join starts and ends."""
    log = []
    now = 0.0
    while True:
        for data, to in node.datagrams_to_send(now):
            if data[0] == ROUTE_REQ and to == SILENT:
                log.append((now, "request"))
        while (event := node.next_event()) is not None:
            if type(event) is Joined:
                log.append((event.finished, "failed" if not event.success else "joined"))
        deadline = node.get_timer()
        if deadline is None or deadline > until:
            return log
        now = max(now, deadline)
        node.handle_timer(now)


def test_rejoin_backs_off_while_joins_find_nobody():
    node = Node(7, ContactRegistry(), random.Random(1))
    node.keep_joined([SILENT], 0.0)
    log = drive(node, 200.0)
    starts = [t for t, what in log if what == "request"]
    ends = [t for t, what in log if what == "failed"]
    assert len(starts) >= 8 and len(ends) >= 7
    gaps = [round(start - end, 6) for end, start in zip(ends, starts[1:])]
    assert gaps[:8] == [JOIN_RETRY.delay(n) for n in range(1, 9)]  # 1 s five times, then doubling
    assert node.rejoin.failures == len(ends)
    # one join at a time: never a second request before the previous join ended
    assert all(end >= start for start, end in zip(starts, ends))


def test_no_rejoin_while_the_table_has_contacts():
    node = Node(7, ContactRegistry(), random.Random(1))
    node.add_contact(99, ("10.0.0.2", 4000), 0.0)
    rejoin = Rejoin([SILENT], now=0.0)
    assert rejoin.get_timer(len(node.routing.table)) is None and rejoin.get_timer(0) == 0.0
    rejoin.finished(Joined(5.0, 3, 4, 0, lookup_id=-1))
    assert rejoin.joined and rejoin.failures == 0 and rejoin.get_timer(0) == 6.0


def sim_world(keepalive_interval: float, nat_timeout: float = 30.0, n_open: int = 5):
    """`n_open` public nodes and one (the last) behind a filtering NAT, all with traversal,
    each kept joined through node 0, on the SimPy driver."""
    env = simpy.Environment()
    identities = [Identity.generate() for _ in range(n_open + 1)]
    ids = [int.from_bytes(i.node_id, "big") for i in identities]
    registry = SharedRegistry(list(ids))
    nat = NatTable(timeout=nat_timeout)
    nat.kinds.extend([OPEN] * n_open + [FILTERING])
    network = make_network(env, ConstantLatency(0.02), random.Random(2), nat=nat)
    driver = SimDriver(env, network)
    settings = TraversalSettings(keepalive_interval=keepalive_interval)
    nodes = []
    for addr, identity in enumerate(identities):
        node = Node(ids[addr], registry, random.Random(addr), now=env.now, identity=identity,
                    traversal=True, traversal_settings=settings)
        nodes.append(node)
        driver.add(node)
    for addr, node in enumerate(nodes):
        node.keep_joined([0] if addr else [], env.now)  # node 0 is the first: nobody to join
        driver.service(addr)
    return env, nat, driver, nodes


def test_a_simulated_node_behind_a_nat_stays_reachable_by_its_keepalives():
    """The keep-alive code the daemon runs (the traversal layer's timer), in the simulator:
    with a 30 s NAT mapping timeout, the NATed node's rendezvous can still reach it after
    ten minutes; with keep-alives too rare, the mappings expire and the NAT drops them."""
    env, nat, driver, nodes = sim_world(keepalive_interval=20.0)
    natted = len(nodes) - 1
    env.run(until=600.0)
    rendezvous = nodes[natted].rendezvous(nodes[natted].node_id)
    assert rendezvous and nodes[natted].rejoin.joined
    assert all(nat.admits(natted, r, env.now) for r in rendezvous)
    assert nodes[natted].traversal.stats["addr_req_sent"] >= 600 / 20 * len(rendezvous) - 3
    assert nodes[natted].traversal.public == natted  # the sim address its peers see

    env, nat, driver, nodes = sim_world(keepalive_interval=10_000.0)
    env.run(until=600.0)
    rendezvous = nodes[natted].rendezvous(nodes[natted].node_id)
    assert rendezvous and not any(nat.admits(natted, r, env.now) for r in rendezvous)
