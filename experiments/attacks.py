"""Attack studies in the simulator: Sybil / eclipse against one ID, and a region going dark.

Honest peers are the real `Node` class on the SimPy driver; attacker nodes are
`kadtalk.sim.adversary.SybilNode`s speaking the same wire format. Results are tidy tables: one
row per lookup, plus one summary row per study; `figures()` runs the standard sweeps and writes
CSV files and PNG figures (what `kadtalk sim attack figures` and notebooks/attacks.ipynb do).

Sybil / eclipse (`SybilStudy`). The attacker runs `share` of all nodes. Its IDs are random (one
key each), "free" (chosen next to the victim's ID, as a protocol without ID = SHA-1(key) would
allow) or "keygen" (the best of `keys_per_id` keys per node: closeness bought with CPU time).
Every attacker node answers every ROUTE_REQ with the attacker's own contacts closest to the
target, never an honest one, and (`impersonate`) with a fake entry for the target itself at an
attacker address. Honest lookups look for the victim (target="one": an eclipse of one ID) or
for random honest peers (target="random": interception anywhere). Measured per lookup:
`success` (the lookup returned an address for the target) and `reached` (it was the target's
true address). Defences, each a switch:

- tables="uptime": the attacker arrived after the network formed and buckets keep their
  long-lived entries (kadtalk's rule); tables="mixed": the attacker's nodes are as old as honest
  ones (ages interleaved at random: it was there from the start, or waited), so uptime buys
  nothing; tables="newest": buckets favour newcomers, so the attacker's entries win every
  bucket they compete in (a table without the uptime rule);
- paths=d: S/Kademlia's disjoint-path lookups;
- verify: a target entry is checked before the lookup ends, as the key exchange of a call
  checks it (an attacker cannot sign for the victim's key, whose SHA-1 is the victim's ID): a
  fake is dropped and the lookup goes on;
- subnet_limit=n: at most n entries of one /24 per bucket; honest peers sit in distinct /24s,
  the attacker's nodes in `attacker_subnets` of them.

Tables come from the fast bootstrap's "uptime" rule (sim/bootstrap.py: each bucket holds the k
oldest of its range) with the attacker last (tables="uptime"), interleaved ("mixed") or first
("newest") in the age order; honest nodes' ages are a random order, the victim a random one.

Partition (`PartitionStudy`). On the coordinate plane, the `region` share of nodes farthest
west goes dark at `dark_at` (every datagram to or from it is lost) and returns `dark_for` seconds
later with the tables it had. Lookups between random pairs run throughout (none starts at a dark
node); a lookup succeeds when it finds the target's address and the target is reachable when it
ends (a call could go on). Reported: success per time bin, the time after the return until
success is back within `tolerance` of its level before the outage, and how many table entries
for region nodes the rest of the network kept through the outage.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from random import Random
from typing import Any, Callable, Iterable, Sequence

TABLES = ("uptime", "mixed", "newest")
TARGETS = ("one", "random")

# The defence sets of the standard figures, as overrides of a SybilStudy.
DEFENCES: dict[str, dict[str, Any]] = {
    "none (newest wins)": {"tables": "newest"},
    "uptime (attacker late)": {"tables": "uptime"},
    "as old as honest": {"tables": "mixed"},
    "verify": {"tables": "mixed", "verify": True},
    "verify+4 paths": {"tables": "mixed", "verify": True, "paths": 4},
    "/24 limit": {"tables": "mixed", "subnet_limit": 2},
    "verify+4 paths+/24": {"tables": "mixed", "verify": True, "paths": 4, "subnet_limit": 2},
}
SHARES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class SybilStudy:
    nodes: int = 1000  # honest nodes
    share: float = 0.1  # the attacker's share of all nodes
    ids: str = "free"  # random | free | keygen (sim/adversary.py: sybil_ids)
    keys_per_id: float = 1e6  # ids=keygen: keys generated per attacker node
    impersonate: bool = True  # attacker nodes hand out a fake entry for the target itself
    target: str = "one"  # one: every lookup is for the victim; random: random honest targets
    tables: str = "uptime"  # uptime | newest (see the module's docstring)
    paths: int = 1  # disjoint lookup paths (S/Kademlia); 1: a plain Kademlia lookup
    verify: bool = False  # check the target entry by its key before the lookup ends
    subnet_limit: int = 0  # at most this many entries of one /24 per bucket; 0: no limit
    attacker_subnets: int = 4  # /24 networks the attacker's nodes sit in
    lookups: int = 200
    k: int = 20
    alpha: int = 3
    request_timeout: float = 1.0
    latency: str = "coordinate"
    lookup_rate: float = 20.0
    seed: int = 1

    def __post_init__(self) -> None:
        from kadtalk.sim.adversary import ID_CHOICES

        if self.nodes < 3:
            raise ValueError("a Sybil study needs at least 3 honest nodes")
        if not 0.0 <= self.share < 1.0:
            raise ValueError("share must be in [0, 1)")
        if self.ids not in ID_CHOICES:
            raise ValueError(f"ids must be one of {', '.join(ID_CHOICES)}")
        if self.tables not in TABLES:
            raise ValueError(f"tables must be one of {', '.join(TABLES)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        if self.paths < 1 or self.subnet_limit < 0 or self.attacker_subnets < 1:
            raise ValueError("paths and attacker_subnets must be >= 1, subnet_limit >= 0")
        if self.keys_per_id < 1:
            raise ValueError("keys_per_id must be >= 1")

    @property
    def sybils(self) -> int:
        return round(self.share / (1.0 - self.share) * self.nodes)


@dataclass
class AttackResult:
    study: Any
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


@functools.lru_cache(maxsize=1)
def keygen_rate(samples: int = 200) -> float:
    """Identities a second on this machine: an ECDSA P-256 key, its DER SubjectPublicKeyInfo and
    the SHA-1 of it (what an attacker must do per candidate ID). Measured once per process."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    start = time.perf_counter()
    for _ in range(samples):
        key = ec.generate_private_key(ec.SECP256R1())
        hashlib.sha1(key.public_key().public_bytes(der, spki)).digest()
    return samples / (time.perf_counter() - start)


