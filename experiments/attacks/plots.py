"""The standard attack figures: what `kadtalk sim attack figures` and notebooks/attacks.ipynb
draw, and the CSV tables and summary.json behind them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .partition import PartitionStudy, run_partition_study, success_series
from .results import frame, json_default
from .sweeps import keygen_sweep, sybil_sweep
from .sybil import SHARES, SybilStudy


STYLES = ("-", "--", ":", "-.")


def draw_against_share(ax, table, metric: str, ylabel: str) -> None:
    for i, (name, group) in enumerate(table.groupby("defence", sort=False)):
        group = group.sort_values("share")
        ax.plot(
            group["share"] * 100,
            group[metric],
            marker="os^vD<>"[i % 7],
            markersize=4,
            linestyle=STYLES[i % len(STYLES)],
            label=name,
        )
    ax.set_xlabel("attacker's share of nodes (%)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def figures(
    out: str | Path,
    nodes: int = 1000,
    lookups: int = 200,
    seed: int = 1,
    shares: Sequence[float] = SHARES,
    budgets: Sequence[float] = (1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
    partition: PartitionStudy | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Path]:
    """Run the standard attack studies and write their tables and figures to `out`:

    sybil_eclipse.csv / .png      lookups for one victim against the attacker's share, per defence
    sybil_random.csv / .png       lookups for random honest targets (interception anywhere)
    keygen_cost.csv / .png        ids=keygen: closeness bought with key generation
    partition_lookups.csv, partition_series.csv, partition.png   a region dark and back
    summary.json                  the studies' parameters and headline figures
    """
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    base = SybilStudy(nodes=nodes, lookups=lookups, seed=seed)

    def tick(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, total: progress(name, done, total))

    headline: dict[str, Any] = {}
    for name, target, ids in (
        ("sybil_eclipse", "one", "free"),
        ("sybil_random", "random", "random"),
    ):
        table = frame(
            sybil_sweep(replace(base, target=target, ids=ids), shares, progress=tick(name))
        )
        table.to_csv(out / f"{name}.csv", index=False)
        fig = Figure(figsize=(11, 4), layout="constrained")
        left, right = fig.subplots(1, 2)
        draw_against_share(left, table, "reached_rate", "lookups that reached the true target")
        draw_against_share(right, table, "intercepted_rate", "lookups that returned a fake")
        left.legend(fontsize=7)
        what = (
            "one victim, attacker IDs next to it"
            if target == "one"
            else "random targets, random attacker IDs"
        )
        fig.suptitle(f"Sybil attack, {what}: {nodes} honest nodes, k = {base.k}")
        fig.savefig(out / f"{name}.png", dpi=120)
        written[name] = out / f"{name}.png"
        headline[name] = table[["defence", "share", "reached_rate", "intercepted_rate"]].to_dict(
            "records"
        )

    table = frame(keygen_sweep(replace(base, share=0.05), budgets))
    table.to_csv(out / "keygen_cost.csv", index=False)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    for name, group in table.groupby("defence", sort=False):
        ax.plot(
            group["keys_per_id"],
            group["reached_rate"],
            marker="o",
            markersize=3,
            label=name,
            linestyle=STYLES[len(ax.lines) % len(STYLES)],
        )
    ax.set_xscale("log")
    ax.set_xlabel("keys generated per attacker node (ID = SHA-1 of the key)")
    ax.set_ylabel("lookups that reached the true target")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    rate = float(table["keys_per_s"].iloc[0])
    ax.set_title(f"5 % attacker, one victim; {rate:,.0f} keys/s per core here", fontsize=9)
    fig.savefig(out / "keygen_cost.png", dpi=120)
    written["keygen_cost"] = out / "keygen_cost.png"
    headline["keygen_cost"] = table[
        [
            "defence",
            "keys_per_id",
            "keygen_cpu_s",
            "victim_prefix_attacker",
            "victim_prefix_honest",
            "reached_rate",
        ]
    ].to_dict("records")

    study = partition or PartitionStudy(nodes=nodes, seed=seed)
    result = run_partition_study(study)
    frame(result.rows).to_csv(out / "partition_lookups.csv", index=False)
    series = frame(success_series(result.rows, study.bin, study.duration))
    series.to_csv(out / "partition_series.csv", index=False)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    draw_partition(ax, result.rows, study)
    fig.savefig(out / "partition.png", dpi=120)
    written["partition"] = out / "partition.png"
    headline["partition"] = result.summary
    (out / "summary.json").write_text(json.dumps(headline, indent=1, default=json_default))
    written["summary"] = out / "summary.json"
    return written


def draw_partition(ax, rows: Sequence[dict[str, Any]], study: PartitionStudy) -> None:
    series = success_series(rows, study.bin, study.duration)
    outside = success_series(
        [r for r in rows if not r["source_in_region"] and not r["target_in_region"]],
        study.bin,
        study.duration,
    )
    mids = [s["t"] + study.bin / 2 for s in series]
    ax.axvspan(
        study.dark_at,
        study.dark_at + study.dark_for,
        color="grey",
        alpha=0.2,
        label=f"{study.region:.0%} of nodes dark",
    )
    ax.plot(
        mids, [s["success_rate"] for s in series], marker="o", markersize=3, label="all lookups"
    )
    ax.plot(
        mids,
        [s["success_rate"] for s in outside],
        marker="s",
        markersize=3,
        linestyle="--",
        label="both ends outside the region",
    )
    ax.set_xlabel("time since lookups started (s)")
    ax.set_ylabel(f"lookup success per {study.bin:g} s")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")

