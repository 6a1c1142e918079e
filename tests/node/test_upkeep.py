"""Network upkeep inside the node (kadtalk.node.upkeep): the one join-retry rule, rejoining with
back-off (explicit now), and a simulated node behind a NAT kept reachable by the very keep-alive
code the daemon runs."""

from __future__ import annotations

import random

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

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


CONTACT = ("10.0.0.2", 4000)  # a node that found us after our join failed


def test_rejoin_after_a_failed_join_though_someone_contacted_us():
    """The testbed's ds2: its join found nobody (its bootstrap nodes were not up yet), then a
    peer contacted it (table size 1). It joins again after the back-off's delay, asking the
    bootstrap address and the contact, until a join succeeds; then it stays joined."""
    rejoin = Rejoin([SILENT], now=0.0)
    rejoin.started(1, 0.0)
    assert rejoin.get_timer(0) is None  # one join at a time
    rejoin.finished(Joined(1.0, 0, 2, 2, lookup_id=1))
    assert not rejoin.joined and rejoin.failures == 1
    assert rejoin.get_timer(1) == 1.0 + JOIN_RETRY.delay(1)  # was None: never rejoined
    assert not rejoin.wants_join(1, 1.999) and rejoin.wants_join(1, 2.0)
    rejoin.started(2, 2.0)
    assert rejoin.get_timer(1) is None
    rejoin.finished(Joined(2.1, 6, 5, 0, lookup_id=2))
    assert rejoin.joined and rejoin.failures == 0
    assert rejoin.get_timer(6) is None and not rejoin.wants_join(6, 1e9)
    assert rejoin.get_timer(0) == 2.1 + JOIN_RETRY.delay(0)  # the table emptied: as before


def test_a_node_rejoins_through_a_contact_that_arrived_after_its_join_failed():
    node = Node(7, ContactRegistry(), random.Random(1))
    node.keep_joined([SILENT], 0.0)
    assert drive(node, 0.5) == [(0.0, "request")]
    now = node.get_timer()
    node.handle_timer(now)  # the request times out: the join found nobody
    [failed] = [e for e in iter(node.next_event, None) if type(e) is Joined]
    assert not failed.success and node.rejoin.failures == 1
    node.add_contact(99, CONTACT, now)  # someone found us
    assert node.get_timer() <= failed.finished + JOIN_RETRY.delay(1)
    node.handle_timer(failed.finished + JOIN_RETRY.delay(1))
    asked = {to for data, to in node.datagrams_to_send(failed.finished + JOIN_RETRY.delay(1))
             if data[0] == ROUTE_REQ}
    assert asked == {SILENT, CONTACT}  # the join asks the bootstrap address and the table


OUTCOMES = st.lists(st.tuples(
    st.sampled_from(["joined", "failed", "busy", "owner_joined", "owner_failed"]),
    st.floats(0.0, 100.0, allow_nan=False),  # seconds until the event
    st.integers(0, 40)), max_size=30)  # the table's size after it


@settings(max_examples=300, deadline=None)
@given(OUTCOMES)
def test_rejoin_rule_over_any_sequence_of_outcomes(events):
    """Whatever joins end how, with the table at any size: while the latest join failed (or
    could not start: "busy") a join is due within the back-off's delay of that failure, at
    any table size; after a success, none while the table has contacts; never two at once."""
    rejoin = Rejoin([SILENT], now=0.0)
    now, size, in_a_row, joined, lookup = 0.0, 0, 0, False, 0
    for what, wait, size_after in events:
        deadline = rejoin.get_timer(size)
        if deadline is not None:
            now = max(now, deadline)  # our join starts when due (the node's timer)
            assert rejoin.wants_join(size, now)
            lookup += 1
            rejoin.started(lookup, now)
            assert rejoin.get_timer(size) is None and rejoin.get_timer(0) is None
        now += wait
        if what == "busy":  # a join that could not start (TooManyLookups)
            if rejoin.running is not None:
                continue
            rejoin.started(None, now)
            in_a_row += 1
        else:
            ours = not what.startswith("owner") and rejoin.running is not None
            success = what.endswith("joined") and size_after > 0
            rejoin.finished(Joined(now, size_after if success else 0, 3, 0,
                                   lookup_id=rejoin.running if ours else -1))
            in_a_row, joined = (0, True) if success else (in_a_row + 1, False)
            if ours:
                assert rejoin.running is None
        size = size_after
        assert rejoin.failures == in_a_row and rejoin.joined == joined
        for table in (0, size, 1, 20):
            timer = rejoin.get_timer(table)
            if rejoin.running is not None:
                assert timer is None
            elif in_a_row or table == 0:
                assert timer == now + JOIN_RETRY.delay(in_a_row)  # due, at any table size
            else:
                assert timer is None  # joined, with contacts: nothing to do


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
