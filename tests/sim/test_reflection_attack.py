"""The reflection attack played in the simulator: an attacker forges the victim's source address
on bare 41-byte requests to every node; the victim receives at most 3x what was sent."""

from __future__ import annotations

from random import Random

import simpy

from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, encode_request
from kadtalk.node.stack import Node
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver


def test_forged_bare_requests_reflect_at_most_three_times_their_bytes():
    rng = Random(3)
    ids = [rng.getrandbits(160) for _ in range(300)]
    registry = SharedRegistry(ids)
    settings = RoutingSettings(refresh_on_join=False)
    env = simpy.Environment()
    at_victim: list[int] = []
    victim = 299

    def tap(src, dst, payload, delay):
        if dst == victim:
            at_victim.append(len(payload))
        return [delay]

    network = SimNetwork(env, ConstantLatency(0.01), Random(1), hook=tap)
    driver = SimDriver(env, network, wire="bytes")
    tables = ConvergedTables(ids, settings.k)
    node_rng = Random(4)
    for index in range(len(ids)):
        node = Node(ids[index], registry, node_rng, settings, 0.0)
        node.routing.table.load(tables.entries(index), tables.sizes(index), 0.0)
        driver.add(node)

    driver.place(victim, None)  # the victim only receives (it would answer the probes)
    forged = [encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 0)
              for _ in range(298)]
    for server, request in enumerate(forged):
        network.send(victim, server, request)  # source address forged: the victim's
    env.run(until=1.0)

    sent = sum(len(r) for r in forged)
    # every server answered something, and probed the forged requester (issue 17: only an
    # answer enters the table) unless its table holds the victim's address already (one ID per
    # address); the probe counts towards the 3x
    holding = sum(any(registry.addrs[h] == victim for h in driver.nodes[s].routing.table.handles())
                  for s in range(298))
    assert 0 < holding < len(forged)
    assert at_victim.count(41) == len(forged) - holding
    assert len(at_victim) == 2 * len(forged) - holding
    assert sum(at_victim) <= 3 * sent
    assert max(at_victim) <= 41 + 3 * 26
    assert sum(driver.nodes[s].routing.limited_answers for s in range(298)) == 298
