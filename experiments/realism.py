"""Latency models, jitter, churn, NAT and traffic accounting wired into the lookup study.

`World` holds what a study switched on and nothing else: with every realism option at its
default it allocates nothing per node, adds no work to the network's hot path and draws no random
number, so a study gives the same rows as before these options existed.

Each feature draws from its own generator, seeded by (study seed, feature name): switching churn
on does not change the node IDs, positions or lookup times of a run (common random numbers, so
runs with and without a feature can be compared pair by pair).
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable

import simpy

from kadtalk.sim.churn import Churn, IndexedSet, distribution
from kadtalk.sim.latency import MODELS, JitteredLatency, TopologyLatency
from kadtalk.sim.nat import OPEN, NatTable
from kadtalk.sim.traffic import TrafficTap

CHURN_KINDS = ("none", "exponential", "weibull")
TOPOLOGIES = ("waxman", "barabasi_albert")
from kadtalk.node.upkeep import JOIN_RETRY_DELAY  # noqa: E402 (the node's join-retry rule)
TABLE_SAMPLE = 1000  # nodes whose tables the end-of-run table census reads


def feature_rng(seed: int, feature: str) -> Random:
    """A generator of its own for one feature of one run (str seeds hash with SHA-512: stable)."""
    return Random(f"kadtalk:{feature}:{seed}")


def check(study: Any) -> None:
    """Validate a LookupStudy's realism fields (ValueError with the field's name)."""
    if study.routers < 2:
        raise ValueError("routers must be at least 2")
    if study.topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}")
    if not study.jitter >= 0:
        raise ValueError("jitter must be >= 0")
    if study.churn not in CHURN_KINDS:
        raise ValueError(f"churn must be one of {', '.join(CHURN_KINDS)}")
    if study.churn != "none":
        if study.session <= 0 or study.offline <= 0:
            raise ValueError("session and offline must be positive")
        if study.session_shape <= 0 or study.offline_shape <= 0:
            raise ValueError("session_shape and offline_shape must be positive")
    symmetric = nat_symmetric(study)
    if not all(0 <= share <= 1 for share in (study.nat_full_cone, study.nat_filtering, symmetric)):
        raise ValueError("NAT shares must be in [0, 1]")
    if study.nat_full_cone + study.nat_filtering + symmetric > 1:
        raise ValueError("nat_full_cone + nat_filtering + nat_symmetric must be at most 1")
    if study.nat_timeout <= 0:
        raise ValueError("nat_timeout must be positive")


def nat_symmetric(study: Any) -> float:
    """The share of nodes behind symmetric NATs (a field of the call study; the lookup study
    has none: its routing-only nodes never punch holes)."""
    return getattr(study, "nat_symmetric", 0.0)


def make_latency(study: Any) -> Any:
    """The study's latency model, before any node is placed."""
    if study.latency == "topology":
        return TopologyLatency(routers=study.routers, graph=study.topology)
    return MODELS[study.latency]()


def with_jitter(study: Any, latency: Any) -> Any:
    if not study.jitter:
        return latency
    return JitteredLatency(latency, study.jitter, feature_rng(study.seed, "jitter"))


