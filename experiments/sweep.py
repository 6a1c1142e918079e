"""Sweeps: a grid of lookup studies run in parallel over Dask, merged into tidy tables.

A sweep is described by a TOML file (or the same structure as a dict)::

    [sweep]                      # optional
    name = "small"
    description = "what this sweep is for"

    [grid]                       # every combination of these values is one run
    nodes = [1000, 2000]
    seed = [1, 2, 3]

    [zip]                        # optional: lists of one length that vary together (an
    session = [60.0, 600.0]      # extra grid axis: session=60 with offline=60, then 600/600)
    offline = [60.0, 600.0]

    [fixed]                      # the same in every run
    lookups = 200

Keys in [grid], [zip] and [fixed] are the fields of `LookupStudy`; any field the study gains later
is a valid key without a change here. Values are checked against the field's type (an integer
where a float is expected is taken as that float), then each run's study is built, so a bad value
is reported before anything runs.

Runs fan out over Dask: a local cluster of worker processes by default, an existing scheduler when
its address (or a scheduler file) is given, or a `distributed.Client` handed in (dask-jobqueue's
SLURMCluster or PBSCluster, say). Workers only compute: each returns its rows to this process, which
writes the run into OUT/runs/<run id>/ (lookups.csv, params.json) through a temporary directory and
a rename, so a directory under runs/ with a run id for a name is always complete. The run id is a
hash of the study's full parameters, defaults included; a restarted sweep skips the runs whose
directory exists. At the end every run of the configuration is merged into OUT/lookups.csv (one row
per lookup, the run's parameters as columns) and OUT/summary.csv (one row per run).
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import socket
import sys
import tomllib
import types
import typing
import uuid
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from kadtalk.experiments.lookup import ROW_FIELDS, LookupStudy, run_lookup_study, study_parameters

log = logging.getLogger(__name__)

SWEEP_KEYS = ("name", "description")
TABLES = ("sweep", "grid", "zip", "fixed")
RUN_FILES = ("lookups.csv", "params.json")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

SweepProgress = Callable[[int, int], None]  # (runs done, runs in the sweep)


class SweepError(ValueError):
    """A sweep configuration or result directory that cannot be used."""


# -- parameters ------------------------------------------------------------------------------------


def study_fields() -> dict[str, Any]:
    """Name -> type of every `LookupStudy` parameter, in declaration order."""
    hints = typing.get_type_hints(LookupStudy)
    return {f.name: hints.get(f.name, Any) for f in fields(LookupStudy) if f.init}


def _default(name: str) -> Any:
    for f in fields(LookupStudy):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
    return MISSING


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(name: str, value: Any, hint: Any) -> Any:
    """`value` as the type `hint` of study field `name`; TypeError when it cannot be one."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None  # from Python only: TOML has no null
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            try:
                return coerce(name, value, option)
            except TypeError:
                continue
        raise TypeError(
            f"{name} must be {' or '.join(_type_name(o) for o in options)}, not {value!r}"
        )
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise TypeError(f"{name} must be one of {', '.join(map(repr, typing.get_args(hint)))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list, not {value!r}")
        return origin(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {value!r}")
        return value
    return value  # another type: the study's own validation decides


def run_id(study: LookupStudy) -> str:
    """Stable name of a run: 16 hex digits of SHA-256 over the study's full parameters as canonical
    JSON (sorted keys). The same parameters give the same id in any process, on any machine."""
    canonical = json.dumps(
        {"study": "lookup", "params": asdict(study)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Run:
    run_id: str
    study: LookupStudy

    @property
    def params(self) -> dict[str, Any]:
        return asdict(self.study)


@dataclass
class SweepConfig:
    """A grid of study parameters (every combination is one run) plus parameters fixed for all."""

    grid: dict[str, Sequence[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    name: str = "sweep"
    description: str = ""
    zip: dict[str, Sequence[Any]] = field(default_factory=dict)  # lists that vary together

    def __post_init__(self) -> None:
        valid = study_fields()
        valid_text = ", ".join(valid)
        for table, keys in (("grid", self.grid), ("zip", self.zip), ("fixed", self.fixed)):
            if not isinstance(keys, dict):
                raise SweepError(f"[{table}] must be a table of study parameters")
            unknown = [key for key in keys if key not in valid]
            if unknown:
                raise SweepError(
                    f"unknown parameter{'s' * (len(unknown) > 1)} in [{table}]: "
                    f"{', '.join(unknown)}; "
                    f"valid parameters: {valid_text}"
                )
        for (a, first), (b, second) in itertools.combinations(
            (("grid", self.grid), ("zip", self.zip), ("fixed", self.fixed)), 2
        ):
            both = [key for key in first if key in second]
            if both:
                raise SweepError(
                    f"{', '.join(both)} both in [{a}] and [{b}]; give each parameter once"
                )
        self.grid = {
            key: self._values("grid", key, values, valid[key]) for key, values in self.grid.items()
        }
        self.zip = {
            key: self._values("zip", key, values, valid[key], unique=False)
            for key, values in self.zip.items()
        }
        lengths = {len(values) for values in self.zip.values()}
        if len(lengths) > 1:
            shown = ", ".join(f"{k} has {len(v)}" for k, v in self.zip.items())
            raise SweepError(f"the lists of [zip] vary together and must have one length: {shown}")
        rows = list(builtins.zip(*self.zip.values()))
        for i, row in enumerate(rows):
            if row in rows[:i]:
                raise SweepError(f"[zip] lists {dict(builtins.zip(self.zip, row))} twice")
        self.fixed = {k: self._coerce(f"fixed.{k}", k, v, valid[k]) for k, v in self.fixed.items()}
        self._runs = self._expand()

    @staticmethod
    def _coerce(where: str, key: str, value: Any, hint: Any) -> Any:
        try:
            return coerce(key, value, hint)
        except TypeError as error:
            raise SweepError(f"{where}: {error}") from None

    def _values(
        self, table: str, key: str, values: Any, hint: Any, unique: bool = True
    ) -> tuple[Any, ...]:
        if not isinstance(values, (list, tuple)):
            raise SweepError(
                f"{table}.{key} must be a list of values "
                f"(for one value, put it in [fixed]): {values!r}"
            )
        if not values:
            raise SweepError(f"{table}.{key} is empty: a sweep over no values has no runs")
        coerced = tuple(self._coerce(f"{table}.{key}", key, v, hint) for v in values)
        for i, value in enumerate(coerced):
            if unique and value in coerced[:i]:
                raise SweepError(f"{table}.{key} lists {value!r} twice")
        return coerced

    def varied(self) -> list[str]:
        """The parameters that differ between runs: [zip]'s, then [grid]'s."""
        return [*self.zip, *self.grid]

    def _expand(self) -> list[Run]:
        runs = []
        keys = self.varied()
        axes = (
            [[dict(builtins.zip(self.zip, row)) for row in builtins.zip(*self.zip.values())]]
            if self.zip
            else []
        )
        axes += [[{key: value} for value in self.grid[key]] for key in self.grid]
        for parts in itertools.product(*axes):
            combination = {k: v for part in parts for k, v in part.items()}
            params = self.fixed | combination
            try:
                study = LookupStudy(**params)
            except (TypeError, ValueError) as error:
                shown = ", ".join(f"{k}={combination[k]!r}" for k in keys)
                raise SweepError(f"run with {shown or 'the fixed parameters'}: {error}") from None
            runs.append(Run(run_id(study), study))
        return runs

    def runs(self) -> list[Run]:
        """The runs in grid order: [zip] varies slowest, then the [grid] keys in their order."""
        return list(self._runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep": {"name": self.name, "description": self.description},
            "grid": {k: list(v) for k, v in self.grid.items()},
            "zip": {k: list(v) for k, v in self.zip.items()},
            "fixed": dict(self.fixed),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "sweep") -> SweepConfig:
        unknown = [key for key in data if key not in TABLES]
        if unknown:
            raise SweepError(
                f"unknown table{'s' * (len(unknown) > 1)} {', '.join(f'[{k}]' for k in unknown)}; "
                f"a sweep has [sweep] (name, description), [grid], [zip] and [fixed]"
            )
        meta = data.get("sweep", {})
        bad = [key for key in meta if key not in SWEEP_KEYS]
        if bad:
            raise SweepError(
                f"unknown key in [sweep]: {', '.join(bad)}; valid keys: {', '.join(SWEEP_KEYS)}"
            )
        return cls(
            grid=data.get("grid", {}),
            zip=data.get("zip", {}),
            fixed=data.get("fixed", {}),
            name=str(meta.get("name", name)),
            description=str(meta.get("description", "")),
        )


def load_config(path: str | Path) -> SweepConfig:
    """Read a sweep's TOML file; SweepError names the file and what is wrong."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"{path}: not valid TOML: {error}") from None
    try:
        return SweepConfig.from_dict(data, name=path.stem)
    except SweepError as error:
        raise SweepError(f"{path}: {error}") from None


# -- one run ---------------------------------------------------------------------------------------


def execute_run(params: dict[str, Any]) -> dict[str, Any]:
    """Run one study (on a Dask worker or here) and return what `save_run` writes."""
    result = run_lookup_study(LookupStudy(**params))
    env = result.environment | {"host": socket.gethostname(), "pid": os.getpid()}
    return {"rows": result.rows, "summary": result.summary, "environment": env}


def is_complete(run_dir: Path) -> bool:
    return all((run_dir / name).is_file() for name in RUN_FILES)


def save_run(runs_dir: Path, run: Run, result: dict[str, Any]) -> Path:
    """Write a run's table and parameters into runs_dir/<run id>/, atomically (temp dir, rename)."""
    final = runs_dir / run.run_id
    tmp = runs_dir / f".{run.run_id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        rows = result["rows"]
        columns = list(ROW_FIELDS) + [k for k in (rows[0] if rows else {}) if k not in ROW_FIELDS]
        with open(tmp / "lookups.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        meta = {
            "run": run.run_id,
            "study": study_parameters(run.study),
            "summary": result["summary"],
            "environment": result["environment"],
        }
        (tmp / "params.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if is_complete(final):  # someone else finished it meanwhile
                shutil.rmtree(tmp)
                return final
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _json_default(value: Any) -> Any:
    return str(value)


# -- merging ---------------------------------------------------------------------------------------


def merge_runs(run_dirs: Sequence[Path]):
    """(lookups, summary) pandas DataFrames of complete run directories, in the order given.

    lookups: run, the study's parameters, then the per-lookup columns; summary: run, the
    parameters, then the run's summary figures (those that are not parameters)."""
    import pandas as pd

    lookup_frames = []
    summary_rows = []
    for run_dir in run_dirs:
        meta = json.loads((run_dir / "params.json").read_text())
        params = meta["study"]
        table = pd.read_csv(run_dir / "lookups.csv")
        columns = {"run": meta.get("run", run_dir.name)}
        for key, value in params.items():
            name = key if key not in table.columns else f"param_{key}"
            columns[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
        prefix = pd.DataFrame({k: [v] * len(table) for k, v in columns.items()}, index=table.index)
        lookup_frames.append(pd.concat([prefix, table], axis=1))
        summary = {k: v for k, v in meta["summary"].items() if k not in params}
        summary_rows.append(columns | {k: _cell(v) for k, v in summary.items()})
    if not lookup_frames:
        return pd.DataFrame(columns=["run", *ROW_FIELDS]), pd.DataFrame(columns=["run"])
    non_empty = [f for f in lookup_frames if len(f)] or lookup_frames[:1]
    return pd.concat(non_empty, ignore_index=True), pd.DataFrame(summary_rows)


def _cell(value: Any) -> Any:
    """A summary value as one table cell: nested figures as JSON text, None as NaN."""
    if value is None:
        return math.nan
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value


def _write_csv_atomically(frame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


# -- the sweep -------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    out: Path
    runs: list[Run]
    ran: list[str]  # run ids computed by this call
    skipped: list[str]  # run ids already complete in OUT/runs/
    failed: dict[str, str]  # run id -> error
    lookups: Any  # pandas DataFrame, as in OUT/lookups.csv
    summary: Any  # pandas DataFrame, as in OUT/summary.csv

    @property
    def ok(self) -> bool:
        return not self.failed


def plan(config: SweepConfig, out: str | Path) -> tuple[list[Run], list[Run]]:
    """(runs still to do, runs already complete) of a configuration in OUT."""
    runs_dir = Path(out) / "runs"
    done, todo = [], []
    for run in config.runs():
        (done if is_complete(runs_dir / run.run_id) else todo).append(run)
    return todo, done


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Client of the scheduler at ADDRESS (or described by a scheduler JSON file), or of a new
    local cluster of `workers` single-threaded processes (default: one per CPU)."""
    from distributed import Client, LocalCluster

    if scheduler:
        if scheduler.endswith(".json") and Path(scheduler).is_file():
            client = Client(scheduler_file=scheduler)
        else:
            client = Client(scheduler, timeout="20s")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    # The scheduler and nannies of a local cluster live in this process and log every start and
    # stop at INFO (a closing race even logs a traceback); keep that for -vv (debug) only.
    dask_log = logging.getLogger("distributed")
    level = dask_log.level
    if not log.isEnabledFor(logging.DEBUG):
        dask_log.setLevel(logging.WARNING)
    try:
        # The dashboard (needs bokeh) on a free port: two sweeps at once never collide.
        with LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            with Client(cluster) as client:
                log.info(
                    "local Dask cluster: %d worker processes, dashboard %s",
                    n,
                    client.dashboard_link,
                )
                yield client
    finally:
        dask_log.setLevel(level)


def run_sweep(
    config: SweepConfig | str | Path,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    progress: SweepProgress | None = None,
) -> SweepResult:
    """Run every run of `config` not yet complete in OUT, then merge all of them.

    client: a `distributed.Client` to use (a dask-jobqueue cluster's, say); otherwise `scheduler`
    (address or scheduler file) or a local cluster of `workers` processes. workers=0 runs
    everything in this process, one after another, without Dask (for debugging and profiling).
    """
    if not isinstance(config, SweepConfig):
        config = load_config(config)
    if workers is not None and workers < 0:
        raise SweepError("workers must be >= 0")
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for leftover in runs_dir.glob(".*"):  # temp dirs of an interrupted earlier sweep
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    runs = config.runs()
    todo, done = plan(config, out)
    (out / "sweep.json").write_text(
        json.dumps(
            config.as_dict()
            | {"runs": [{"run": r.run_id} | study_parameters(r.study) for r in runs]},
            indent=2,
            default=str,
        )
        + "\n"
    )
    log.info("sweep %s: %d runs, %d already complete", config.name, len(runs), len(done))

    ran: list[str] = []
    failed: dict[str, str] = {}
    count = len(done)
    if progress:
        progress(count, len(runs))

    def finished(run: Run, result: dict[str, Any] | None, error: BaseException | None) -> None:
        nonlocal count
        count += 1
        if error is not None:
            failed[run.run_id] = f"{type(error).__name__}: {error}"
            log.error("run %s (%s) failed: %s", run.run_id, describe_run(run, config), error)
        else:
            save_run(runs_dir, run, result)
            ran.append(run.run_id)
        if progress:
            progress(count, len(runs))

    if todo and workers == 0 and client is None and scheduler is None:
        for run in todo:
            try:
                result = execute_run(run.params)
            except Exception as error:  # noqa: BLE001 - reported per run, the sweep goes on
                finished(run, None, error)
            else:
                finished(run, result, None)
    elif todo:
        with _client(client, scheduler, workers, len(todo)) as c:
            _run_on(c, todo, finished)

    complete = [runs_dir / r.run_id for r in runs if is_complete(runs_dir / r.run_id)]
    lookups, summary = merge_runs(complete)
    _write_csv_atomically(lookups, out / "lookups.csv")
    _write_csv_atomically(summary, out / "summary.csv")
    return SweepResult(out, runs, ran, [r.run_id for r in done], failed, lookups, summary)


@contextmanager
def _client(client: Any, scheduler: str | None, workers: int | None, tasks: int) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    if not scheduler and not workers:
        workers = min(os.cpu_count() or 1, tasks)
    with dask_client(scheduler, workers) as c:
        yield c


def _run_on(client: Any, todo: list[Run], finished: Callable) -> None:
    from distributed import as_completed

    futures = {}
    for run in todo:
        future = client.submit(
            execute_run, run.params, key=f"kadtalk-lookup-{run.run_id}", pure=False
        )
        futures[future] = run
    for future in as_completed(futures):
        run = futures[future]
        try:
            result = future.result()
        except Exception as error:  # noqa: BLE001 - reported per run, the sweep goes on
            finished(run, None, error)
        else:
            finished(run, result, None)
        future.release()


def describe_run(run: Run, config: SweepConfig) -> str:
    """The run's grid values, as `nodes=1000, seed=2`."""
    params = run.params
    return ", ".join(f"{k}={params[k]!r}" for k in config.varied()) or "fixed parameters"


def print_plan(config: SweepConfig, out: Path, file=None) -> None:
    """One line per run: its id, done or todo, and its grid values."""
    file = file or sys.stdout
    todo, _done = plan(config, out)
    pending = {r.run_id for r in todo}
    for run in config.runs():
        state = "todo" if run.run_id in pending else "done"
        print(f"{run.run_id}  {state}  {describe_run(run, config)}", file=file)
    print(f"{len(config.runs())} runs, {len(pending)} to do, output in {out}", file=file)
