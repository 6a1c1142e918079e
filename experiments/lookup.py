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
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from random import Random
from typing import Any, Callable

import simpy

from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node
from kadtalk.sim.bootstrap import ConvergedTables
from kadtalk.experiments import realism
from kadtalk.sim.latency import MODELS
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

log = logging.getLogger(__name__)

# How the network converges: every node joins through the protocol, or tables are computed by
# sim/bootstrap.py as the protocol's join leaves them ("fast") or as uptime alone would ("fast-uptime").
BOOTSTRAPS = ("protocol", "fast", "fast-uptime")
JOIN_RETRY_DELAY = 1.0  # seconds before a node whose join found nobody tries again

# Summary fields measured on the wall clock: they differ between runs of the same study.
WALL_CLOCK_FIELDS = frozenset({"wall_s", "peak_rss_mb", "build_s", "lookup_s"})

ROW_FIELDS = ("start", "source", "target", "latency_ms", "rpcs", "hops", "timeouts", "success")


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
        realism.check(self)

    @property
    def wire_mode(self) -> str:
        if self.wire != "auto":
            return self.wire
        return "bytes" if self.nodes <= 2000 else "objects"


@dataclass
class StudyResult:
    study: LookupStudy
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)


def unique_ids(count: int, rng: Random) -> list[int]:
    """`count` distinct random 160-bit IDs (stand-ins for SHA-1 of public keys)."""
    seen: set[int] = set()
    ids = []
    while len(ids) < count:
        node_id = rng.getrandbits(160)
        if node_id not in seen:
            seen.add(node_id)
            ids.append(node_id)
    return ids


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


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


