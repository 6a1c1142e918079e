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
from array import array
from dataclasses import asdict, dataclass, field, replace
from itertools import zip_longest
from random import Random
from typing import Any, Callable

import numpy as np

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
    JOIN_RTT_SAMPLES,
    bucket_bits,
    load_converged,
    unique_ids,
    wire_mode,
)
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.node.routing.messages import ID_BITS
from kadtalk.sim.latency import MODELS, JitteredLatency

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
    # Fast bootstrap only: every full bucket whose range holds more than k nodes as the node's
    # proximity rule (RoutingSettings.proximity) leaves it after measuring `near` random members
    # of that range (a refresh or a lookup into the range measures ~10), by the node's own code
    # (ProximityWorld, meet_newcomers). 0: the join's tables as they are.
    near: int = 0
    # With `near`: the entries of a bucket each lookup into its range asks first (its first
    # round, `alpha` in the node), measured before that lookup's newcomers answer
    # (meet_newcomers' `asks`). 0: the join's entries stay unmeasured (sessions 7-9's build).
    near_asks: int = 0

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
        if self.near < 0 or (self.near and self.bootstrap == "protocol"):
            raise ValueError("near is a count >= 0, for the fast bootstrap only")
        if self.near_asks < 0 or (self.near_asks and not self.near):
            raise ValueError("near_asks is a count >= 0, with near")
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
    world = (ProximityWorld if study.near else SimWorld)(study, latency_model=latency_model)
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
    if study.routing or study.rtt_known or study.urgent or study.near:  # the latency study's
        summary["rtt_measured_share"] = (statistics.fmean(known.measured) if known.measured
                                         else math.nan)
        # what the proximity rule changes: a source's mean round trip to its table's entries
        # (the model's, for the record; the node knows only what it measured)
        summary["table_rtt_ms"] = (statistics.median(known.table_rtt) * 1000
                                   if known.table_rtt else math.nan)
        # nodes built (above SimWorld.lazy_above only those the run reached; else all)
        summary["nodes_built"] = study.nodes - getattr(world.driver.nodes, "dormant", 0)
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
        self.table_rtt: list[float] = []  # per source: mean model round trip to its entries
        # only in the latency study's variants: the plain study (and its wall time) is untouched
        self.active = bool(study.routing or study.rtt_known or study.urgent or study.near)

    def seed(self, source: int) -> None:
        if not self.active or source in self.done or source < 0:
            return
        self.done.add(source)
        routing = self.world.driver.nodes[source].routing
        table = routing.table  # its entries (not the replacement caches)
        handles = sorted(h for c in range(table.bucket_count()) for h in table.bucket(c))
        addrs = routing.registry.addrs
        delay = self.world.base_latency.delay
        if self.share:
            for handle in handles:
                if self.share >= 1.0 or self.rng.random() < self.share:
                    addr = addrs[handle]
                    routing.observe_contact_rtt(addr, 2 * delay(source, addr))
        if handles:  # what the first lookup starts with: the loaded round trips counted too
            rtts = routing.rtts  # (made by the first sample)
            self.measured.append(sum(1 for h in handles if rtts is not None and addrs[h] in rtts)
                                 / len(handles))
            self.table_rtt.append(statistics.fmean(
                delay(source, addrs[h]) + delay(addrs[h], source) for h in handles))


