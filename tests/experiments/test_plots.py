"""The standard figures: from a sweep, an unfinished sweep, one study, and synthetic churn data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kadtalk.experiments.plots import Results, latency_cdf, load_results, standard_figures
from kadtalk.experiments.sweep import SweepConfig, run_sweep

from kadtalk.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def loss_sweep(tmp_path_factory):
    """Two sizes x two loss rates: every figure but the churn one has something to show."""
    config = SweepConfig(
        grid={"nodes": [40, 80], "loss": [0.0, 0.2]},
        fixed={"lookups": 10, "k": 8, "seed": 5, "wire": "objects", "request_timeout": 0.3},
    )
    return run_sweep(config, tmp_path_factory.mktemp("loss"), workers=0)


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG


def test_standard_figures_of_a_sweep(loss_sweep, tmp_path):
    report = standard_figures(loss_sweep.out, tmp_path / "figs")
    names = sorted(p.name for p in report.written)
    assert names == [
        "latency_cdf.png",
        "latency_vs_nodes.png",
        "rpcs_hops_vs_nodes.png",
        "success_vs_loss.png",
    ]
    for path in report.written:
        assert_png(path)
    assert report.skipped == [("success_vs_churn.png", "the results do not vary a churn parameter")]


def test_results_know_what_varies(loss_sweep):
    results = load_results(loss_sweep.out)
    assert results.varying() == ["nodes", "loss"]
    assert results.series("nodes") == ["loss"]
    assert len(results.lookups) == 40 and len(results.summary) == 4


def test_an_unfinished_sweep_is_read_from_its_runs(loss_sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(loss_sweep.out, copy)
    (copy / "lookups.csv").unlink()
    (copy / "summary.csv").unlink()
    results = load_results(copy)
    assert len(results.lookups) == 40
    assert sorted(results.summary["run"]) == sorted(loss_sweep.summary["run"])


def test_a_single_study_directory(tmp_path, capsys):
    out = tmp_path / "study"
    main(
        [
            "sim",
            "lookup",
            "--nodes",
            "40",
            "--lookups",
            "6",
            "--k",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    capsys.readouterr()
    assert main(["sim", "plot", str(out), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    assert_png(tmp_path / "figs" / "latency_cdf.png")
    assert "skipped latency_vs_nodes.png: needs at least two network sizes (nodes)" in printed
    results = load_results(out)
    assert len(results.lookups) == 6 and results.summary["nodes"].tolist() == [40]


def test_nothing_to_plot(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no results here"):
        load_results(tmp_path)
    assert main(["sim", "plot", str(tmp_path)]) == 2
    assert "no results here" in capsys.readouterr().err


def synthetic_churn() -> Results:
    """Lookups whose success falls with a churn parameter the study may not have yet."""
    rng = np.random.default_rng(1)
    rows = []
    for nodes in (100, 1000):
        for churn in (0.0, 0.5, 1.0):
            for seed in (1, 2):
                for _ in range(50):
                    rows.append(
                        {
                            "run": f"{nodes}-{churn}-{seed}",
                            "nodes": nodes,
                            "churn_rate": churn,
                            "seed": seed,
                            "latency_ms": float(rng.gamma(2, 50 * (1 + churn))),
                            "rpcs": int(rng.integers(1, 9)),
                            "hops": int(rng.integers(0, 4)),
                            "timeouts": 0,
                            "success": bool(rng.random() > churn / 3),
                        }
                    )
    lookups = pd.DataFrame(rows)
    summary = lookups.groupby("run", as_index=False).first()[["run", "nodes", "churn_rate", "seed"]]
    return Results(lookups, summary, params=["nodes", "churn_rate", "seed"])


def test_success_against_churn(tmp_path):
    report = standard_figures(synthetic_churn(), tmp_path)
    names = sorted(p.name for p in report.written)
    assert "success_vs_churn_rate.png" in names and report.skipped == []
    for path in report.written:
        assert_png(path)


def test_latency_cdf_of_rows(tmp_path):
    rows = [{"latency_ms": float(i), "success": i % 5 != 0} for i in range(100)]
    assert_png(latency_cdf(rows, tmp_path / "cdf.png", "title"))
