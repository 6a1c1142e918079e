"""Standard figures of lookup studies and sweeps, drawn with matplotlib.

Figures are built on `matplotlib.figure.Figure` directly and saved through the Agg canvas: no
pyplot state and no display, and importing this module never changes a notebook's backend. The
`draw_*` functions draw into a given Axes, so a notebook can compose its own figures with them.

`standard_figures(RESULTS, OUT)` reads a sweep directory (`kadtalk sim sweep --out`) or a single
study's (`kadtalk sim lookup --out`) and writes:

- latency_cdf.png: latency CDFs, one curve per N (one panel per value of any other parameter
  the sweep varies; seeds are pooled);
- latency_vs_nodes.png: median, p90 and p99 latency against N, log x axis;
- rpcs_hops_vs_nodes.png: mean RPCs and hops per lookup against N;
- success_vs_<parameter>.png: success rate and median latency against each churn parameter the
  sweep varies (and against loss, when it varies).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

log = logging.getLogger(__name__)

POOLED = ("seed",)  # parameters whose runs are pooled rather than drawn apart
CHURN_WORDS = ("churn", "session", "offline", "lifetime", "uptime", "downtime", "departure")
MAX_PANELS = 12
QUANTILES = ((50, "-", "median"), (90, "--", "p90"), (99, ":", "p99"))


def latency_cdf(rows: Iterable[dict[str, Any]], path: Path, title: str = "") -> Path:
    """CDF of successful lookups' latency, with the median and p90 marked."""
    latencies = sorted(r["latency_ms"] for r in rows if r["success"])
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    if latencies:
        n = len(latencies)
        ax.step(latencies, [(i + 1) / n for i in range(n)], where="post", label=f"{n} lookups")
        for q, style in ((0.5, "--"), (0.9, ":")):
            value = latencies[min(n - 1, int(q * n))]
            ax.axvline(value, color="grey", linestyle=style, linewidth=0.8)
            ax.annotate(
                f"p{int(q * 100)} {value:.0f} ms",
                (value, q),
                xytext=(4, -12),
                textcoords="offset points",
                fontsize=8,
            )
        ax.legend(loc="lower right")
    ax.set_xlabel("lookup latency (ms)")
    ax.set_ylabel("fraction of lookups")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or "find-peer lookup latency")
    fig.savefig(path, dpi=120)
    return path


def setup_cdf(series: dict[str, Iterable[dict[str, Any]]], path: Path, title: str = "") -> Path:
    """CDFs of call set-up time (experiments/calls.py rows), one per labelled run (DHT,
    directory, ...), over all calls placed: the curve ends at the run's success rate."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for label, rows in series.items():
        rows = list(rows)
        setup = sorted(r["setup_ms"] for r in rows if r["success"])
        if not setup:
            continue
        n = len(rows)
        median = setup[len(setup) // 2]
        ax.step(setup, [(i + 1) / n for i in range(len(setup))], where="post",
                label=f"{label}: median {median:.0f} ms, {len(setup) / n:.1%} set up")
    ax.set_xscale("log")
    ax.set_xlabel("call set-up time: call to first media heard (ms)")
    ax.set_ylabel("fraction of calls placed")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title or "call set-up time")
    fig.savefig(path, dpi=120)
    return path


# -- loading ---------------------------------------------------------------------------------------


def study_parameter_names() -> list[str]:
    from kadtalk.experiments.lookup import LookupStudy

    return [f.name for f in fields(LookupStudy)]


@dataclass
class Results:
    """A sweep's (or one study's) tables: lookups has one row per lookup, summary one per run."""

    lookups: Any  # pandas DataFrame
    summary: Any  # pandas DataFrame
    source: Path | None = None
    params: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.params:
            self.params = [p for p in study_parameter_names() if p in self.summary.columns]

    def varying(self) -> list[str]:
        """Parameters with more than one value across the runs, in parameter order."""
        return [p for p in self.params if self.summary[p].astype(str).nunique() > 1]

    def series(self, *exclude: str) -> list[str]:
        """Varying parameters that tell curves apart, other than `exclude` and the pooled seed."""
        return [p for p in self.varying() if p not in exclude and p not in POOLED]


def load_results(path: str | Path) -> Results:
    """Read a sweep directory (lookups.csv + summary.csv, or only runs/ of an unfinished sweep) or
    a single study's directory (lookups.csv + params.json)."""
    import pandas as pd

    path = Path(path)
    if (path / "lookups.csv").is_file() and (path / "summary.csv").is_file():
        lookups = pd.read_csv(path / "lookups.csv")
        summary = pd.read_csv(path / "summary.csv")
        return Results(lookups, summary, path)
    if (path / "lookups.csv").is_file() and (path / "params.json").is_file():
        from kadtalk.experiments.sweep import merge_runs

        lookups, summary = merge_runs([path])
        return Results(lookups, summary, path)
    if (path / "runs").is_dir():
        from kadtalk.experiments.sweep import is_complete, merge_runs

        dirs = sorted(
            d for d in (path / "runs").iterdir() if not d.name.startswith(".") and is_complete(d)
        )
        if dirs:
            lookups, summary = merge_runs(dirs)
            return Results(lookups, summary, path)
    raise FileNotFoundError(
        f"{path}: no results here (expected lookups.csv with summary.csv or params.json, or runs/)"
    )


