"""1,000 real nodes on the in-memory network (no SimPy): join through the protocol, then look up.

kadtalk.transport.memory is the whole driver the design asks for: deliver datagrams after a
per-pair delay, call `handle_timer` when `get_timer()` comes due, re-arm one timer per node,
ignore stale timers.
"""

import math
from random import Random

import pytest

from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.memory import MemoryNet, Packet


def delay(src: int, dst: int) -> float:
    a, b = min(src, dst), max(src, dst)  # symmetric, 10..59 ms
    return 0.010 + ((a * 7919 + b * 104729) % 50) / 1000


def per_pair_delay(packet: Packet, now: float) -> tuple[tuple[float, Packet]]:
    return ((delay(packet.src, packet.dst), packet),)


def add(net: MemoryNet, ids, registry, settings, seed: int) -> int:
    addr = len(net.nodes)
    node = Node(ids[addr], registry, Random(seed * 100_003 + addr), settings, net.now)
    return net.attach(addr, node)


@pytest.mark.parametrize(
    "settings",
    [
        # The paper's join is a lookup of our own ID through a known node, then a refresh of the
        # buckets farther than the closest neighbour; the quick variant leaves the refreshes out.
        pytest.param(RoutingSettings(refresh_on_join=False), id="join-only"),
        pytest.param(RoutingSettings(), id="default", marks=pytest.mark.slow),
    ],
)
def test_thousand_nodes_join_and_find_each_other(settings):
    n = 1000
    rng = Random(1000)
    ids = []
    seen = set()
    while len(ids) < n:
        node_id = rng.getrandbits(160)
        if node_id not in seen:
            seen.add(node_id)
            ids.append(node_id)
    registry = SharedRegistry(list(ids))
    net = MemoryNet(per_pair_delay)
    add(net, ids, registry, settings, seed=1)
    for addr in range(1, n):
        add(net, ids, registry, settings, seed=1)
        net.nodes[addr].join([rng.randrange(addr)], net.now)
        net.service(addr)
        joined = net.events[addr]
        net.run(until=lambda: bool(joined), limit=net.now + 60.0)
        [event] = joined
        assert type(event) is Joined and event.success and event.timeouts == 0
        joined.clear()
    nodes = list(net.nodes.values())
    assert all(len(node.routing.table) > 0 for node in nodes)
    assert sum(len(node.routing.table) for node in nodes) / n >= 20

    results = []
    for _ in range(100):
        source = rng.randrange(n)
        target = rng.randrange(n - 1)
        target += target >= source
        lookup_id = net.nodes[source].find_peer(ids[target], net.now)
        net.service(source)
        mine = net.events[source]
        net.run(until=lambda: any(type(e) is LookupCompleted for e in mine), limit=net.now + 60.0)
        [event] = [e for e in mine if type(e) is LookupCompleted]
        mine.clear()
        assert event.lookup_id == lookup_id and event.target == ids[target]
        results.append((target, event))

    assert all(event.peer == (ids[target], target) for target, event in results)
    assert all(event.timeouts == 0 for _, event in results)
    hops = [event.hops for _, event in results]
    assert sum(hops) / len(hops) < math.log2(n)
    rpcs = [event.rpcs for _, event in results]
    assert sum(rpcs) / len(rpcs) < 3 * math.log2(n)
    # latencies are whole round trips on the per-pair delays: at most 2 * 59 ms per hop of rpcs
    for _, event in results:
        assert 0.0 <= event.latency <= event.rpcs * 2 * 0.059 + 1e-9
    assert sum(sum(node.drop_counts().values()) for node in nodes) == 0
    assert net.dropped == net.unroutable == 0
