"""Part (b): a swarm of each system in its own process; per repetition fresh clients in this
process join it through a random member and look up the same number of its members, timed one
lookup at a time. Every lookup mode of every adapter is a row set ("kadtalk find_peer", ...)."""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from benchmarks.common import mean, median, percentile
from benchmarks.udp_routing.config import SYSTEMS, Plan
from benchmarks.udp_routing.processes import Child
from benchmarks.udp_routing.system import Contacts, adapter


@dataclass
class LookupRecord:
    ms: float
    rpcs: int
    success: bool
    timeouts: int


def summarize(records: list[LookupRecord]) -> dict[str, float]:
    latencies = [r.ms for r in records]
    return {
        "lookups": len(records),
        "median_ms": median(latencies),
        "p90_ms": percentile(latencies, 90),
        "mean_rpcs": mean(float(r.rpcs) for r in records),
        "success": 100.0 * sum(r.success for r in records) / len(records) if records else math.nan,
        "timeouts": sum(r.timeouts for r in records),
    }


async def run_client(
    system: str, mode: str, members: Contacts, targets: list[int], rng: random.Random,
    keep: list[Callable[[], None]],
) -> tuple[list[LookupRecord], int]:
    """A fresh client of `system` joins through a random member and looks up `targets`."""
    client = await adapter(system).start_client()
    keep.append(client.close)  # stays up (answering) until the end: no dead contacts in the swarm
    await client.join(members[rng.randrange(len(members))][1])
    records = []
    clock = time.perf_counter
    for target in targets:
        started = clock()
        rpcs, success, timeouts = await client.lookup(target, mode)
        records.append(LookupRecord((clock() - started) * 1000.0, rpcs, success, timeouts))
    return records, client.table


def lookup_modes() -> list[tuple[str, str, str, int]]:
    """(row label, system, mode, clients per repetition), ours first."""
    return [(f"{system} {mode}", system, mode, clients) for system in SYSTEMS
            for mode, clients in adapter(system).LOOKUP_MODES.items()]


async def lookup_repetitions(
    plan: Plan, swarms: dict[str, Contacts], say: Callable[[str], None],
) -> dict[str, Any]:
    """Per repetition, every mode's clients in turn (reversed on odd repetitions); each client
    adds a live node to its swarm."""
    rng = random.Random(plan.seed + 3)
    keep: list[Callable[[], None]] = []
    modes = lookup_modes()
    out: dict[str, Any] = {label: {"reps": [], "tables": []} for label, *_ in modes}
    try:
        for rep in range(plan.repeat):
            jobs: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
            for label, system, mode, clients in modes:
                for _ in range(clients):
                    members = swarms[system]
                    targets = [m[0] for m in rng.sample(members, plan.lookups)]
                    jobs.append((label, lambda s=system, m=mode, mem=members, t=targets:
                                 run_client(s, m, mem, t, rng, keep)))
            if rep % 2:
                jobs.reverse()
            collected: dict[str, list[LookupRecord]] = collections.defaultdict(list)
            for label, job in jobs:
                records, table = await job()
                collected[label].extend(records)
                out[label]["tables"].append(table)
            for label in out:
                out[label]["reps"].append(summarize(collected[label]))
            say(f"(b) repetition {rep + 1}/{plan.repeat}: " + ", ".join(
                f"{m} {out[m]['reps'][-1]['median_ms']:.2f} ms / "
                f"{out[m]['reps'][-1]['mean_rpcs']:.1f} RPCs" for m in out))
    finally:
        for close in keep:
            close()
        await asyncio.sleep(0.05)
    return out


def run_lookups(plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Per lookup mode: {"reps": [summarize's result], "tables": [client tables]}; and
    "swarms": {system: {"build_s", "table_mean"}}."""
    children: dict[str, Child] = {}
    try:
        for system in SYSTEMS:
            children[system] = Child(system, "swarm", plan.swarm_ports(system).start, plan.nodes)
        infos = {system: children[system].ready(timeout=120.0) for system in SYSTEMS}
        say("(b) swarms ready: " + ", ".join(
            f"{s} {len(infos[s]['members'])} nodes in {infos[s]['build_s']:.1f} s, "
            f"{infos[s]['table_mean']:.1f} contacts a table" for s in SYSTEMS))
        swarms = {s: infos[s]["members"] for s in SYSTEMS}
        result = asyncio.run(lookup_repetitions(plan, swarms, say))
        result["swarms"] = {
            s: {"build_s": infos[s]["build_s"], "table_mean": infos[s]["table_mean"]}
            for s in SYSTEMS
        }
        return result
    finally:
        for child in children.values():
            child.stop()
