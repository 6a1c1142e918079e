"""Nodes built on first use (sim/lazy.py): the same study, byte for byte, as building them all."""

from __future__ import annotations

import hashlib

import pytest

from kadtalk.experiments.harness.world import SimWorld
from kadtalk.experiments.lookup import WALL_CLOCK_FIELDS, LookupStudy, run_lookup_study
from kadtalk.sim.lazy import DORMANT, LazyNodes

# the count of pending events when lookups start: one per built node eagerly, one in all lazily
NOT_SIMULATED = WALL_CLOCK_FIELDS | {"sim_queue"}


@pytest.fixture(autouse=True)
def lazy_at_any_size(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(SimWorld, "lazy_above", 0)  # by default only above 10^5 nodes


def both_ways(monkeypatch: pytest.MonkeyPatch, study: LookupStudy):
    lazy = run_lookup_study(study)
    monkeypatch.setattr(SimWorld, "lazy_above", 10**9)
    eager = run_lookup_study(study)
    monkeypatch.setattr(SimWorld, "lazy_above", 0)
    return lazy, eager


def digest(result) -> str:
    lines = [repr(sorted(row.items())) for row in result.rows]
    lines.append(repr(sorted((k, v) for k, v in result.summary.items() if k not in NOT_SIMULATED)))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@pytest.mark.parametrize("nodes, lookups", [(2000, 300), (20_000, 500)])
def test_lazy_nodes_give_the_eager_study_byte_for_byte(monkeypatch, nodes, lookups):
    """2,000 peers run the bytes wire form, 20,000 message objects."""
    study = LookupStudy(nodes=nodes, lookups=lookups, seed=1, bootstrap="fast")
    lazy, eager = both_ways(monkeypatch, study)
    assert lazy.rows == eager.rows and len(lazy.rows) == lookups
    assert digest(lazy) == digest(eager)
    assert lazy.summary["datagrams"] == eager.summary["datagrams"] > 0
    # eagerly every node's refresh timer is queued; lazily one event stands for them
    assert eager.summary["sim_queue"] > nodes > lazy.summary["sim_queue"]


def test_past_the_first_refresh_every_node_refreshes_as_it_would_eagerly(monkeypatch):
    """Lookups spread over 5,000 s cross the hourly refresh that every node's first timer
    holds: the one event standing for those timers fires them in the same order."""
    study = LookupStudy(nodes=150, lookups=30, seed=2, bootstrap="fast", lookup_rate=0.005)
    lazy, eager = both_ways(monkeypatch, study)
    assert lazy.rows[-1]["start"] > 3600
    assert lazy.rows == eager.rows
    assert digest(lazy) == digest(eager)
    assert lazy.summary["datagrams"] > 150 * 50  # every node refreshed its buckets


def test_untouched_nodes_stay_rows():
    study = LookupStudy(nodes=20_000, lookups=50, seed=3, bootstrap="fast")
    world = SimWorld(study)
    world.converge()
    nodes = world.driver.nodes
    assert world.lazy and isinstance(nodes, LazyNodes) and nodes.dormant == 20_000
    world.env.run(until=world.start + 30.0)
    assert nodes.dormant == 20_000  # nothing happens in a converged network without lookups
    node = world.command(7, lambda node, now: node.find_peer(world.ids[9], now))
    assert nodes.built(7) and not nodes.built(8)
    world.env.run(until=world.start + 40.0)
    assert 19_900 < nodes.dormant < 20_000  # the lookup woke the few it asked (and probes)
    assert node is not None


def test_churn_nat_and_other_node_makers_build_every_node_first(monkeypatch):
    monkeypatch.setattr(SimWorld, "lazy_above", 10**9)
    assert not SimWorld(LookupStudy(nodes=50, lookups=1, bootstrap="fast")).lazy
    monkeypatch.setattr(SimWorld, "lazy_above", 0)
    for study in (LookupStudy(nodes=50, lookups=1, bootstrap="fast", churn="weibull"),
                  LookupStudy(nodes=50, lookups=1, bootstrap="fast", nat_full_cone=0.5),
                  LookupStudy(nodes=50, lookups=1, bootstrap="fast-uptime"),
                  LookupStudy(nodes=50, lookups=1, bootstrap="protocol")):
        assert not SimWorld(study).lazy
    study = LookupStudy(nodes=50, lookups=1, bootstrap="fast")
    assert not SimWorld(study, new_node=lambda addr, now: None).lazy


def test_lazy_nodes_list_builds_a_slot_once_on_any_read():
    built = []

    def wake(addr):
        built.append(addr)
        return f"node {addr}"

    nodes = LazyNodes(4, wake)
    assert len(nodes) == 4 and nodes.dormant == 4
    assert nodes[2] == "node 2" and nodes[2] == "node 2" and built == [2]
    assert nodes[-1] == "node 3" and built == [2, 3]
    nodes[0] = None  # taken offline before it was ever built: stays offline
    assert nodes[0] is None and built == [2, 3]
    assert nodes[0:2] == [None, "node 1"]
    assert list(nodes) == [None, "node 1", "node 2", "node 3"] and nodes.dormant == 0
    assert DORMANT not in list.__iter__(nodes)