class ProximityWorld(SimWorld):
    """A world whose fast-bootstrapped tables are what the node's proximity rule leaves after
    `near` measured newcomers per full bucket (ProximityTables draws them, `meet_newcomers`
    runs the node's own code on them).

    A node's newcomers and their round trips come from generators of its own (seeded by the
    tables' seed and its address), so a node's table does not depend on when it is built:
    above `lazy_above` nodes (SimWorld's rule, 10^5) each is built, and meets its
    newcomers, on first use (sim/lazy.py's LazyDriver), the same node as built eagerly (a test
    compares both runs byte for byte). 10^4 lookups in 10^6 peers reach about one node in ten,
    so the node's rule runs for those only."""

    def _converge_fast(self, seed: int) -> None:
        """As SimWorld's (sim.load_converged: the join's table, its JOIN_RTT_SAMPLES round
        trips), then each node meets its newcomers before the network starts."""
        spec = self.spec
        rule = "uptime" if spec.bootstrap == "fast-uptime" else "join"
        if bucket_bits(self.settings) != 1:
            raise ValueError("near: ProximityTables draws newcomers per prefix bucket, not for "
                             "bucket_bits > 1 (its sub-buckets)")
        tables = ConvergedTables(self.ids, spec.k, rule=rule, spread=min(spec.alpha, spec.k),
                                 seed=seed, store="rows" if self.lazy else "flat")
        near = ProximityTables(self.ids, spec.k, spec.near, seed)
        if self.lazy:
            self._attach_lazily(tables, near)
            return
        n = len(tables)
        nodes: list[Any] = [None] * n
        for done, (index, entries, sizes) in enumerate(tables.tables(), 1):
            nodes[index] = self._near_node(near, index, entries, sizes)
            if self.progress and (done % 10_000 == 0 or done == n):
                self.progress("join", done, n)
        tables.release()
        for node in nodes:
            self.driver.add(node)

    def _attach_lazily(self, tables: ConvergedTables, near: "ProximityTables") -> None:
        """sim.lazy.attach_lazily's way, with the newcomers met at the build: node 0 is built
        once first to read the deadline of the timer every node shares."""
        deadline = self._near_node(near, 0, *tables.row(0)).get_timer()
        if deadline is None:
            raise ValueError("lazily built nodes need a timer (the table's refresh)")

        def wake(index: int) -> Any:
            node = self._near_node(near, index, *tables.row(index))
            if node.get_timer() != deadline:
                raise RuntimeError(f"node {index} would arm its timer at {node.get_timer()}, "
                                   f"not {deadline}: it cannot be built lazily")
            return node

        self.driver.add_dormant(len(tables), wake, deadline)
        if self.progress:
            self.progress("join", len(tables), len(tables))

    def _near_node(self, near: "ProximityTables", index: int, entries: array,
                   sizes: bytearray) -> Any:
        """Node `index` with the join's table and round trips, after meeting its newcomers (a
        measured round trip has the run's jitter, if any, from the node's own generator)."""
        base = self.base_latency
        node = self.new_node(index, 0.0)
        routing = node.routing
        routing.table.load(entries, sizes, 0.0)
        for handle in entries[-JOIN_RTT_SAMPLES:]:
            routing.observe_round_trip(base.delay(index, handle) + base.delay(handle, index))
        jitter = self.spec.jitter
        delay = (JitteredLatency(base, jitter, Random((near.seed ^ 0x717) << 32 | index)).delay
                 if jitter else base.delay)
        meet_newcomers(routing, near.newcomers(index, sizes),
                       lambda h: delay(index, h) + delay(h, index), 0.0,
                       asks=self.spec.near_asks)
        return node


def meet_newcomers(routing: Any, buckets: list[list[int]], round_trip: Callable[[int], float],
                   now: float, forget: bool = True, asks: int = 0) -> None:
    """`routing` (a RoutingLayer) meets the newcomers of each bucket (addresses, as drawn),
    round robin over its buckets as its lookups and refreshes would: each answers a lookup
    request after `round_trip(addr)` (RoutingLayer.measured_answer: the node's and the
    contact's round trip) and, if the node would probe it, the probe (admit_probed: the uptime
    rule, then RoutingSettings.proximity's on a full bucket, entries never measured counted as
    the node's average). The node's code decides; nothing here knows a round trip it did not
    measure. Then the per-contact estimates are forgotten (~300 a node would not fit at 10^5;
    the study's `rtt_known` sets what the lookups start with, as without `near`); `forget`
    False keeps them, as a real node does (the attack study's matured victim).

    `asks` > 0: each `NEAR_PER_LOOKUP` newcomers of a bucket come from one lookup into its
    range, whose first round asks the `asks` entries of the bucket closest to that lookup's
    target (taken as the first newcomer's ID: a random member of the range) before the
    newcomers answer: the node measures its own entries as a running node does (what
    RoutingSettings.proximity_measured needs to displace any). 0: the entries stay unmeasured
    (the build of sessions 7-9)."""
    registry = routing.registry
    ids = registry.ids
    intern = registry.intern
    table = routing.table
    for rank, met in enumerate(zip_longest(*buckets)):
        first_round = asks and rank % NEAR_PER_LOOKUP == 0
        for addr in met:
            if addr is None:
                continue
            if first_round:
                target = ids[addr]
                bucket = table.bucket(table.bucket_index(target))
                for entry in sorted(bucket, key=lambda h: ids[h] ^ target)[:asks]:
                    routing.measured_answer(entry, round_trip(registry.addrs[entry]), now)
            handle = intern(ids[addr], addr)
            if routing.measured_answer(handle, round_trip(addr), now):
                routing.admit_probed(handle, now)
    if forget:
        routing.rtts = None


NEAR_PER_LOOKUP = 10  # newcomers of a range one lookup or refresh into it meets (~10)


