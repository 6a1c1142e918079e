"""The find-peer lookup study: reproducible, wire-independent, and its summary."""

import math
from random import Random

import numpy as np
import pytest

from kadtalk.experiments.lookup import (
    ROW_FIELDS,
    WALL_CLOCK_FIELDS,
    LookupStudy,
    percentile,
    run_lookup_study,
    study_parameters,
    summarize,
    unique_ids,
)

SUMMARY_KEYS = {
    "nodes", "lookups", "success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean", "hops_mean",
    "wall_s", "peak_rss_mb",
}
STUDY = LookupStudy(nodes=250, lookups=60, seed=7, wire="bytes")


@pytest.fixture(scope="module")
def bytes_run():
    return run_lookup_study(STUDY)


def test_rows_are_complete(bytes_run):
    rows = bytes_run.rows
    assert len(rows) == STUDY.lookups
    for row in rows:
        assert set(row) == set(ROW_FIELDS)
        assert row["source"] != row["target"]
        assert 0 <= row["source"] < STUDY.nodes and 0 <= row["target"] < STUDY.nodes
        assert row["latency_ms"] >= 0 and row["rpcs"] >= 0 and row["hops"] >= 0
        assert row["start"] >= (STUDY.nodes - 1) * STUDY.join_interval + STUDY.settle
    assert [(r["start"], r["source"]) for r in rows] == sorted((r["start"], r["source"]) for r in rows)


def test_summary(bytes_run):
    summary = bytes_run.summary
    assert SUMMARY_KEYS <= set(summary)
    assert summary["nodes"] == 250 and summary["lookups"] == 60
    assert summary["success_rate"] == 1.0
    assert all(row["success"] for row in bytes_run.rows)
    assert summary["median_ms"] <= summary["p90_ms"] <= summary["p99_ms"]
    assert summary["hops_mean"] < math.log2(250)
    assert summary["rpcs_mean"] >= summary["hops_mean"]
    assert summary["wall_s"] > 0 and summary["peak_rss_mb"] > 0
    assert summary["wire"] == "bytes"
    latencies = [r["latency_ms"] for r in bytes_run.rows]
    assert summary["median_ms"] == pytest.approx(float(np.median(latencies)))
    assert summary["p90_ms"] == pytest.approx(float(np.percentile(latencies, 90)))
    assert bytes_run.environment["kadtalk"]


def test_same_seed_gives_identical_rows(bytes_run):
    again = run_lookup_study(STUDY)
    assert again.rows == bytes_run.rows
    stable = {k: v for k, v in bytes_run.summary.items() if k not in WALL_CLOCK_FIELDS}
    assert {k: v for k, v in again.summary.items() if k not in WALL_CLOCK_FIELDS} == stable


def test_bytes_and_objects_give_identical_rows(bytes_run):
    """The proof the design asks for before the simulator may skip the byte codec."""
    objects = run_lookup_study(LookupStudy(nodes=250, lookups=60, seed=7, wire="objects"))
    assert objects.summary["wire"] == "objects"
    assert objects.rows == bytes_run.rows


def test_bytes_and_objects_agree_under_loss_and_timeouts():
    def run(wire):
        return run_lookup_study(
            LookupStudy(nodes=120, lookups=40, seed=3, k=4, wire=wire, loss=0.1, request_timeout=0.12,
                        latency="constant")
        )

    b, o = run("bytes"), run("objects")
    assert b.rows == o.rows
    assert sum(r["timeouts"] for r in b.rows) > 0  # the timeout path was exercised


def test_another_seed_gives_other_rows():
    other = run_lookup_study(LookupStudy(nodes=60, lookups=10, seed=8, wire="objects"))
    small = run_lookup_study(LookupStudy(nodes=60, lookups=10, seed=7, wire="objects"))
    assert other.rows != small.rows


def test_progress_reports():
    calls = []
    result = run_lookup_study(LookupStudy(nodes=100, lookups=5, seed=2), progress=lambda *a: calls.append(a))
    assert ("join", 100, 100) in calls
    assert [c for c in calls if c[0] == "lookups"] == [("lookups", i, 5) for i in range(1, 6)]
    assert result.summary["success_rate"] == 1.0


def test_no_lookups():
    result = run_lookup_study(LookupStudy(nodes=2, lookups=0, seed=1, settle=0.1))
    assert result.rows == []
    assert result.summary["lookups"] == 0
    assert math.isnan(result.summary["success_rate"]) and math.isnan(result.summary["median_ms"])


# -- parameters and helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [dict(nodes=1), dict(lookups=-1), dict(latency="wormhole"), dict(wire="json")]
)
def test_study_validation(bad):
    with pytest.raises(ValueError):
        LookupStudy(**bad)


def test_wire_mode():
    assert LookupStudy(nodes=2000).wire_mode == "bytes"
    assert LookupStudy(nodes=2001).wire_mode == "objects"
    assert LookupStudy(nodes=10, wire="objects").wire_mode == "objects"
    assert study_parameters(LookupStudy(nodes=10))["wire_mode"] == "bytes"
    assert study_parameters(LookupStudy(nodes=10))["nodes"] == 10


def test_unique_ids():
    ids = unique_ids(500, Random(4))
    assert len(set(ids)) == 500
    assert all(0 <= i < 1 << 160 for i in ids)
    assert unique_ids(500, Random(4)) == ids


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q):
    values = [Random(q).uniform(0, 100) for _ in range(37)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([5.0], q) == 5.0


def test_percentile_of_nothing_is_nan():
    assert math.isnan(percentile([], 50))


def test_summarize_counts_failures():
    rows = [
        dict(start=0, source=0, target=1, latency_ms=10.0, rpcs=2, hops=1, timeouts=0, success=True),
        dict(start=1, source=1, target=2, latency_ms=1000.0, rpcs=4, hops=0, timeouts=3, success=False),
    ]
    summary = summarize(LookupStudy(nodes=3), rows, 1.0)
    assert summary["success_rate"] == 0.5
    assert summary["median_ms"] == 10.0  # successful lookups only
    assert summary["rpcs_mean"] == 3.0
    assert summary["hops_mean"] == 1.0
    assert summary["timeouts_mean"] == 1.5


def test_study_under_light_loss_measures_the_protocol_not_failed_joins():
    result = run_lookup_study(LookupStudy(nodes=200, lookups=100, seed=2, loss=0.05, wire="objects"))
    assert result.summary["success_rate"] >= 0.95


@pytest.mark.parametrize("item, says", [
    ("bucket_bits=true", "must be a Python literal"),
    ("nosuch=1", "a RoutingSettings field"),
    ("bucket_bits", "a RoutingSettings field"),
    ("bucket_bits=0", "bucket_bits must be an integer between 1 and"),
])
def test_a_bad_set_is_a_usage_error_naming_it(capsys, item, says):
    """`--set` errors name the setting and the fix, never a traceback (review R1 F12)."""
    from kadtalk.experiments.lookup import main

    with pytest.raises(SystemExit) as exit_:
        main(["--nodes", "10", "--set", item])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
