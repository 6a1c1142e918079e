"""Sweeps: grid expansion and validation, stable run ids, resume, Dask, and the command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import typing
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from kadtalk.experiments import sweep
from kadtalk.experiments.lookup import ROW_FIELDS, LookupStudy
from kadtalk.experiments.sweep import (
    CONFIG_DIR,
    SweepConfig,
    SweepError,
    coerce,
    load_config,
    run_id,
    run_sweep,
    study_fields,
)

from kadtalk.cli import main

TINY = {"grid": {"nodes": [40, 60]}, "fixed": {"lookups": 8, "k": 8, "seed": 3, "wire": "objects"}}


def tiny() -> SweepConfig:
    return SweepConfig.from_dict(json.loads(json.dumps(TINY)), name="tiny")


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The tiny sweep run in this process (workers=0); later tests compare against it."""
    out = tmp_path_factory.mktemp("tiny")
    return run_sweep(tiny(), out, workers=0)


def read_bytes(out: Path) -> tuple[bytes, bytes]:
    return (out / "lookups.csv").read_bytes(), (out / "summary.csv").read_bytes()


# -- the grid --------------------------------------------------------------------------------------


def test_grid_expands_to_every_combination_in_order():
    config = SweepConfig(grid={"nodes": [50, 60], "seed": [1, 2, 3]}, fixed={"lookups": 5})
    runs = config.runs()
    assert [(r.study.nodes, r.study.seed) for r in runs] == [
        (50, 1),
        (50, 2),
        (50, 3),
        (60, 1),
        (60, 2),
        (60, 3),
    ]
    assert all(r.study.lookups == 5 for r in runs)
    assert len({r.run_id for r in runs}) == 6


def test_zipped_lists_vary_together():
    config = SweepConfig.from_dict(
        {
            "grid": {"seed": [1, 2]},
            "zip": {"session": [60, 600], "offline": [30, 300]},
            "fixed": {"nodes": 30, "churn": "exponential"},
        }
    )
    assert [(r.study.session, r.study.offline, r.study.seed) for r in config.runs()] == [
        (60.0, 30.0, 1),
        (60.0, 30.0, 2),
        (600.0, 300.0, 1),
        (600.0, 300.0, 2),
    ]
    assert config.varied() == ["session", "offline", "seed"]
    with pytest.raises(SweepError, match="must have one length: session has 2, offline has 1"):
        SweepConfig(zip={"session": [60, 600], "offline": [30]})
    with pytest.raises(
        SweepError, match=r"\[zip\] lists \{'session': 60.0, 'offline': 30.0\} twice"
    ):
        SweepConfig(zip={"session": [60, 60], "offline": [30, 30]})
    with pytest.raises(SweepError, match=r"seed both in \[zip\] and \[fixed\]"):
        SweepConfig(zip={"seed": [1]}, fixed={"seed": 2})


def test_only_fixed_parameters_make_one_run():
    runs = SweepConfig(fixed={"nodes": 30}).runs()
    assert len(runs) == 1 and runs[0].study == LookupStudy(nodes=30)


def test_every_study_field_is_a_parameter():
    assert list(study_fields()) == [f for f in asdict(LookupStudy())]
    config = SweepConfig(fixed={name: value for name, value in asdict(LookupStudy()).items()})
    assert config.runs()[0].study == LookupStudy()


def test_an_unknown_parameter_is_named_with_the_valid_ones():
    with pytest.raises(SweepError) as error:
        SweepConfig(grid={"nodez": [1, 2]})
    message = str(error.value)
    assert "unknown parameter in [grid]: nodez" in message
    for name in study_fields():
        assert name in message
    with pytest.raises(SweepError, match=r"unknown parameters in \[fixed\]: a, b"):
        SweepConfig(fixed={"a": 1, "b": 2})


