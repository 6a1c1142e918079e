"""Sybil / eclipse (`SybilStudy`), and what an ID costs (`keygen_rate`).

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
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from dataclasses import dataclass, fields
from random import Random
from typing import Any

from .results import AttackResult
from .subnet_limit import SubnetLimit

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
    # RoutingSettings overrides for the honest nodes, (name, value) pairs: the lookup-latency
    # study's robustness question (proximity neighbour selection; experiments/attacks/proximity.py)
    routing: tuple[tuple[str, Any], ...] = ()
    # the attacker's nodes sit next to the victim in the latency model (1 ms one way to it, its
    # round trips to everyone else): the low round trips proximity neighbour selection rewards
    near_victim: bool = False
    sources: str = "any"  # any: lookups start at random honest nodes; victim: at the victim
    # sources=victim: before its lookups the victim runs this many find-closest lookups of
    # random IDs, what its bucket refreshes do (and where its table meets the attacker: a
    # find-peer lookup ends at the target's entry, before asking an attacker node)
    refreshes: int = 0
    # sources=victim: before the attack, the victim meets this many honest members of each
    # full bucket's range through its own rule (a node that has lived a while: the lookup
    # study's `near`); 0: the join's table
    victim_near: int = 0

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
        if self.sources not in ("any", "victim") or (self.sources == "victim"
                                                     and self.target == "one"):
            raise ValueError("sources must be any or victim (victim: with random targets)")
        if self.refreshes < 0 or (self.refreshes and self.sources != "victim"):
            raise ValueError("refreshes: a count >= 0, with sources=victim")
        if self.victim_near < 0 or (self.victim_near and self.sources != "victim"):
            raise ValueError("victim_near: a count >= 0, with sources=victim")

    @property
    def sybils(self) -> int:
        return round(self.share / (1.0 - self.share) * self.nodes)


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



class _NextTo:
    """A latency model whose addresses `first`.. sit at `spot`: 1 ms one way to it, its delay
    to every other node."""

    def __init__(self, base: Any, spot: int, first: int):
        self.base, self.spot, self.first = base, spot, first

    def delay(self, src: int, dst: int) -> float:
        spot, first = self.spot, self.first
        src = spot if src >= first else src
        dst = spot if dst >= first else dst
        return 0.001 if src == dst else self.base.delay(src, dst)


def _attacker_shares(nodes: Any, registry: Any, n: int, among: Any) -> tuple[float, float]:
    """Among honest nodes `among`: the share whose table (entries and caches) holds an
    attacker's address, and the mean share of attacker addresses among their entries."""
    addrs = registry.addrs
    among = list(among)
    holding = entries = 0.0
    for i in among:
        table = nodes[i].routing.table
        holding += any(addrs[h] >= n for h in table.handles())
        handles = [h for c in range(table.bucket_count()) for h in table.bucket(c)]
        entries += sum(1 for h in handles if addrs[h] >= n) / max(1, len(handles))
    return holding / len(among), entries / len(among)


def _mature(routing: Any, victim: int, honest: list[int], sizes: bytearray, study: SybilStudy,
            latency: Any) -> None:
    """The victim as a node that has lived a while before the attack: the join's round trips,
    then `victim_near` honest members of each full bucket's range met through its own rule
    (experiments/lookup.py's meet_newcomers, which the lookup study's `near` tables run), its
    per-contact estimates kept."""
    from kadtalk.experiments.harness.world import JOIN_RTT_SAMPLES
    from kadtalk.experiments.lookup import ProximityTables, meet_newcomers

    def round_trip(addr: int) -> float:
        return latency.delay(victim, addr) + latency.delay(addr, victim)

    table = routing.table
    entries = [h for c in range(table.bucket_count()) for h in table.bucket(c)]
    for handle in entries[-JOIN_RTT_SAMPLES:]:  # the join's nearest contacts, as load_converged
        routing.observe_round_trip(round_trip(routing.registry.addrs[handle]))
    near = ProximityTables(honest, study.k, study.victim_near, study.seed)
    meet_newcomers(routing, near.newcomers(victim, sizes), round_trip, 0.0, forget=False)


