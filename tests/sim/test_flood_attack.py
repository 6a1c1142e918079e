"""A request flood played in the simulator: one attacker address sends 20,000 requests a second
to a node that honest lookups must pass through; the flood is held to that source's budget and
every honest lookup still succeeds."""

from __future__ import annotations

from random import Random

import simpy

from kadtalk.node.routing.events import LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, encode_request
from kadtalk.node.stack import Node
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver


def test_a_flooded_node_keeps_serving_honest_lookups():
    rng = Random(5)
    ids = [rng.getrandbits(160) for _ in range(201)]
    registry = SharedRegistry(ids)
    settings = RoutingSettings(refresh_on_join=False, k=4)  # small buckets: lookups take hops
    env = simpy.Environment()
    answers = {"attacker": 0, "honest": 0}

    def count_answers(src, dst, payload, delay):
        if src == 0 and payload[0] == 0x01:
            answers["attacker" if dst == 200 else "honest"] += 1
        return [delay]

    network = SimNetwork(env, ConstantLatency(0.01), Random(1), hook=count_answers)
    results: list[LookupCompleted] = []
    driver = SimDriver(env, network, lambda addr, e: results.append(e), wire="bytes")
    tables = ConvergedTables(ids[:200], settings.k)
    node_rng = Random(4)
    for index in range(200):
        node = Node(ids[index], registry, node_rng, settings, 0.0)
        node.routing.table.load(tables.entries(index), tables.sizes(index), 0.0)
        driver.add(node)
    attacker = driver.add(Node(ids[200], registry, node_rng, settings, 0.0))  # address 200
    victim = 0
    flood = encode_request(RouteRequest(ids[200], 12345), 146)

    def flood_tick(_event=None):
        for _ in range(20):  # 20 requests a millisecond
            network.send(attacker, victim, flood)
        if env.now < 2.0:
            simpy.Timeout(env, 0.001).callbacks.append(flood_tick)

    flood_tick()
    # honest lookups from every node, for targets whose paths often cross the victim
    for source in range(1, 200, 2):
        driver.nodes[source].find_peer(ids[rng.randrange(200)], 0.5)
    simpy.Timeout(env, 0.5).callbacks.append(lambda _e: [driver.service(s) for s in range(1, 200, 2)])
    env.run(until=3.0)

    assert len(results) == 100 and all(r.peer is not None for r in results)
    drops = driver.nodes[victim].drop_counts()
    assert drops["rate_limited_source"] > 35_000  # of ~40,000 flood requests
    assert answers["attacker"] < 1_000 + 100 + 100 + 20 * 3  # half the burst, then 20/s
    assert answers["honest"] > 0 and drops.get("rate_limited", 0) == 0  # no honest request lost