@pytest.mark.parametrize(
    "data, match",
    [
        ({"grid": {"nodes": 50}}, r"grid.nodes must be a list .* put it in \[fixed\]"),
        ({"grid": {"nodes": []}}, "grid.nodes is empty"),
        ({"grid": {"seed": [1, 2, 1]}}, "grid.seed lists 1 twice"),
        ({"grid": {"nodes": ["many"]}}, "grid.nodes: nodes must be an integer"),
        ({"fixed": {"refresh_on_join": 1}}, "fixed.refresh_on_join: .* true or false"),
        ({"fixed": {"k": True}}, "fixed.k: k must be an integer"),
        ({"fixed": {"loss": "high"}}, "fixed.loss: loss must be a number"),
        (
            {"grid": {"nodes": [50]}, "fixed": {"nodes": 60}},
            r"nodes both in \[grid\] and \[fixed\]",
        ),
        ({"grid": {"nodes": [50, 1]}}, "run with nodes=1: a lookup study needs at least 2 nodes"),
        ({"fixed": {"latency": "wormhole"}}, "latency must be one of"),
        ({"grids": {}}, r"unknown table \[grids\]"),
        (
            {"sweep": {"title": "x"}},
            r"unknown key in \[sweep\]: title; valid keys: name, description",
        ),
    ],
)
def test_bad_configurations_are_refused_clearly(data, match):
    with pytest.raises(SweepError, match=match):
        SweepConfig.from_dict(data)


def test_coercion():
    assert coerce("x", 1, float) == 1.0 and isinstance(coerce("x", 1, float), float)
    assert coerce("x", 2, int | None) == 2
    assert coerce("x", 2, float | None) == 2.0
    assert coerce("x", None, float | None) is None
    assert coerce("x", [1, 2], tuple[float, ...]) == (1, 2)
    assert coerce("x", "weibull", typing.Literal["exponential", "weibull"]) == "weibull"
    assert coerce("x", {"a": 1}, typing.Any) == {"a": 1}
    with pytest.raises(TypeError, match="one of"):
        coerce("x", "gamma", typing.Literal["exponential", "weibull"])
    with pytest.raises(TypeError, match="x must be int or str"):
        coerce("x", 1.5, int | str)


def test_toml_files(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[grid]\nnodes = [50, 60]\n[fixed]\nlookups = 4\nrequest_timeout = 1\n")
    config = load_config(path)
    assert config.name == "mine"
    assert [r.study for r in config.runs()] == [
        LookupStudy(nodes=50, lookups=4),
        LookupStudy(nodes=60, lookups=4),
    ]
    path.write_text("[grid\n")
    with pytest.raises(SweepError, match=f"{path}: not valid TOML"):
        load_config(path)
    path.write_text("[grid]\nnodez = [1]\n")
    with pytest.raises(SweepError, match=f"{path}: unknown parameter"):
        load_config(path)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    assert load_config(path).runs()


# -- run ids ---------------------------------------------------------------------------------------


def test_run_id_is_a_hash_of_the_full_parameters():
    study = LookupStudy(nodes=50, seed=2)
    canonical = json.dumps(
        {"study": "lookup", "params": asdict(study)}, sort_keys=True, separators=(",", ":")
    )
    assert run_id(study) == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert run_id(LookupStudy(seed=2, nodes=50)) == run_id(study)
    assert run_id(LookupStudy(nodes=50, seed=3)) != run_id(study)
    # 1 and 1.0 are the same timeout: the config's integer becomes the field's float.
    a = SweepConfig(fixed={"nodes": 50, "request_timeout": 1}).runs()[0].run_id
    b = SweepConfig(fixed={"nodes": 50, "request_timeout": 1.0}).runs()[0].run_id
    assert a == b == run_id(LookupStudy(nodes=50))


def test_run_id_is_the_same_in_another_process():
    code = (
        "from kadtalk.experiments.lookup import LookupStudy;"
        "from kadtalk.experiments.sweep import run_id;"
        "print(run_id(LookupStudy(nodes=50, seed=2, loss=0.1)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert other.stdout.strip() == run_id(LookupStudy(nodes=50, seed=2, loss=0.1))


# -- running, resuming, merging --------------------------------------------------------------------


def test_a_sweep_writes_runs_and_merged_tables(tiny_sweep):
    out = tiny_sweep.out
    assert tiny_sweep.ok and len(tiny_sweep.ran) == 2 and tiny_sweep.skipped == []
    for run in tiny_sweep.runs:
        run_dir = out / "runs" / run.run_id
        meta = json.loads((run_dir / "params.json").read_text())
        assert meta["run"] == run.run_id
        assert meta["study"]["nodes"] == run.study.nodes and meta["study"]["wire_mode"] == "objects"
        assert meta["summary"]["lookups"] == 8 and meta["environment"]["python"]
        assert len(pd.read_csv(run_dir / "lookups.csv")) == 8
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]
    lookups = pd.read_csv(out / "lookups.csv")
    assert len(lookups) == 16
    assert list(lookups.columns) == ["run", *study_fields(), "wire_mode", *ROW_FIELDS]
    assert sorted(lookups["nodes"].unique()) == [40, 60]
    assert (lookups.groupby("run")["nodes"].nunique() == 1).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["run"]) == [r.run_id for r in tiny_sweep.runs]
    assert {"success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean", "hops_mean"} <= set(
        summary.columns
    )
    assert (summary["success_rate"] == 1.0).all()
    assert tiny_sweep.lookups.shape == lookups.shape
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert sweep_json["grid"] == {"nodes": [40, 60]}
    assert [r["run"] for r in sweep_json["runs"]] == [r.run_id for r in tiny_sweep.runs]


