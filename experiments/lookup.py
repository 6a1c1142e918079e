"""The find-peer lookup study: build a simulated network, let it converge, time lookups.

Every node is the real `Node` class on the SimPy driver. Nodes join one after another through
the protocol's own join (a lookup of their own ID through a random node that has finished
joining, as a real newcomer would use a known, established node); after a
settling period, `lookups` find-peer lookups between random pairs start at Poisson times. One
row per lookup comes back, plus a summary.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from random import Random
from typing import Any

from kadtalk.experiments import realism
from kadtalk.experiments.harness.recorder import (  # noqa: F401 (re-exported for studies)
    LOOKUP_FIELDS,
    LookupRecorder,
    Progress,
    environment,
    peak_rss_mb,
    percentile,
)
from kadtalk.experiments.harness.workload import poisson_pairs
from kadtalk.experiments.harness.world import (  # noqa: F401
    BOOTSTRAPS,
    SimWorld,
    unique_ids,
    wire_mode,
)
from kadtalk.sim.latency import MODELS

log = logging.getLogger(__name__)

from kadtalk.node.upkeep import JOIN_RETRY_DELAY  # noqa: E402, F401 (the node's join-retry rule)

# Summary fields measured on the wall clock: they differ between runs of the same study.
WALL_CLOCK_FIELDS = frozenset({"wall_s", "peak_rss_mb", "build_s", "lookup_s"})

ROW_FIELDS = LOOKUP_FIELDS


@dataclass(frozen=True)
class LookupStudy:
    nodes: int = 1000
    lookups: int = 200
    seed: int = 1
    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0
    latency: str = "coordinate"
    loss: float = 0.0
    wire: str = "auto"  # bytes | objects | auto (bytes up to 2,000 nodes)
    join_interval: float = 0.02  # seconds between two nodes' joins
    settle: float = 10.0  # seconds between the last join and the first lookup
    lookup_rate: float = 20.0  # Poisson arrivals per simulated second
    refresh_on_join: bool = True
    bootstrap: str = "protocol"  # see BOOTSTRAPS
    # realism (experiments/realism.py, docs/simulation.md); defaults: static, open network
    routers: int = 1000  # latency=topology: routers of the generated graph
    topology: str = "waxman"  # latency=topology: waxman | barabasi_albert
    jitter: float = 0.0  # mean extra delay per datagram, as a fraction of the pair's delay
    churn: str = "none"  # none | exponential | weibull (from the end of the join phase)
    session: float = 2544.0  # churn: session length scale, s (exponential: the mean)
    session_shape: float = 0.38  # churn=weibull: shape (Stutzbach & Rejaie 2006)
    offline: float = 2544.0  # churn: offline period scale, s
    offline_shape: float = 0.38  # churn=weibull: shape of the offline periods
    nat_full_cone: float = 0.0  # share of nodes behind full-cone NAT
    nat_filtering: float = 0.0  # share of nodes behind address-filtering NAT
    nat_timeout: float = 120.0  # NAT mapping lifetime after the last outbound datagram, s
    traffic: bool = False  # count requests per purpose (user, join, refresh) while lookups run
    # RoutingSettings fields other than k, alpha and the timeout, as (name, value) pairs: the
    # lookup-latency study's variants (docs/design-decisions.md "Lookup latency at 10^6")
    routing: tuple[tuple[str, Any], ...] = ()
    urgent: bool = False  # lookups as a call's (find_peer(urgent=True)) rather than plain
    # Share of a lookup source's table entries whose round trip it knows when its first lookup
    # starts (the model's, without jitter): what a join's and refreshes' requests would have
    # measured, which the fast bootstrap does not simulate. 0: only what the run measures.
    rtt_known: float = 0.0

    def __post_init__(self) -> None:
        if self.nodes < 2:
            raise ValueError("a lookup study needs at least 2 nodes")
        if self.lookups < 0:
            raise ValueError("lookups must be >= 0")
        if self.latency not in MODELS:
            raise ValueError(f"latency must be one of {', '.join(MODELS)}")
        if self.wire not in ("bytes", "objects", "auto"):
            raise ValueError("wire must be bytes, objects or auto")
        if self.bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {', '.join(BOOTSTRAPS)}")
        if not 0.0 <= self.rtt_known <= 1.0:
            raise ValueError("rtt_known is a share between 0 and 1")
        realism.check(self)

    @property
    def wire_mode(self) -> str:
        return wire_mode(self.nodes, self.wire)


@dataclass
class StudyResult:
    study: LookupStudy
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)


def summarize(study: LookupStudy, rows: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    ok = [r for r in rows if r["success"]]
    latencies = [r["latency_ms"] for r in ok]
    return {
        "nodes": study.nodes,
        "lookups": len(rows),
        "success_rate": len(ok) / len(rows) if rows else math.nan,
        "median_ms": statistics.median(latencies) if latencies else math.nan,
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "rpcs_mean": statistics.fmean(r["rpcs"] for r in rows) if rows else math.nan,
        "hops_mean": statistics.fmean(r["hops"] for r in ok) if ok else math.nan,
        "timeouts_mean": statistics.fmean(r["timeouts"] for r in rows) if rows else math.nan,
        "k": study.k,
        "alpha": study.alpha,
        "seed": study.seed,
        "wire": study.wire_mode,
        "wall_s": round(wall_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }




def run_lookup_study(study: LookupStudy, progress: Progress | None = None,
                     latency_model: Any = None) -> StudyResult:
    """Build, converge and measure; deterministic for a given study (seed included).

    `latency_model`, when given, is used instead of a fresh instance of the study's named model
    (for models built from data, e.g. sim.latency.SiteMatrixLatency with measured delays)."""
    wall_start = time.perf_counter()
    world = SimWorld(study, latency_model=latency_model)
    if study.routing:
        world.settings = replace(world.settings, **dict(study.routing))  # before nodes exist
    recorder = LookupRecorder(world.ids, study.lookups, progress)
    known = KnownRtts(world, study)
    world.attach(recorder.on_event)
    lookups_start = world.converge(progress, recorder.running)
    realistic = world.realism

    def start_lookup(source: int, target: int) -> None:
        source, target = realistic.pick_pair(source, target)
        if source < 0:
            return  # churn: nobody online to look up from or for
        known.seed(source)
        if study.urgent:
            world.command(source, lambda node, now: start_urgent(recorder, node, source, target,
                                                                 now))
        else:
            world.command(source, lambda node, now: recorder.start(node, source, target, now))

    for when, source, target in poisson_pairs(world.rng, study.nodes, study.lookups,
                                               lookups_start, study.lookup_rate):
        world.at(when, lambda s=source, t=target: start_lookup(s, t))

    env = world.env
    env.run(until=lookups_start)
    log.info("network of %d nodes converged at t=%.1f s", study.nodes, env.now)
    converged_wall = time.perf_counter()
    events_before = env.scheduled
    queued = env.pending  # pending events when lookups start (a timer per node, ...)
    realistic.measure_from(env.now)
    rows = recorder.rows
    while len(rows) + realistic.unfinished < study.lookups:
        env.step()
    rows = recorder.sorted_rows()
    wall = time.perf_counter() - wall_start
    phases = {
        "build_s": round(converged_wall - wall_start, 3),
        "lookup_s": round(time.perf_counter() - converged_wall, 3),
        "sim_events": env.scheduled - events_before,
        "sim_queue": queued,
    }
    summary = summarize(study, rows, wall) | realistic.summary(world.network) | phases
    if study.routing or study.rtt_known or study.urgent:  # the latency study's figures
        summary["rtt_measured_share"] = (statistics.fmean(known.measured) if known.measured
                                         else math.nan)
    return StudyResult(study, rows, summary, environment())


def start_urgent(recorder: LookupRecorder, node: Any, source: int, target: int, now: float) -> None:
    """`recorder.start` for a call's lookup (urgent: RoutingSettings.urgent_*)."""
    lookup_id = node.routing.find_peer(recorder.ids[target], now, urgent=True)
    recorder.running[(source, lookup_id)] = (target, now)


