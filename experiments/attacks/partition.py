"""A region goes dark and returns (`PartitionStudy`).


Partition (`PartitionStudy`). On the coordinate plane, the `region` share of nodes farthest
west goes dark at `dark_at` (every datagram to or from it is lost) and returns `dark_for` seconds
later with the tables it had. Lookups between random pairs run throughout (none starts at a dark
node); a lookup succeeds when it finds the target's address and the target is reachable when it
ends (a call could go on). Reported: success per time bin, the time after the return until
success is back within `tolerance` of its level before the outage, and how many table entries
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, fields
from random import Random
from typing import Any, Callable, Iterable, Sequence

from .results import AttackResult


@dataclass(frozen=True)
class PartitionStudy:
    nodes: int = 1000
    region: float = 0.3  # share of nodes (the westernmost on the plane) that goes dark
    dark_at: float = 60.0  # seconds after the lookups start
    dark_for: float = 300.0
    duration: float = 600.0  # seconds of lookups
    lookup_rate: float = 5.0
    bin: float = 10.0  # seconds per time bin of the success series
    tolerance: float = 0.02  # recovered: a bin's success within this of the level before
    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0
    max_failures: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 4 or not 0.0 < self.region < 1.0:
            raise ValueError("need at least 4 nodes and 0 < region < 1")
        if not 0 < self.dark_at < self.dark_at + self.dark_for < self.duration:
            raise ValueError("need 0 < dark_at < dark_at + dark_for < duration")
        if self.bin <= 0 or self.lookup_rate <= 0:
            raise ValueError("bin and lookup_rate must be positive")


def run_partition_study(study: PartitionStudy) -> AttackResult:
    from kadtalk.experiments.harness.workload import poisson_pairs_until
    from kadtalk.experiments.harness.world import at as harness_at
    from kadtalk.experiments.harness.world import (
        bucket_bits,
        load_converged,
        simulated_network,
        unique_ids,
        wire_mode,
    )
    from kadtalk.node.routing.events import LookupCompleted
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.node.stack import Node
    from kadtalk.sim.bootstrap import ConvergedTables
    from kadtalk.sim.latency import CoordinateLatency
    from kadtalk.sim.registry import SharedRegistry

    wall = time.perf_counter()
    rng = Random(study.seed)
    n = study.nodes
    ids = unique_ids(n, rng)
    latency = CoordinateLatency()
    place_rng = Random(rng.getrandbits(64))
    for _ in range(n):
        latency.add_node(place_rng)
    west = sorted(range(n), key=lambda i: latency.position(i)[0])[: max(1, round(study.region * n))]
    in_region = bytearray(n)
    for i in west:
        in_region[i] = 1
    start = 1.0
    dark_from, dark_until = start + study.dark_at, start + study.dark_at + study.dark_for
    state = {"dark": False}

    def hook(src: int, dst: int, payload: Any, delay: float) -> Sequence[float]:
        if state["dark"] and (in_region[src] or in_region[dst]):
            return []
        return [delay]

    network_rng = Random(rng.getrandbits(64))
    registry = SharedRegistry(list(ids))
    settings = RoutingSettings(
        k=study.k,
        alpha=study.alpha,
        request_timeout=study.request_timeout,
        refresh_on_join=False,
        max_failures=study.max_failures,
    )
    rows: list[dict[str, Any]] = []
    running: dict[tuple[int, int], tuple[int, float]] = {}

    def phase(t: float) -> str:
        return "before" if t < dark_from else "dark" if t < dark_until else "after"

    def on_event(addr: int, event: Any) -> None:
        if type(event) is not LookupCompleted:
            return
        target, begun = running.pop((addr, event.lookup_id))
        rows.append(
            {
                "start": begun,
                "t": begun - start,
                "phase": phase(begun),
                "source": addr,
                "target": target,
                "source_in_region": bool(in_region[addr]),
                "target_in_region": bool(in_region[target]),
                "found": event.peer is not None and event.peer[1] == target,
                # a call could go on: the address is right and the target is reachable now
                "success": event.peer is not None
                and event.peer[1] == target
                and not (state["dark"] and in_region[target]),
                "latency_ms": event.latency * 1000.0,
                "rpcs": event.rpcs,
                "timeouts": event.timeouts,
            }
        )

    env, _, driver = simulated_network(latency, network_rng, on_event, wire_mode(n), hook=hook)
    tables = ConvergedTables(ids, study.k, seed=rng.getrandbits(32),
                             bucket_bits=bucket_bits(settings))
    node_rng = Random(rng.getrandbits(64))
    load_converged(driver, tables, lambda i: Node(ids[i], registry, node_rng, settings, 0.0),
                   by_address=True)

    def at(when: float, action: Callable[[], None]) -> None:
        harness_at(env, when, action)

    census: dict[str, int] = {}

    def region_entries() -> int:
        """Entries for region nodes in the tables of nodes outside the region."""
        return sum(
            1
            for i in range(n)
            if not in_region[i]
            for h in driver.nodes[i].routing.table.handles()
            if h < n and in_region[h]
        )

    def go_dark() -> None:
        census["before"] = region_entries()
        state["dark"] = True

    def come_back() -> None:
        census["back"] = region_entries()
        state["dark"] = False

    at(dark_from, go_dark)
    at(dark_until, come_back)
    started = 0

    def start_lookup(source: int, target: int) -> None:
        nonlocal started
        if state["dark"] and in_region[source]:
            return  # the region is offline: its users start nothing
        started += 1
        node = driver.nodes[source]
        running[(source, node.find_peer(ids[target], env.now))] = (target, env.now)
        driver.service(source)

    for when, source, target in poisson_pairs_until(rng, n, start, start + study.duration,
                                                    study.lookup_rate):
        at(when, lambda s=source, t=target: start_lookup(s, t))
    env.run(until=start + study.duration)
    while running:
        env.step()
    rows.sort(key=lambda r: (r["start"], r["source"]))
    series = success_series(rows, study.bin, study.duration)
    summary = {
        **{f.name: getattr(study, f.name) for f in fields(study)},
        "lookups": len(rows),
        **{
            f"success_{p}": _rate(r for r in rows if r["phase"] == p)
            for p in ("before", "dark", "after")
        },
        "success_dark_outside": _rate(
            r
            for r in rows
            if r["phase"] == "dark" and not r["source_in_region"] and not r["target_in_region"]
        ),
        "success_after_region_target": _rate(
            r for r in rows if r["phase"] == "after" and r["target_in_region"]
        ),
        "timeouts_dark_outside": _mean(
            r["timeouts"]
            for r in rows
            if r["phase"] == "dark" and not r["source_in_region"] and not r["target_in_region"]
        ),
        "recovery_s": recovery_time(series, study.dark_at, study.dark_for, study.tolerance),
        "region_entries_before": census.get("before"),
        "region_entries_at_return": census.get("back"),
        "timeouts_after": _mean(r["timeouts"] for r in rows if r["phase"] == "after"),
        "timeouts_before": _mean(r["timeouts"] for r in rows if r["phase"] == "before"),
        "wall_s": round(time.perf_counter() - wall, 3),
    }
    return AttackResult(study, rows, summary)


def _rate(rows: Iterable[dict[str, Any]]) -> float:
    values = [r["success"] for r in rows]
    return sum(values) / len(values) if values else math.nan


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.fmean(values) if values else math.nan


def success_series(
    rows: Sequence[dict[str, Any]], width: float, duration: float
) -> list[dict[str, Any]]:
    """Lookup success per time bin (by start time since the lookups began): a tidy table."""
    bins = max(1, math.ceil(duration / width))
    out = []
    for b in range(bins):
        inside = [r for r in rows if b * width <= r["t"] < (b + 1) * width]
        out.append(
            {
                "t": b * width,
                "t_end": (b + 1) * width,
                "lookups": len(inside),
                "success_rate": _rate(inside),
            }
        )
    return out


def recovery_time(
    series: Sequence[dict[str, Any]], dark_at: float, dark_for: float, tolerance: float
) -> float:
    """Seconds from the region's return until the first bin (starting at or after the return)
    whose success is within `tolerance` of the level before the outage; NaN if never."""
    before = [s for s in series if s["t_end"] <= dark_at and s["lookups"]]
    if not before:
        return math.nan
    level = sum(s["success_rate"] * s["lookups"] for s in before) / sum(
        s["lookups"] for s in before
    )
    back = dark_at + dark_for
    for s in series:
        if s["t"] >= back and s["lookups"] and s["success_rate"] >= level - tolerance:
            return s["t_end"] - back  # the whole bin must be good: the end of it
    return math.nan