# -- drawing ---------------------------------------------------------------------------------------


def _groups(frame, keys: Sequence[str]):
    """(values tuple, sub-frame) per combination of `keys`, in sorted order."""
    if not keys:
        yield (), frame
        return
    for values, group in frame.groupby(list(keys), sort=True, dropna=False):
        yield (values if isinstance(values, tuple) else (values,)), group


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, values))


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        return f"{value:,.0f}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(value) >= 1000:
        return f"{value:,}"
    return str(value)


def log_nodes_axis(ax, values: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("nodes N (log scale)")


def _auto_log_x(ax, values) -> None:
    """A log x axis for positive numbers spanning a factor of 10 or more (session lengths, N)."""
    try:
        numbers = np.asarray(sorted(set(values)), dtype=float)
    except (TypeError, ValueError):
        return  # categories (churn kinds, models)
    if len(numbers) >= 2 and numbers[0] > 0 and numbers[-1] / numbers[0] >= 10:
        ax.set_xscale("log")
        ax.set_xticks(numbers)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def draw_latency_cdfs(ax, lookups, by: str = "nodes") -> None:
    """One CDF of successful lookups' latency per value of `by`."""
    ok = lookups[lookups["success"].astype(bool)]
    keys = [by] if by and by in ok.columns else []
    for values, group in _groups(ok, keys):
        latencies = np.sort(group["latency_ms"].to_numpy(dtype=float))
        if not len(latencies):
            continue
        fraction = np.arange(1, len(latencies) + 1) / len(latencies)
        label = f"{by}={_fmt(values[0])}" if keys else f"{len(latencies)} lookups"
        median = float(np.median(latencies))
        ax.step(latencies, fraction, where="post", label=f"{label} (median {median:.0f} ms)")
    ax.set_xlabel("lookup latency (ms)")
    ax.set_ylabel("fraction of successful lookups")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)


def draw_percentiles(ax, lookups, x: str = "nodes", series: Sequence[str] = ()) -> None:
    """Median, p90 and p99 latency of successful lookups against `x` (pooled over seeds)."""
    ok = lookups[lookups["success"].astype(bool)]
    colours = _colours()
    for (values, group), colour in zip(_groups(ok, series), colours):
        stats = group.groupby(x)["latency_ms"]
        xs = list(stats.groups)
        for q, style, name in QUANTILES:
            ys = [float(np.percentile(stats.get_group(v).to_numpy(dtype=float), q)) for v in xs]
            label = f"{name}, {_label(series, values)}" if series else name
            ax.plot(xs, ys, linestyle=style, marker="o", markersize=3, color=colour, label=label)
    ax.set_ylabel("lookup latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def draw_mean(
    ax,
    lookups,
    column: str,
    x: str = "nodes",
    series: Sequence[str] = (),
    successful_only: bool = False,
) -> None:
    """Mean of `column` per lookup against `x`, one line per series."""
    frame = lookups[lookups["success"].astype(bool)] if successful_only else lookups
    for (values, group), colour in zip(_groups(frame, series), _colours()):
        means = group.groupby(x)[column].mean()
        ax.plot(
            means.index,
            means.to_numpy(),
            marker="o",
            markersize=3,
            color=colour,
            label=_label(series, values) or None,
        )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    if series:
        ax.legend(fontsize=8)


def _lines(ax, frame, x: str, series: Sequence[str], statistic) -> None:
    """One line per series: `statistic` of each group of rows sharing a value of `x`."""
    for (values, group), colour in zip(_groups(frame, series), _colours()):
        points = group.groupby(x).apply(statistic)
        ax.plot(points.index, points.to_numpy(), marker="o", markersize=3, color=colour,
                label=_label(series, values) or None)


