"""Routing-table poisoning with forged IDs (issue 17, attack 1), replayed in the simulator.

A forger at one address that never answers (its source may as well be forged) sends a victim
node `forged` bare ROUTE_REQs (41 bytes each: 80 of them are the 3.3 KB of the issue) whose
origin IDs all fall into one empty bucket of the victim's table: the bucket one deeper than
its deepest occupied one, so these IDs are closer to the victim than any honest node. A node
whose ID falls into that bucket then joins by protocol (through another node), and a fresh
node that knows only the victim looks the newcomer up (find peer), as a caller would.

Before kadtalk took table entries only from answers, the forged IDs filled the bucket and the
replacement cache, the newcomer reached only the cache, and the lookup asked the forged entries
(k timeouts) and failed. The same honest `Node` code runs here as in the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import Any

import simpy

from kadtalk.experiments.harness.world import bucket_bits
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import ID_BITS, RouteRequest
from kadtalk.node.stack import Node
from kadtalk.sim.adversary import Adversary
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver


class Forger(Adversary):
    """Sends ROUTE_REQs with any origin ID from its address and never answers anything;
    `requests_seen` counts the requests (address probes) that reached it."""

    __slots__ = ("requests_seen", "bytes_sent")

    def __init__(self, registry: Any):
        super().__init__(registry)
        self.requests_seen = 0
        self.bytes_sent = 0

    def forge(self, origin: int, dst: Any, target: int) -> None:
        request = RouteRequest(origin, target)  # bare: 41 bytes
        self.bytes_sent += request.size
        self._out.append((request, dst))

    def on_message(self, msg: Any, addr: Any, now: float) -> None:
        if type(msg) is RouteRequest:
            self.requests_seen += 1


def in_bucket(own: int, c: int, rng: Random) -> int:
    """A random ID sharing exactly `c` leading bits with `own` (bucket c of `own`'s table)."""
    bits = ID_BITS - 1 - c
    return own ^ (1 << bits) ^ rng.getrandbits(bits)


@dataclass(frozen=True)
class PoisoningStudy:
    nodes: int = 200
    forged: int = 80
    seed: int = 1
    latency: float = 0.02  # one way, seconds
    settings: RoutingSettings = RoutingSettings(request_timeout=1.0)


@dataclass(frozen=True)
class PoisoningResult:
    forged_bytes: int  # what the forger sent
    probes_to_forger: int  # requests that reached the forger's address
    forged_in_table: int  # forged IDs among the victim's entries (what the daemon would save)
    forged_in_cache: int  # ... and in its replacement caches
    newcomer_in_table: bool  # the newcomer is an entry of the victim's table
    found: bool  # the lookup through the victim found the newcomer at its address
    timeouts: int  # the lookup's requests that went unanswered
    victim_drops: dict[str, int]


def run_poisoning(study: PoisoningStudy = PoisoningStudy()) -> PoisoningResult:
    rng = Random(study.seed)
    ids = [rng.getrandbits(ID_BITS) for _ in range(study.nodes)]
    settings = study.settings
    registry = SharedRegistry(list(ids))
    env = simpy.Environment()
    events: list[tuple[int, Any]] = []
    network = SimNetwork(env, ConstantLatency(study.latency), Random(study.seed + 1))
    driver = SimDriver(env, network, lambda addr, event: events.append((addr, event)))
    tables = ConvergedTables(ids, settings.k, bucket_bits=bucket_bits(settings))
    node_rng = Random(study.seed + 2)
    for i in range(study.nodes):
        node = Node(ids[i], registry, node_rng, settings, 0.0)
        node.routing.table.load(tables.entries(i), tables.sizes(i), 0.0)
        driver.add(node)

    def run(seconds: float) -> None:
        env.run(until=env.now + seconds)

    victim = 0
    table = driver.nodes[victim].routing.table
    # one past its deepest occupied prefix group (a table keeps whole groups of 2^(b-1)
    # buckets, so bucket_count() is an index, not a prefix length): empty
    bucket = table.bucket_count() >> (bucket_bits(settings) - 1)
    forger = Forger(registry)
    forger_addr = driver.add(forger)
    forged = {in_bucket(ids[victim], bucket, rng) for _ in range(study.forged)}
    for origin in forged:
        forger.forge(origin, victim, rng.getrandbits(ID_BITS))
    driver.service(forger_addr)
    run(2 * settings.request_timeout)

    newcomer_id = in_bucket(ids[victim], bucket, rng)
    newcomer = Node(newcomer_id, registry, node_rng, settings, env.now)
    newcomer_addr = driver.add(newcomer)
    newcomer.join([1], env.now)  # through another node, by protocol
    driver.service(newcomer_addr)
    run(30.0)

    searcher = Node(rng.getrandbits(ID_BITS), registry, node_rng, settings, env.now)
    searcher_addr = driver.add(searcher)
    searcher.add_contact(ids[victim], victim, env.now)
    lookup_id = searcher.find_peer(newcomer_id, env.now)
    driver.service(searcher_addr)
    run(60.0)
    [done] = [
        e for a, e in events
        if a == searcher_addr and getattr(e, "lookup_id", None) == lookup_id
    ]

    held_ids = registry.ids
    entries = [held_ids[h] for i in range(table.bucket_count()) for h in table.bucket(i)]
    cached = [held_ids[h] for i in range(table.bucket_count()) for h in table.replacements(i)]
    return PoisoningResult(
        forged_bytes=forger.bytes_sent,
        probes_to_forger=forger.requests_seen,
        forged_in_table=sum(i in forged for i in entries),
        forged_in_cache=sum(i in forged for i in cached),
        newcomer_in_table=newcomer_id in entries,
        found=done.peer == (newcomer_id, newcomer_addr),
        timeouts=done.timeouts,
        victim_drops=dict(driver.nodes[victim].drop_counts()),
    )


if __name__ == "__main__":  # python -m kadtalk.experiments.attacks.poisoning
    print(run_poisoning())