def test_a_second_invocation_runs_nothing_and_gives_the_same_tables(tiny_sweep):
    before = read_bytes(tiny_sweep.out)
    calls = []
    again = run_sweep(tiny(), tiny_sweep.out, workers=0, progress=lambda *a: calls.append(a))
    assert again.ran == [] and again.skipped == [r.run_id for r in tiny_sweep.runs]
    assert calls == [(2, 2)]
    assert read_bytes(tiny_sweep.out) == before


def test_a_restart_reruns_only_missing_or_incomplete_runs(tiny_sweep, tmp_path):
    out = tmp_path / "copy"
    import shutil

    shutil.copytree(tiny_sweep.out, out)
    first, second = tiny_sweep.runs
    shutil.rmtree(out / "runs" / first.run_id)
    (out / "runs" / second.run_id / "params.json").unlink()  # as if killed mid-write
    (out / "runs" / f".{first.run_id}.123.abcd").mkdir()  # a leftover temp dir
    (out / "lookups.csv").unlink()
    again = run_sweep(tiny(), out, workers=0)
    assert sorted(again.ran) == sorted([first.run_id, second.run_id]) and again.skipped == []
    assert not [p for p in (out / "runs").iterdir() if p.name.startswith(".")]
    # Same seeds, same rows: the merged table is identical but for the runs' wall time and memory.
    assert pd.read_csv(out / "lookups.csv").equals(pd.read_csv(tiny_sweep.out / "lookups.csv"))


def test_a_sweep_extended_with_new_values_runs_only_those(tiny_sweep, tmp_path):
    import shutil

    out = tmp_path / "more"
    shutil.copytree(tiny_sweep.out, out)
    bigger = SweepConfig(grid={"nodes": [40, 60, 30]}, fixed=TINY["fixed"])
    result = run_sweep(bigger, out, workers=0)
    assert len(result.ran) == 1 and len(result.skipped) == 2
    assert list(result.summary["nodes"]) == [40, 60, 30]


def test_a_failing_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    real = sweep.execute_run

    def flaky(params):
        if params["nodes"] == 60:
            raise RuntimeError("boom")
        return real(params)

    monkeypatch.setattr(sweep, "execute_run", flaky)
    result = run_sweep(tiny(), tmp_path, workers=0)
    assert not result.ok
    assert list(result.failed.values()) == ["RuntimeError: boom"]
    assert list(result.summary["nodes"]) == [40]
    assert len(pd.read_csv(tmp_path / "lookups.csv")) == 8