def environment() -> dict[str, Any]:
    import kadtalk

    return {
        "kadtalk": kadtalk.__version__,
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


Progress = Callable[[str, int, int], None]


def run_lookup_study(study: LookupStudy, progress: Progress | None = None,
                     latency_model: Any = None) -> StudyResult:
    """Build, converge and measure; deterministic for a given study (seed included).

    `latency_model`, when given, is used instead of a fresh instance of the study's named model
    (for models built from data, e.g. sim.latency.SiteMatrixLatency with measured delays)."""
    wall_start = time.perf_counter()
    rng = Random(study.seed)
    ids = unique_ids(study.nodes, rng)
    env = simpy.Environment()
    latency = latency_model if latency_model is not None else realism.make_latency(study)
    for _ in range(study.nodes):
        latency.add_node(rng)
    latency = realism.with_jitter(study, latency)
    world = realism.World(study, env, ids)  # churn, NAT, traffic: only what the study switched on
    network = SimNetwork(env, latency, Random(rng.getrandbits(64)), loss=study.loss,
                         nat=world.nat, tap=world.tap)
    registry = SharedRegistry(ids)
    settings = RoutingSettings(
        k=study.k,
        alpha=study.alpha,
        request_timeout=study.request_timeout,
        refresh_on_join=study.refresh_on_join,
    )

    joined: list[int] = [0]  # addresses that finished joining; node 0 starts the network
    rows: list[dict[str, Any]] = []
    running: dict[tuple[int, int], tuple[int, float]] = {}  # (source, lookup id) -> (target, start)

    def on_event(addr: int, event: Any) -> None:
        if type(event) is LookupCompleted:
            target, start = running.pop((addr, event.lookup_id))
            rows.append(
                {
                    "start": start,
                    "source": addr,
                    "target": target,
                    "latency_ms": event.latency * 1000.0,
                    "rpcs": event.rpcs,
                    "hops": event.hops,
                    "timeouts": event.timeouts,
                    "success": event.peer is not None and event.peer[1] == target,
                }
            )
            if progress:
                progress("lookups", len(rows), study.lookups)
        elif type(event) is Joined:
            if world.handles_join(addr, event.success):
                return  # churn runs: the world keeps track of who is up and joined
            if not event.success:
                # Nobody answered (the bootstrap's reply was lost, say): a real newcomer tries
                # again through another known node; it never serves as a bootstrap meanwhile.
                at(env.now + JOIN_RETRY_DELAY, lambda: join_through_known(addr))
                return
            joined.append(addr)
            if progress and (len(joined) % 100 == 0 or len(joined) == study.nodes):
                progress("join", len(joined), study.nodes)

    driver = SimDriver(env, network, on_event, wire=study.wire_mode)
    # One generator for all nodes: the event order is deterministic, so runs still reproduce, and
    # a Random per node would cost 2.5 KB each.
    node_rng = Random(rng.getrandbits(64))

    def start_node(index: int) -> None:
        addr = driver.add(Node(ids[index], registry, node_rng, settings, env.now))
        if index:
            join_through_known(addr)

    def at(when: float, action: Callable[[], None]) -> None:
        event = simpy.Timeout(env, when - env.now)
        event.callbacks.append(lambda _e: action())

    def join_through_known(addr: int) -> None:
        """Join through a random node that has finished joining (as a newcomer is told of one)."""
        node = driver.nodes[addr]
        if node is None:
            return  # it left (churn) before trying again; it joins afresh when it comes back
        node.join([joined[rng.randrange(len(joined))]], env.now)
        driver.service(addr)

    world.attach(driver, lambda addr: Node(ids[addr], registry, node_rng, settings, env.now),
                 running, joined, registry)
    if study.bootstrap != "protocol":
        seed = rng.getrandbits(32)
        converge_fast(study, ids, registry, node_rng, settings, driver, progress, seed)
        joined[:] = range(study.nodes)
        lookups_start = max(1.0, study.settle)  # churn, if any, runs from 0: tables meet it first
    else:
        for index in range(study.nodes):
            at(index * study.join_interval, lambda index=index: start_node(index))
        lookups_start = (study.nodes - 1) * study.join_interval + study.settle

    world.start_churn(lookups_start - study.settle)

    def start_lookup(source: int, target: int) -> None:
        source, target = world.pick_pair(source, target)
        if source < 0:
            return  # churn: nobody online to look up from or for
        node = driver.nodes[source]
        lookup_id = node.find_peer(ids[target], env.now)
        running[(source, lookup_id)] = (target, env.now)
        driver.service(source)

    when = lookups_start
    for _ in range(study.lookups):
        source = rng.randrange(study.nodes)
        target = rng.randrange(study.nodes - 1)
        target += target >= source
        at(when, lambda s=source, t=target: start_lookup(s, t))
        when += rng.expovariate(study.lookup_rate)

    env.run(until=lookups_start)
    log.info("network of %d nodes converged at t=%.1f s", study.nodes, env.now)
    converged_wall = time.perf_counter()
    events_before = next(env._eid)  # SimPy numbers every event it schedules
    queued = len(env._queue)  # pending events when lookups start (a timer per node, ...)
    world.measure_from(env.now)
    while len(rows) + world.unfinished < study.lookups:
        env.step()
    rows.sort(key=lambda r: (r["start"], r["source"]))
    wall = time.perf_counter() - wall_start
    phases = {
        "build_s": round(converged_wall - wall_start, 3),
        "lookup_s": round(time.perf_counter() - converged_wall, 3),
        "sim_events": next(env._eid) - events_before - 1,
        "sim_queue": queued,
    }
    summary = summarize(study, rows, wall) | world.summary(network) | phases
    return StudyResult(study, rows, summary, environment())


def converge_fast(
    study: LookupStudy,
    ids: list[int],
    registry: SharedRegistry,
    node_rng: Random,
    settings: RoutingSettings,
    driver: SimDriver,
    progress: Progress | None,
    seed: int,
) -> None:
    """Attach every node with the converged table of sim/bootstrap.py (node i joined i-th)."""
    rule = "uptime" if study.bootstrap == "fast-uptime" else "join"
    tables = ConvergedTables(ids, study.k, rule=rule, spread=min(study.alpha, study.k), seed=seed)
    nodes: list[Node | None] = [None] * study.nodes
    for done, (index, entries, sizes) in enumerate(tables.tables(), 1):
        node = Node(ids[index], registry, node_rng, settings, 0.0)
        node.routing.table.load(entries, sizes, 0.0)
        nodes[index] = node
        if progress and (done % 10_000 == 0 or done == study.nodes):
            progress("join", done, study.nodes)
    tables.release()
    for node in nodes:
        driver.add(node)


def study_parameters(study: LookupStudy) -> dict[str, Any]:
    return asdict(study) | {"wire_mode": study.wire_mode}