class World:
    """The study's optional features around one SimDriver."""

    def __init__(self, study: Any, env: simpy.Environment, ids: list[int]):
        self.study = study
        self.env = env
        self.ids = ids
        self.nodes = study.nodes
        self.nat: NatTable | None = None
        symmetric = nat_symmetric(study)
        if study.nat_full_cone or study.nat_filtering or symmetric:
            self.nat = NatTable(study.nat_timeout)
            rng = feature_rng(study.seed, "nat")
            for _ in range(study.nodes):
                self.nat.add_node(rng, study.nat_full_cone, study.nat_filtering, symmetric)
            # Node 0 starts the network and is the early newcomers' bootstrap: public, like a
            # deployed DHT's well-known bootstrap servers. A join through a NATed node that has
            # not sent to the newcomer fails and is retried through another node.
            self.nat.kinds[0] = OPEN
        self.tap: TrafficTap | None = TrafficTap(ids, active=False) if study.traffic else None
        self.churn: Churn | None = None
        self.churning = study.churn != "none"
        self.started = False  # churn has begun: joins and lookups go through this object
        self.aborted = 0  # lookups whose source left before they ended (no row)
        self.skipped = 0  # lookups not started: no node was online and joined
        self._rng = feature_rng(study.seed, "churn")

    # -- wiring ---------------------------------------------------------------------------------

    def attach(
        self,
        driver: Any,
        new_node: Callable[[int], Any],
        running: dict[tuple[int, int], Any],
        joined: list[int],
        registry: Any,
    ) -> None:
        self.driver = driver
        self.new_node = new_node
        self.running = running
        self.joined_list = joined
        self.registry = registry

    def start_churn(self, when: float) -> None:
        """Churn begins at `when` (after the join phase), in equilibrium."""
        if not self.churning:
            return
        study = self.study
        session = distribution(study.churn, study.session, study.session_shape)
        offline = distribution(study.churn, study.offline, study.offline_shape)
        event = simpy.Timeout(self.env, max(0.0, when - self.env.now))
        event.callbacks.append(lambda _e: self._begin(session, offline))

    def _begin(self, session: Any, offline: Any) -> None:
        nodes = self.driver.nodes
        if len(nodes) < self.nodes:  # rounding put the start just before the last node's join
            event = simpy.Timeout(self.env, self.study.join_interval)
            event.callbacks.append(lambda _e: self._begin(session, offline))
            return
        self.online = IndexedSet(self.nodes, (a for a in range(self.nodes) if nodes[a] is not None))
        joined = dict.fromkeys(self.joined_list)  # in joining order: runs reproduce
        self.ready = IndexedSet(self.nodes, (a for a in joined if nodes[a] is not None))
        self.started = True
        self.churn = Churn(self.env, self.nodes, session, offline, self._rng, self._leave,
                           self._return)

    def _leave(self, addr: int) -> None:
        self.driver.place(addr, None)
        self.online.discard(addr)
        self.ready.discard(addr)
        if self.nat is not None:
            self.nat.forget(addr)
        gone = [key for key in self.running if key[0] == addr]
        for key in gone:
            del self.running[key]
        self.aborted += len(gone)

    def _return(self, addr: int) -> None:
        node = self.new_node(addr)
        self.driver.place(addr, node)
        self.online.add(addr)
        self._join(addr, node)

    def _join(self, addr: int, node: Any) -> None:
        bootstrap = self.ready.choice(self._rng, addr)
        if bootstrap < 0:
            self.ready.add(addr)  # nobody else is up: this node is the network
            return
        node.join([bootstrap], self.env.now)
        self.driver.service(addr)

    def handles_join(self, addr: int, success: bool) -> bool:
        """A Joined event once churn runs: record who is ready, retry failed joins. Returns
        False before churn starts (the study's own join phase handles it)."""
        if not self.started:
            return False
        node = self.driver.nodes[addr]
        if success:
            self.ready.add(addr)
        elif node is not None:
            def retry(_event: Any) -> None:
                if self.driver.nodes[addr] is node:
                    self._join(addr, node)

            event = simpy.Timeout(self.env, JOIN_RETRY_DELAY)
            event.callbacks.append(retry)
        return True

    def pick_pair(self, source: int, target: int) -> tuple[int, int]:
        """The lookup's (source, target): as drawn without churn; under churn a source among the
        nodes online and joined now and a target among the nodes online now ((-1, -1) if none)."""
        if self.started:
            source = self.ready.choice(self._rng)
            target = self.online.choice(self._rng, source) if source >= 0 else -1
            if target < 0:
                self.skipped += 1
                return -1, -1
        if self.tap is not None:
            self.tap.user_targets.add(self.ids[target])
        return source, target

    def measure_from(self, now: float) -> None:
        if self.tap is not None:
            self.tap.start(now)

    @property
    def unfinished(self) -> int:
        """Lookups that will never give a row."""
        return self.aborted + self.skipped

    # -- results --------------------------------------------------------------------------------

    def summary(self, network: Any) -> dict[str, Any]:
        """Figures for the summary; None where a feature is off."""
        now = self.env.now
        churn = self.churn
        out: dict[str, Any] = {
            "datagrams": network.sent,
            "datagrams_lost": network.lost,
            "departures": churn.departures if churn else None,
            "returns": churn.returns if churn else None,
            "online_share": len(self.online) / self.nodes if churn else None,
            "lookups_aborted": self.aborted if self.churning else None,
            "lookups_skipped": self.skipped if self.churning else None,
            "nat_filtered": self.nat.filtered if self.nat else None,
            "nat_share": (sum(1 for k in self.nat.kinds if k) / self.nodes) if self.nat else None,
        }
        if churn or self.nat:
            out |= self.table_census(now)
        else:
            out |= dict.fromkeys(("table_entries_mean", "table_offline_share",
                                  "table_unreachable_share"))
        if self.tap is not None:
            out |= self.tap.summary(self.nodes, now)
        else:
            out |= {"requests_user": None, "requests_join": None, "requests_refresh": None,
                    "maintenance_share": None, "maintenance_req_per_node_s": None}
        return out

    def table_census(self, now: float) -> dict[str, Any]:
        """What routing-table entries point at, now, over a sample of online nodes' tables:
        offline nodes (churn), and online nodes whose NAT would drop a request from the table's
        owner (never sent to it within the mapping timeout)."""
        nodes = self.driver.nodes
        present = [a for a in range(self.nodes) if nodes[a] is not None]
        rng = feature_rng(self.study.seed, "census")
        sample = present if len(present) <= TABLE_SAMPLE else rng.sample(present, TABLE_SAMPLE)
        online = self.churn.online if self.churn else None
        nat = self.nat
        addrs = self.registry.addrs
        entries = offline = unreachable = 0
        for owner in sample:
            table = nodes[owner].routing.table
            for index in range(table.bucket_count()):
                for handle in table.bucket(index):
                    addr = addrs[handle]
                    entries += 1
                    if type(addr) is not int or addr >= self.nodes:
                        continue  # an extra address, or an IPv6 one (sim/dualstack.py)
                    if online is not None and not online[addr]:
                        offline += 1
                    elif nat is not None and not nat.admits(addr, owner, now):
                        unreachable += 1
        return {
            "table_entries_mean": entries / len(sample) if sample else None,
            "table_offline_share": offline / entries if entries else None,
            "table_unreachable_share": unreachable / entries if entries else None,
        }