def run_sybil_study(study: SybilStudy) -> AttackResult:
    """Build the network with the attacker in it, run the lookups; deterministic per study."""
    from kadtalk.experiments.harness.world import (
        at,
        bucket_bits,
        simulated_network,
        unique_ids,
        wire_mode,
    )
    from kadtalk.node.routing.events import LookupCompleted
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.node.stack import Node
    from kadtalk.sim.adversary import Collusion, SybilNode, shared_prefix_bits, sybil_ids
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
    if study.routing:
        from dataclasses import replace

        settings = replace(settings, **dict(study.routing))
    latency = _latency(study.latency)
    place_rng = Random(rng.getrandbits(64))
    for _ in range(n + m):
        latency.add_node(place_rng)
    if study.near_victim:
        latency = _NextTo(latency, victim, n)
    network_rng = Random(rng.getrandbits(64))
    rows: list[dict[str, Any]] = []
    running: dict[tuple[int, int], tuple[int, float]] = {}

    def on_event(addr: int, event: Any) -> None:
        if type(event) is not LookupCompleted or (addr, event.lookup_id) not in running:
            return  # not a measured lookup (the victim's refreshes)
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

    env, _, driver = simulated_network(latency, network_rng, on_event, wire_mode(n + m))
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
    bits = bucket_bits(settings)
    if bits != 1 and (study.subnet_limit or study.victim_near):
        raise ValueError("subnet_limit and victim_near redo tables per prefix bucket: not for "
                         "bucket_bits > 1 (its sub-buckets)")
    tables = ConvergedTables(ids, study.k, age_rank=age_rank, rule="uptime", bucket_bits=bits)
    node_rng = Random(rng.getrandbits(64))
    collusion = Collusion(evil, list(range(n, n + m)), study.k, study.impersonate)
    limiter = (
        SubnetLimit(ids, age_rank, subnets, study.k, study.subnet_limit)
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
    if study.victim_near:
        _mature(driver.nodes[victim].routing, victim, honest, tables.sizes(victim), study,
                latency)
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

    def refresh(target_id: int) -> None:
        driver.nodes[victim].routing.find_closest(target_id, env.now)
        driver.service(victim)

    when = 1.0
    refresh_rng = Random(study.seed * 7919 + 3)  # its own: the lookups' draws stay the same
    for _ in range(study.refreshes):
        at(env, when, lambda t=refresh_rng.getrandbits(160): refresh(t))
        when += 1.0 / study.lookup_rate
    for _ in range(study.lookups):
        source = rng.randrange(n - 1)
        source += source >= victim
        if study.sources == "victim":
            source = victim
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
    # after the lookups: what the honest nodes' own rules (uptime, proximity) let in meanwhile
    infested_after, entries_after = _attacker_shares(driver.nodes, registry, n, range(n))
    _, near_after = _attacker_shares(driver.nodes, registry, n, near)
    _, victim_after = _attacker_shares(driver.nodes, registry, n, [victim])
    nearest_honest = max(shared_prefix_bits(target_id, ids[i]) for i in range(n) if i != victim)
    closest_sybil = max((shared_prefix_bits(target_id, e) for e in evil), default=0)
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
        "tables_with_attacker_after": infested_after,
        "attacker_entries_after": entries_after,
        "attacker_entries_near_victim_after": near_after,
        "attacker_entries_of_victim_after": victim_after,
        "entries_replaced_by_subnet_limit": trimmed,
        "attacker_requests": collusion.requests,
        "victim_prefix_honest": nearest_honest,
        "victim_prefix_attacker": closest_sybil,
        "keys_generated": keys,
        "wall_s": round(time.perf_counter() - wall, 3),
    }
    return AttackResult(study, rows, summary)