def draw_success(ax, lookups, x: str, series: Sequence[str] = ()) -> None:
    """Share of successful lookups against `x`, one line per series."""
    _lines(ax, lookups, x, series, lambda group: group["success"].astype(bool).mean())
    _auto_log_x(ax, lookups[x])
    ax.set_xlabel(x)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)


def draw_median_against(ax, lookups, x: str, series: Sequence[str] = ()) -> None:
    """Median latency of successful lookups against `x`, one line per series."""
    ok = lookups[lookups["success"].astype(bool)]
    _lines(ax, ok, x, series, lambda group: group["latency_ms"].median())
    _auto_log_x(ax, lookups[x])
    ax.set_xlabel(x)
    ax.set_ylabel("median latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)


def _colours() -> list[str]:
    return [f"C{i % 10}" for i in range(1000)]


# -- the standard set ------------------------------------------------------------------------------


@dataclass
class FigureReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)

    def skip(self, name: str, reason: str) -> None:
        log.info("skipped %s: %s", name, reason)
        self.skipped.append((name, reason))


def churn_parameters(results: Results) -> list[str]:
    """Varying parameters that describe churn (by name: churn, session, offline, ...)."""
    return [p for p in results.varying() if any(word in p for word in CHURN_WORDS)]


def standard_figures(results: Results | str | Path, out: str | Path) -> FigureReport:
    """Write the standard figures of a sweep or a study into OUT; report what was skipped, why."""
    if not isinstance(results, Results):
        results = load_results(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = FigureReport()
    lookups = results.lookups
    if not len(lookups):
        report.skip("all figures", "the results hold no lookups")
        return report
    has_nodes = "nodes" in lookups.columns
    node_counts = sorted(lookups["nodes"].unique()) if has_nodes else []
    title = _title(results)

    # Latency CDFs per N, one panel per combination of the other varying parameters.
    panels = list(_groups(lookups, results.series("nodes")))
    fig, axes = _panels(len(panels))
    for ax, (values, group) in zip(axes, panels):
        draw_latency_cdfs(ax, group, "nodes" if has_nodes else "")
        ax.set_title(
            _label(results.series("nodes"), values) or "find-peer lookup latency", fontsize=10
        )
    _save(fig, out / "latency_cdf.png", report, f"find-peer lookup latency{title}")

    if len(node_counts) < 2:
        reason = "needs at least two network sizes (nodes)"
        report.skip("latency_vs_nodes.png", reason)
        report.skip("rpcs_hops_vs_nodes.png", reason)
    else:
        series = results.series("nodes")
        fig = Figure(figsize=(7.0, 4.4), layout="constrained")
        ax = fig.subplots()
        draw_percentiles(ax, lookups, "nodes", series)
        log_nodes_axis(ax, node_counts)
        _save(fig, out / "latency_vs_nodes.png", report, f"lookup latency against N{title}")

        fig = Figure(figsize=(10.0, 4.0), layout="constrained")
        left, right = fig.subplots(1, 2)
        draw_mean(left, lookups, "rpcs", "nodes", series)
        left.set_ylabel("RPCs per lookup (mean)")
        draw_mean(right, lookups, "hops", "nodes", series, successful_only=True)
        right.set_ylabel("hops per successful lookup (mean)")
        for ax in (left, right):
            log_nodes_axis(ax, node_counts)
        _save(fig, out / "rpcs_hops_vs_nodes.png", report, f"lookup cost against N{title}")

    churn = churn_parameters(results)
    if not churn:
        report.skip("success_vs_churn.png", "the results do not vary a churn parameter")
    against = churn + (["loss"] if "loss" in results.varying() else [])
    for x in against:
        series = results.series(x)
        fig = Figure(figsize=(10.0, 4.0), layout="constrained")
        left, right = fig.subplots(1, 2)
        draw_success(left, lookups, x, series)
        draw_median_against(right, lookups, x, series)
        _save(fig, out / f"success_vs_{x}.png", report, f"lookups against {x}{title}")
    return report


def _title(results: Results) -> str:
    fixed = [
        p for p in ("k", "alpha", "latency") if p in results.params and p not in results.varying()
    ]
    if not fixed or not len(results.summary):
        return ""
    row = results.summary.iloc[0]
    return " (" + ", ".join(f"{'α' if p == 'alpha' else p} = {row[p]}" for p in fixed) + ")"


def _panels(count: int):
    count = max(1, min(count, MAX_PANELS))
    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(5.6 * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, list(axes[:count])


def _save(fig: Figure, path: Path, report: FigureReport, title: str) -> None:
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    report.written.append(path)