def _latency(name: str) -> Any:
    from kadtalk.sim.latency import MODELS

    if name not in ("constant", "coordinate", "sphere"):
        raise ValueError("latency must be constant, coordinate or sphere")
    return MODELS[name]()


def _prefix(a: int, b: int) -> int:
    return 160 - (a ^ b).bit_length()


class _SubnetLimit:
    """Converged "uptime" tables under the per-/24 limit: a bucket holding more than `limit`
    entries of one /24 is chosen again from its whole range, oldest first, skipping nodes of a
    /24 that already has `limit` entries there (what the limit, applied as nodes arrive, leaves
    behind: the room the attacker cannot take goes to the next oldest honest nodes)."""

    def __init__(
        self,
        ids: Sequence[int],
        age_rank: Sequence[int],
        subnets: Sequence[int],
        k: int,
        limit: int,
    ):
        self.order = sorted(range(len(ids)), key=ids.__getitem__)
        self.keys = [ids[i] for i in self.order]
        self.age_rank, self.subnets, self.k, self.limit = age_rank, subnets, k, limit

    def table(self, own: int, entries: Any, sizes: bytearray) -> tuple[Any, bytearray, int]:
        from array import array
        from bisect import bisect_left

        subnets, limit = self.subnets, self.limit
        out, new_sizes, changed, pos = array("i"), bytearray(sizes), 0, 0
        for c, size in enumerate(sizes):
            bucket = entries[pos : pos + size]
            pos += size
            counts: dict[int, int] = {}
            for h in bucket:
                counts[subnets[h]] = counts.get(subnets[h], 0) + 1
            if not counts or max(counts.values()) <= limit:
                out.extend(bucket)
                continue
            shift = 159 - c
            low = ((own >> shift) ^ 1) << shift
            lo, hi = bisect_left(self.keys, low), bisect_left(self.keys, low + (1 << shift))
            chosen: list[int] = []
            per: dict[int, int] = {}
            for h in sorted(self.order[lo:hi], key=self.age_rank.__getitem__):
                if per.get(subnets[h], 0) >= limit:
                    continue
                per[subnets[h]] = per.get(subnets[h], 0) + 1
                chosen.append(h)
                if len(chosen) == self.k:
                    break
            changed += len(set(bucket) - set(chosen))
            out.extend(chosen)
            new_sizes[c] = len(chosen)
        return out, new_sizes, changed