class KnownRtts:
    """Loads a share (`rtt_known`) of a lookup source's table entries into its per-contact
    round trips before its first lookup, from the latency model (twice the one-way delay):
    a node that joined by the protocol measured the contacts its join and refreshes asked; the
    fast bootstrap builds tables without a datagram. Its own generator: the world's draws stay
    those of a study without it."""

    def __init__(self, world: SimWorld, study: LookupStudy):
        self.world = world
        self.share = study.rtt_known
        self.rng = Random(study.seed * 7919 + 17)
        self.done: set[int] = set()
        self.measured: list[float] = []  # per source: share of its table with a measured RTT
        # only in the latency study's variants: the plain study (and its wall time) is untouched
        self.active = bool(study.routing or study.rtt_known or study.urgent)

    def seed(self, source: int) -> None:
        if not self.active or source in self.done or source < 0:
            return
        self.done.add(source)
        routing = self.world.driver.nodes[source].routing
        handles = sorted(routing.table.handles())
        addrs, rtts = routing.registry.addrs, routing.rtts
        if handles:
            self.measured.append(sum(1 for h in handles if rtts is not None and addrs[h] in rtts)
                                 / len(handles))
        if not self.share:
            return
        delay = self.world.base_latency.delay
        for handle in handles:
            if self.share >= 1.0 or self.rng.random() < self.share:
                addr = addrs[handle]
                routing.observe_contact_rtt(addr, 2 * delay(source, addr))


def study_parameters(study: LookupStudy) -> dict[str, Any]:
    return asdict(study) | {"wire_mode": study.wire_mode}


def main(argv: list[str] | None = None) -> int:
    """The lookup-latency study's variants (`kadtalk sim lookup` has no RoutingSettings flags):

        python -m kadtalk.experiments.lookup --nodes 1000000 --bootstrap fast \\
            --set rtt_choice_bits=2 --set contact_slow=True --rtt-known 1

    Prints the summary as one JSON line."""
    import argparse
    import ast
    import json

    parser = argparse.ArgumentParser(prog="python -m kadtalk.experiments.lookup",
                                     description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", choices=BOOTSTRAPS, default="fast")
    parser.add_argument("--churn", choices=("none", "exponential", "weibull"), default="none")
    parser.add_argument("--urgent", action="store_true", help="lookups as a call's")
    parser.add_argument("--rtt-known", type=float, default=0.0, metavar="SHARE")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a RoutingSettings field (Python literal), repeatable")
    args = parser.parse_args(argv)
    routing = tuple((name, ast.literal_eval(value))
                    for name, value in (item.split("=", 1) for item in args.set))
    study = LookupStudy(nodes=args.nodes, lookups=args.lookups, seed=args.seed,
                        bootstrap=args.bootstrap, churn=args.churn, urgent=args.urgent,
                        rtt_known=args.rtt_known, routing=routing)
    summary = run_lookup_study(study).summary
    print(json.dumps(summary | {"routing": dict(routing), "urgent": args.urgent,
                                "rtt_known": args.rtt_known, "churn": args.churn}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
