"""The simulator-scale benchmark runs and reports coherent figures (smoke run, not timed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import sim_scale


def test_heapq_baseline_processes_events():
    assert sim_scale.heapq_events_per_s(2000, 1000, seed=1) > 0


def test_quick_run_writes_a_row_per_size(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert sim_scale.main(["--sizes", "300", "1200", "--lookups", "60", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert [row["nodes"] for row in rows] == [300, 1200]
    for row in rows:
        assert row["bytes_per_node"] > 0
        assert row["events_per_s"] > 0 and 0 < row["ratio_to_heapq"] < 1
        assert row["ms_per_lookup"] > 0 and row["us_per_rpc"] > 0
        assert 0 < row["nodes_built"] <= row["nodes"]  # nodes are built on first use
        assert row["cpu_s"] >= row["build_cpu_s"] + row["lookup_cpu_s"] * 0.99 > 0
        assert row["max_rss_mb"] > 0 and row["load"] >= 0
    assert "1,200" in capsys.readouterr().out


def test_huge_is_opt_in_and_a_child_stops_when_memory_runs_low():
    args = sim_scale.build_parser().parse_args(["--huge"])
    assert args.huge and sim_scale.HUGE == 10_000_000
    assert sim_scale.HUGE not in sim_scale.DEFAULT_SIZES
    with pytest.raises(SystemExit, match="stopped"):
        sim_scale.run_child(300, 10, 1, min_free_gib=1e9)


def test_join_phase_reports_its_cost(tmp_path):
    out = tmp_path / "join.json"
    assert sim_scale.main(["--join", "60", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["results"][0]
    assert row["nodes"] == 60 and row["wire"] == "bytes"
    assert row["datagrams"] > 60 * 50  # every node's join and refreshes, by the protocol
    assert row["events"] >= row["datagrams"] // 2 and row["us_per_datagram"] > 0
    assert 0 < row["ratio_to_heapq"] < 1
