"""The sim-vs-testbed study's pieces that need no root: the replayed workload and the statistics."""

from __future__ import annotations

import math

import pytest

from kadtalk.experiments.lookup import run_lookup_study
from kadtalk.experiments.testbed_study import Comparison, compare, ks_critical, ks_distance, workload
from kadtalk.sim.latency import SiteMatrixLatency


def test_workload_replays_the_simulators_ids_pairs_and_start_times():
    config = Comparison(hosts=3, nodes=30, lookups=25, settle=1.0, join_interval=0.01)
    study = config.study()
    matrix = [[0.0, 0.02, 0.03], [0.02, 0.0, 0.01], [0.03, 0.01, 0.0]]
    result = run_lookup_study(study, latency_model=SiteMatrixLatency(matrix, 1e-5))
    ids, lookups = workload(study)
    first = result.rows[0]["start"]
    assert [(r["source"], r["target"]) for r in result.rows] == [(s, t) for _, s, t in lookups]
    assert [r["start"] - first for r in result.rows] == pytest.approx([w for w, _, _ in lookups])
    assert len(set(ids)) == 30


def test_ks_distance():
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ks_distance([1, 2, 3], [4, 5, 6]) == 1
    assert ks_distance([1, 2, 3, 4], [3, 4, 5, 6]) == pytest.approx(0.5)
    assert math.isnan(ks_distance([], [1]))
    assert 0.09 < ks_critical(400, 400) < 0.1


def test_compare_reports_medians_and_local_share():
    def rows(latencies):
        return [{"latency_ms": x, "rpcs": 0 if x == 0 else 3, "hops": 0 if x == 0 else 1,
                 "timeouts": 0, "success": True} for x in latencies]

    out = compare(rows([0, 0, 50, 100, 150]), rows([0, 55, 110, 160, 0]))
    assert out["local_share_testbed"] == out["local_share_sim"] == 0.4
    assert out["network_latency_ms"]["median_testbed"] == 100
    assert out["network_latency_ms"]["median_diff"] == pytest.approx(0.1)
    assert out["latency_ms"]["median_testbed"] == 50