def run_sybil_study(study: SybilStudy) -> AttackResult:
    """Build the network with the attacker in it, run the lookups; deterministic per study."""
    from kadtalk.experiments.harness.world import at, simulated_network, unique_ids
    from kadtalk.node.routing.events import LookupCompleted
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.node.stack import Node
    from kadtalk.sim.adversary import Collusion, SybilNode, sybil_ids
    from kadtalk.sim.bootstrap import ConvergedTables
    from kadtalk.sim.registry import SharedRegistry

    wall = time.perf_counter()
    rng = Random(study.seed)
    n = study.nodes
    honest = unique_ids(n, rng)
    age_rng = Random(rng.getrandbits(64))
    honest_age = list(range(n))
    age_rng.shuffle(honest_age)
    victim = honest_age.index(n // 2)  # a node of median age: neither an elder nor a newcomer
    target_id = honest[victim]
    m = study.sybils
    taken = set(honest)
    # The attacker's IDs come from their own generator, so the honest network (IDs, positions,
    # lookups) is the same at every share and defence: runs compare pair by pair.
    attacker_rng = Random(rng.getrandbits(64))
    evil = sybil_ids(m, target_id, attacker_rng, study.ids, study.keys_per_id, taken)
    ids = honest + evil
    subnet_rng = Random(rng.getrandbits(64))
    subnets = [subnet_rng.getrandbits(24) for _ in range(n)]
    subnets += [(1 << 24) + j % study.attacker_subnets for j in range(m)]
    registry = SharedRegistry(list(ids), subnets)
    settings = RoutingSettings(
        k=study.k,
        alpha=study.alpha,
        request_timeout=study.request_timeout,
        refresh_on_join=False,
        max_per_subnet=study.subnet_limit,
    )
    latency = _latency(study.latency)
    place_rng = Random(rng.getrandbits(64))
    for _ in range(n + m):
        latency.add_node(place_rng)
    network_rng = Random(rng.getrandbits(64))
    rows: list[dict[str, Any]] = []
    running: dict[tuple[int, int], tuple[int, float]] = {}

    def on_event(addr: int, event: Any) -> None:
        if type(event) is not LookupCompleted:
            return
        target, start = running.pop((addr, event.lookup_id))
        found = event.peer[1] if event.peer is not None else None
        rows.append(
            {
                "start": start,
                "source": addr,
                "target": target,
                "success": found is not None,
                "reached": found == target,
                "intercepted": found is not None and found != target,
                "rejected": event.rejected,
                "rpcs": event.rpcs,
                "hops": event.hops,
                "timeouts": event.timeouts,
                "latency_ms": event.latency * 1000.0,
            }
        )

    env, _, driver = simulated_network(latency, network_rng, on_event,
                                       "objects" if n + m > 2000 else "bytes")
    if study.tables == "uptime":
        age: list[float] = honest_age + list(range(n, n + m))  # the attacker came later
    elif study.tables == "newest":
        age = honest_age + [-1.0 - j for j in range(m)]  # the attacker's entries win
    else:  # each attacker node as old as a random honest one; honest order unchanged
        age = honest_age + [attacker_rng.random() * n for _ in range(m)]
    rank = sorted(range(n + m), key=age.__getitem__)
    age_rank = [0] * (n + m)
    for position, index in enumerate(rank):
        age_rank[index] = position
    tables = ConvergedTables(ids, study.k, age_rank=age_rank, rule="uptime")
    node_rng = Random(rng.getrandbits(64))
    collusion = Collusion(evil, list(range(n, n + m)), study.k, study.impersonate)
    limiter = (
        _SubnetLimit(ids, age_rank, subnets, study.k, study.subnet_limit)
        if study.subnet_limit
        else None
    )
    trimmed = 0
    for i in range(n):
        node = Node(ids[i], registry, node_rng, settings, 0.0)
        entries, sizes = tables.entries(i), tables.sizes(i)
        if limiter is not None:
            entries, sizes, changed = limiter.table(ids[i], entries, sizes)
            trimmed += changed
        node.routing.table.load(entries, sizes, 0.0)
        driver.add(node)
    for j in range(m):
        driver.add(SybilNode(evil[j], collusion, registry))
    # how many honest tables the attacker got into, and how deep near the victim
    infested = sum(
        1 for i in range(n) if any(h >= n for h in driver.nodes[i].routing.table.handles())
    )
    near = sorted((i for i in range(n) if i != victim), key=lambda i: ids[i] ^ target_id)[: study.k]
    near_share = statistics.fmean(
        sum(1 for h in driver.nodes[i].routing.table.handles() if registry.addrs[h] >= n)
        / max(1, len(driver.nodes[i].routing.table))
        for i in near
    )
    tables.release()

    addrs, reg_ids = registry.addrs, registry.ids

    def genuine(handle: int) -> bool:
        """What the key exchange would find: the entry's address is an honest node's, and that
        node's key hashes to the entry's ID."""
        addr = addrs[handle]
        return addr < n and reg_ids[addr] == reg_ids[handle]

    verify = genuine if study.verify else None

    def start_lookup(source: int, target: int) -> None:
        node = driver.nodes[source]
        lookup_id = node.routing.find_peer(ids[target], env.now, study.paths, verify)
        running[(source, lookup_id)] = (target, env.now)
        driver.service(source)

    when = 1.0
    for _ in range(study.lookups):
        source = rng.randrange(n - 1)
        source += source >= victim
        if study.target == "one":
            target = victim
        else:
            target = rng.randrange(n - 1)
            target += target >= source
        at(env, when, lambda s=source, t=target: start_lookup(s, t))
        when += rng.expovariate(study.lookup_rate)
    while len(rows) < study.lookups:
        env.step()
    rows.sort(key=lambda r: (r["start"], r["source"]))

    lookups = len(rows)
    nearest_honest = max(_prefix(target_id, ids[i]) for i in range(n) if i != victim)
    closest_sybil = max((_prefix(target_id, e) for e in evil), default=0)
    keys = study.keys_per_id * m if study.ids == "keygen" else float(m)
    summary = {
        **{f.name: getattr(study, f.name) for f in fields(study)},
        "sybils": m,
        "success_rate": sum(r["success"] for r in rows) / lookups if lookups else math.nan,
        "reached_rate": sum(r["reached"] for r in rows) / lookups if lookups else math.nan,
        "intercepted_rate": sum(r["intercepted"] for r in rows) / lookups if lookups else math.nan,
        "rejected_mean": statistics.fmean(r["rejected"] for r in rows) if rows else math.nan,
        "rpcs_mean": statistics.fmean(r["rpcs"] for r in rows) if rows else math.nan,
        "median_ms": statistics.median(r["latency_ms"] for r in rows if r["reached"])
        if any(r["reached"] for r in rows)
        else math.nan,
        "tables_with_attacker": infested / n,
        "attacker_share_near_victim": near_share,
        "entries_replaced_by_subnet_limit": trimmed,
        "attacker_requests": collusion.requests,
        "victim_prefix_honest": nearest_honest,
        "victim_prefix_attacker": closest_sybil,
        "keys_generated": keys,
        "wall_s": round(time.perf_counter() - wall, 3),
    }
    return AttackResult(study, rows, summary)


# -- partition -------------------------------------------------------------------------------------


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
    from kadtalk.experiments.harness.world import load_converged, simulated_network, unique_ids
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

    env, _, driver = simulated_network(latency, network_rng, on_event,
                                       "objects" if n > 2000 else "bytes", hook=hook)
    tables = ConvergedTables(ids, study.k, seed=rng.getrandbits(32))
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


# -- sweeps, tables and figures --------------------------------------------------------------------


def sybil_sweep(
    base: SybilStudy,
    shares: Sequence[float] = SHARES,
    defences: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One summary row per (defence, share): a tidy table."""
    defences = DEFENCES if defences is None else defences
    rows = []
    total = len(shares) * len(defences)
    for name, overrides in defences.items():
        for share in shares:
            result = run_sybil_study(replace(base, share=share, **overrides))
            rows.append({"defence": name} | result.summary)
            if progress:
                progress(len(rows), total)
    return rows


def keygen_sweep(
    base: SybilStudy,
    budgets: Sequence[float] = (1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
    defences: Sequence[str] = ("as old as honest", "verify+4 paths", "verify+4 paths+/24"),
) -> list[dict[str, Any]]:
    """What closeness to the victim costs when ID = SHA-1(key): one row per (defence, budget)."""
    rate = keygen_rate()
    rows = []
    for name in defences:
        for budget in budgets:
            study = replace(base, ids="keygen", keys_per_id=float(budget), **DEFENCES[name])
            summary = run_sybil_study(study).summary
            rows.append(
                {
                    "defence": name,
                    "keygen_cpu_s": summary["keys_generated"] / rate,
                    "keys_per_s": rate,
                }
                | summary
            )
    return rows


def _frame(rows: Sequence[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(list(rows))


STYLES = ("-", "--", ":", "-.")


def draw_against_share(ax, table, metric: str, ylabel: str) -> None:
    for i, (name, group) in enumerate(table.groupby("defence", sort=False)):
        group = group.sort_values("share")
        ax.plot(
            group["share"] * 100,
            group[metric],
            marker="os^vD<>"[i % 7],
            markersize=4,
            linestyle=STYLES[i % len(STYLES)],
            label=name,
        )
    ax.set_xlabel("attacker's share of nodes (%)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def figures(
    out: str | Path,
    nodes: int = 1000,
    lookups: int = 200,
    seed: int = 1,
    shares: Sequence[float] = SHARES,
    budgets: Sequence[float] = (1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
    partition: PartitionStudy | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Path]:
    """Run the standard attack studies and write their tables and figures to `out`:

    sybil_eclipse.csv / .png      lookups for one victim against the attacker's share, per defence
    sybil_random.csv / .png       lookups for random honest targets (interception anywhere)
    keygen_cost.csv / .png        ids=keygen: closeness bought with key generation
    partition_lookups.csv, partition_series.csv, partition.png   a region dark and back
    summary.json                  the studies' parameters and headline figures
    """
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    base = SybilStudy(nodes=nodes, lookups=lookups, seed=seed)

    def tick(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    headline: dict[str, Any] = {}
    for name, target, ids in (
        ("sybil_eclipse", "one", "free"),
        ("sybil_random", "random", "random"),
    ):
        table = _frame(
            sybil_sweep(replace(base, target=target, ids=ids), shares, progress=tick(name))
        )
        table.to_csv(out / f"{name}.csv", index=False)
        fig = Figure(figsize=(11, 4), layout="constrained")
        left, right = fig.subplots(1, 2)
        draw_against_share(left, table, "reached_rate", "lookups that reached the true target")
        draw_against_share(right, table, "intercepted_rate", "lookups that returned a fake")
        left.legend(fontsize=7)
        what = (
            "one victim, attacker IDs next to it"
            if target == "one"
            else "random targets, random attacker IDs"
        )
        fig.suptitle(f"Sybil attack, {what}: {nodes} honest nodes, k = {base.k}")
        fig.savefig(out / f"{name}.png", dpi=120)
        written[name] = out / f"{name}.png"
        headline[name] = table[["defence", "share", "reached_rate", "intercepted_rate"]].to_dict(
            "records"
        )

    table = _frame(keygen_sweep(replace(base, share=0.05), budgets))
    table.to_csv(out / "keygen_cost.csv", index=False)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, group in table.groupby("defence", sort=False):
        ax.plot(
            group["keys_per_id"],
            group["reached_rate"],
            marker="o",
            markersize=3,
            label=name,
            linestyle=STYLES[len(ax.lines) % len(STYLES)],
        )
    ax.set_xscale("log")
    ax.set_xlabel("keys generated per attacker node (ID = SHA-1 of the key)")
    ax.set_ylabel("lookups that reached the true target")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    rate = float(table["keys_per_s"].iloc[0])
    ax.set_title(f"5 % attacker, one victim; {rate:,.0f} keys/s per core here", fontsize=9)
    fig.savefig(out / "keygen_cost.png", dpi=120)
    written["keygen_cost"] = out / "keygen_cost.png"
    headline["keygen_cost"] = table[
        [
            "defence",
            "keys_per_id",
            "keygen_cpu_s",
            "victim_prefix_attacker",
            "victim_prefix_honest",
            "reached_rate",
        ]
    ].to_dict("records")

    study = partition or PartitionStudy(nodes=nodes, seed=seed)
    result = run_partition_study(study)
    _frame(result.rows).to_csv(out / "partition_lookups.csv", index=False)
    series = _frame(success_series(result.rows, study.bin, study.duration))
    series.to_csv(out / "partition_series.csv", index=False)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    draw_partition(ax, result.rows, study)
    fig.savefig(out / "partition.png", dpi=120)
    written["partition"] = out / "partition.png"
    headline["partition"] = result.summary
    (out / "summary.json").write_text(json.dumps(headline, indent=1, default=_json_default))
    written["summary"] = out / "summary.json"
    return written


def draw_partition(ax, rows: Sequence[dict[str, Any]], study: PartitionStudy) -> None:
    series = success_series(rows, study.bin, study.duration)
    outside = success_series(
        [r for r in rows if not r["source_in_region"] and not r["target_in_region"]],
        study.bin,
        study.duration,
    )
    mids = [s["t"] + study.bin / 2 for s in series]
    ax.axvspan(
        study.dark_at,
        study.dark_at + study.dark_for,
        color="grey",
        alpha=0.2,
        label=f"{study.region:.0%} of nodes dark",
    )
    ax.plot(
        mids, [s["success_rate"] for s in series], marker="o", markersize=3, label="all lookups"
    )
    ax.plot(
        mids,
        [s["success_rate"] for s in outside],
        marker="s",
        markersize=3,
        linestyle="--",
        label="both ends outside the region",
    )
    ax.set_xlabel("time since lookups started (s)")
    ax.set_ylabel(f"lookup success per {study.bin:g} s")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# -- command line (kadtalk sim attack ...) ---------------------------------------------------------


def add_parser(sim: Any) -> None:
    """`kadtalk sim attack {sybil,partition,figures}`."""
    import argparse

    attack = sim.add_parser(
        "attack",
        help="attack studies: Sybil / eclipse, a region going dark",
        description=__doc__.split("\n\n")[0],
    ).add_subparsers(dest="attack_command", metavar="ATTACK", required=True)
    p = attack.add_parser(
        "sybil", help="one Sybil study: lookups against an attacker's share of nodes"
    )
    defaults = SybilStudy()
    p.add_argument("--nodes", type=int, default=defaults.nodes, help="honest nodes")
    p.add_argument(
        "--share", type=float, default=defaults.share, help="attacker's share of all nodes"
    )
    p.add_argument("--ids", choices=["random", "free", "keygen"], default=defaults.ids)
    p.add_argument("--keys-per-id", type=float, default=defaults.keys_per_id)
    p.add_argument(
        "--no-impersonate",
        dest="impersonate",
        action="store_false",
        help="attacker nodes never hand out a fake entry for the target",
    )
    p.add_argument("--target", choices=TARGETS, default=defaults.target)
    p.add_argument("--tables", choices=TABLES, default=defaults.tables)
    p.add_argument("--paths", type=int, default=defaults.paths, help="disjoint lookup paths")
    p.add_argument("--verify", action="store_true", help="check the target entry by its key")
    p.add_argument(
        "--subnet-limit", type=int, default=0, help="entries of one /24 per bucket (0: off)"
    )
    p.add_argument("--attacker-subnets", type=int, default=defaults.attacker_subnets)
    p.add_argument("--lookups", type=int, default=defaults.lookups)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, metavar="DIR", help="write lookups.csv and summary.json")
    p.add_argument("--json", action="store_true", help="last output line is the summary as JSON")
    p = attack.add_parser("partition", help="a region of the plane goes dark and returns")
    defaults_p = PartitionStudy()
    for name in (
        "nodes",
        "region",
        "dark_at",
        "dark_for",
        "duration",
        "lookup_rate",
        "bin",
        "seed",
    ):
        kind = type(getattr(defaults_p, name))
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults_p, name))
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write lookups.csv, series.csv, summary.json"
    )
    p.add_argument("--json", action="store_true", help="last output line is the summary as JSON")
    p = attack.add_parser(
        "figures",
        help="run the standard attack studies; tables and PNG figures",
        description=figures.__doc__,
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    del argparse


def run_cli(args: Any) -> int:
    if args.attack_command == "figures":
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done)

            written = figures(
                args.out, args.nodes, args.lookups, args.seed, args.shares, progress=progress
            )
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    if args.attack_command == "sybil":
        study = SybilStudy(
            nodes=args.nodes,
            share=args.share,
            ids=args.ids,
            keys_per_id=args.keys_per_id,
            impersonate=args.impersonate,
            target=args.target,
            tables=args.tables,
            paths=args.paths,
            verify=args.verify,
            subnet_limit=args.subnet_limit,
            attacker_subnets=args.attacker_subnets,
            lookups=args.lookups,
            seed=args.seed,
        )
        result = run_sybil_study(study)
        keys = (
            "sybils",
            "success_rate",
            "reached_rate",
            "intercepted_rate",
            "rpcs_mean",
            "tables_with_attacker",
            "attacker_share_near_victim",
            "victim_prefix_honest",
            "victim_prefix_attacker",
        )
    else:
        study = PartitionStudy(
            **{
                name: getattr(args, name)
                for name in (
                    "nodes",
                    "region",
                    "dark_at",
                    "dark_for",
                    "duration",
                    "lookup_rate",
                    "bin",
                    "seed",
                )
            }
        )
        result = run_partition_study(study)
        keys = (
            "lookups",
            "success_before",
            "success_dark",
            "success_dark_outside",
            "success_after",
            "success_after_region_target",
            "recovery_s",
        )
    for key in keys:
        value = result.summary[key]
        print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        _frame(result.rows).to_csv(args.out / "lookups.csv", index=False)
        if isinstance(study, PartitionStudy):
            _frame(success_series(result.rows, study.bin, study.duration)).to_csv(
                args.out / "series.csv", index=False
            )
        (args.out / "summary.json").write_text(
            json.dumps(result.summary, indent=1, default=_json_default)
        )
    if args.json:
        print(json.dumps(result.summary, default=_json_default))
    return 0


def study_parameters(study: Any) -> dict[str, Any]:
    return asdict(study)