class ProximityTables:
    """Draws the newcomers a node of sim.bootstrap.ConvergedTables meets: for each full
    bucket of node a whose range (the IDs sharing exactly c leading bits with a's) holds more
    than k nodes, `near` members of that range drawn at random (repeats as drawn: a node may
    meet one twice), from a generator of the node's own (seed, address), so the draws do not
    depend on the order nodes are built in. What the node keeps is decided by its own rule
    (ProximityWorld, meet_newcomers)."""

    def __init__(self, ids: list[int], k: int, near: int, seed: int):
        self.k, self.near, self.seed = k, near, seed
        shift = ID_BITS - 64
        self.keys = np.fromiter((i >> shift for i in ids), np.uint64, len(ids))  # top 64 bits
        self.order = np.argsort(self.keys, kind="stable")
        self.sorted_keys = self.keys[self.order]

    def newcomers(self, index: int, sizes: bytearray) -> list[list[int]]:
        """Node `index`'s newcomers, one list per full bucket (in bucket order) whose range
        holds more than k nodes; `sizes` its table's bucket sizes."""
        k = self.k
        depth = [c for c, size in enumerate(sizes) if size == k and c < 64]
        if not depth:
            return []
        low_bits = np.uint64(63) - np.asarray(depth, dtype=np.uint64)
        sibling = ((self.keys[index] >> low_bits) ^ np.uint64(1)) << low_bits
        lo = np.searchsorted(self.sorted_keys, sibling, side="left")
        hi = np.searchsorted(self.sorted_keys, sibling | ((np.uint64(1) << low_bits)
                                                          - np.uint64(1)), side="right")
        big = np.flatnonzero(hi - lo > k)
        if not big.size:
            return []
        rng = np.random.default_rng((self.seed ^ 0x5EED, index))
        drawn = lo[big, None] + (rng.random((big.size, self.near))
                                 * (hi - lo)[big, None]).astype(np.int64)
        return self.order[drawn].tolist()


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
    parser.add_argument("--settle", type=float, default=LookupStudy.settle, metavar="SECONDS",
                        help="between the last join and the first lookup (with --set "
                             "refresh_interval=S: refreshes measure contacts meanwhile)")
    parser.add_argument("--rtt-known", type=float, default=0.0, metavar="SHARE")
    parser.add_argument("--near", type=int, default=0, metavar="M",
                        help="tables as the proximity rule leaves them after M measured "
                             "members of each bucket's range (fast bootstrap)")
    parser.add_argument("--near-asks", type=int, default=0, metavar="A",
                        help="with --near: each lookup into a range (10 newcomers) first asks "
                             "the A entries of its bucket closest to its target, measuring them")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a RoutingSettings field (Python literal), repeatable")
    parser.add_argument("--heapq", action="store_true",
                        help="after the run, time benchmarks.sim_scale's bare heapq loop on as "
                             "many events (run from the source tree): the machine's speed")
    args = parser.parse_args(argv)
    from dataclasses import fields

    from kadtalk.node.routing.layer import RoutingSettings

    known = {f.name for f in fields(RoutingSettings)}
    routing = []
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or name not in known:
            parser.error(f"--set {item}: NAME=VALUE with NAME a RoutingSettings field "
                         f"(e.g. bucket_bits=3, refresh_groups=True)")
        try:
            routing.append((name, ast.literal_eval(text)))
        except (ValueError, SyntaxError):
            parser.error(f"--set {item}: the value must be a Python literal (True, False, 3, "
                         f"0.5, 'text'), not {text!r}")
    try:
        RoutingSettings(**dict(routing))
    except (TypeError, ValueError) as error:
        parser.error(f"--set: {error}")
    routing = tuple(routing)
    study = LookupStudy(nodes=args.nodes, lookups=args.lookups, seed=args.seed,
                        bootstrap=args.bootstrap, churn=args.churn, urgent=args.urgent,
                        rtt_known=args.rtt_known, routing=routing, near=args.near,
                        near_asks=args.near_asks, settle=args.settle)
    summary = run_lookup_study(study).summary
    extra: dict[str, Any] = {"cpu_s": round(time.process_time(), 1)}
    if args.heapq:
        from benchmarks.sim_scale import heapq_events_per_s

        extra["heapq_events_per_s"] = round(heapq_events_per_s(
            summary["sim_events"], summary["sim_queue"], args.seed, time.process_time))
    print(json.dumps(summary | extra | {"routing": dict(routing), "urgent": args.urgent,
                                        "rtt_known": args.rtt_known, "churn": args.churn,
                                        "near": args.near, "near_asks": args.near_asks,
                                        "settle": args.settle}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