def test_a_local_dask_cluster_gives_the_same_tables(tiny_sweep, tmp_path):
    """Two worker processes compute the runs; the tables match the in-process sweep's."""
    calls = []
    result = run_sweep(tiny(), tmp_path, workers=2, progress=lambda *a: calls.append(a))
    assert result.ok and sorted(result.ran) == sorted(r.run_id for r in tiny_sweep.runs)
    assert calls == [(0, 2), (1, 2), (2, 2)]
    assert pd.read_csv(tmp_path / "lookups.csv").equals(pd.read_csv(tiny_sweep.out / "lookups.csv"))
    hosts = {
        json.loads((tmp_path / "runs" / r / "params.json").read_text())["environment"]["pid"]
        for r in result.ran
    }
    assert os.getpid() not in hosts


def test_an_existing_scheduler_by_address_or_scheduler_file(tmp_path):
    from distributed import LocalCluster

    scheduler_file = tmp_path / "scheduler.json"
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        config = SweepConfig(
            grid={"seed": [1, 2]}, fixed={"nodes": 30, "lookups": 4, "wire": "objects"}
        )
        first = SweepConfig(grid={"seed": [1]}, fixed=config.fixed)
        result = run_sweep(first, tmp_path / "out", scheduler=cluster.scheduler_address)
        assert result.ok and len(result.ran) == 1 and len(result.lookups) == 4
        scheduler_file.write_text(json.dumps({"address": cluster.scheduler_address}))
        result = run_sweep(config, tmp_path / "out", scheduler=str(scheduler_file))
    assert (
        result.ok and len(result.ran) == 1 and len(result.skipped) == 1 and len(result.lookups) == 8
    )


def test_negative_workers_are_refused(tmp_path):
    with pytest.raises(SweepError, match="workers"):
        run_sweep(tiny(), tmp_path, workers=-1)


# -- the command line ------------------------------------------------------------------------------


def write_config(path: Path) -> Path:
    path.write_text(
        '[sweep]\nname = "cli"\n[grid]\nnodes = [40, 60]\n'
        '[fixed]\nlookups = 8\nk = 8\nseed = 3\nwire = "objects"\n'
    )
    return path


def test_cli_sweep_resume_and_plot(tiny_sweep, tmp_path, capsys):
    config = write_config(tmp_path / "cli.toml")
    out = tmp_path / "out"
    assert main(["sim", "sweep", str(config), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("todo") == 2 and "2 runs, 2 to do" in listing and "nodes=40" in listing

    assert (
        main(["sim", "sweep", str(config), "--out", str(out), "--workers", "0", "--no-progress"])
        == 0
    )
    assert "2 runs: 2 ran, 0 already complete, 0 failed" in capsys.readouterr().out
    assert pd.read_csv(out / "lookups.csv").equals(pd.read_csv(tiny_sweep.out / "lookups.csv"))

    assert (
        main(["sim", "sweep", str(config), "--out", str(out), "--workers", "0", "--no-progress"])
        == 0
    )
    assert "2 runs: 0 ran, 2 already complete" in capsys.readouterr().out

    assert main(["sim", "plot", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped success_vs_churn.png: the results do not vary a churn parameter" in printed
    for name in ("latency_cdf.png", "latency_vs_nodes.png", "rpcs_hops_vs_nodes.png"):
        assert (out / "figures" / name).stat().st_size > 1000


def test_cli_refuses_a_bad_config(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[grid]\nnodez = [1]\n")
    assert main(["sim", "sweep", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "unknown parameter in [grid]: nodez" in error and "valid parameters: nodes" in error


def test_cli_sweep_on_a_local_dask_cluster_as_a_subprocess(tmp_path):
    config = write_config(tmp_path / "cli.toml")
    out = tmp_path / "out"
    args = ["sim", "sweep", str(config), "--out", str(out), "--workers", "2"]
    command = [sys.executable, "-m", "kadtalk", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "2 runs: 2 ran" in done.stdout
    assert "Traceback" not in done.stderr
    assert len(pd.read_csv(out / "summary.csv")) == 2
