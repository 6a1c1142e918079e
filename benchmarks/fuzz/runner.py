"""Fuzzing at scale: every parser that reads bytes from the network or a client, fed by hypothesis.

The runner: options, one `fuzz` run per target, the table and the JSON counts.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks.common import emit_json, environment, positive_int
from benchmarks.fuzz import control, relay, routing, session, stack, storage, traversal
from benchmarks.fuzz.core import Target, fuzz

DEFAULT_INPUTS = 100_000
QUICK_INPUTS = 300
FAMILIES = (routing, session, traversal, relay, storage, stack, control)
TARGETS: dict[str, Target] = {t.name: t for family in FAMILIES for t in family.TARGETS}
USAGE = """\
examples:
  python -m benchmarks.fuzz                     # 100,000 inputs per target
  python -m benchmarks.fuzz --quick             # smoke run, 300 inputs per target
  python -m benchmarks.fuzz --targets routing-decode --inputs 1000000
  python -m benchmarks.fuzz --json out.json     # also write the counts as JSON

Exit status 1 if any target crashed; the first crashing inputs are printed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--inputs",
        type=positive_int,
        default=None,
        help=f"inputs per target (default {DEFAULT_INPUTS:,}; {QUICK_INPUTS} with --quick)",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(TARGETS),
        default=None,
        help="targets to run (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few hundred inputs per target"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="also write the counts as JSON to FILE ('-': standard output)",
    )
    return parser


def print_results(results: list[dict[str, Any]], skipped: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("target", "left"),
        ("parser", "left"),
        ("inputs", "right"),
        ("crashes", "right"),
        ("inputs/s", "right"),
        ("seconds", "right"),
    ):
        table.add_column(column, justify=justify)
    for r in results:
        style = "red" if r["crashes"] else "green"
        table.add_row(
            r["target"],
            r["parser"],
            f"{r['inputs']:,}",
            f"[{style}]{r['crashes']}[/{style}]",
            f"{r['inputs_per_s'] or 0:,}",
            f"{r['seconds']:.1f}",
        )
    for name in skipped:
        table.add_row(name, "not installed: skipped", "0", "–", "–", "–")
    console = Console(width=120)
    console.print(table)
    for r in results:
        for example in r["examples"]:
            console.print(
                f"{r['target']} crash: {example['error']}\n  input: {example['input']}",
                markup=False,
                style="red",
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = args.inputs or (QUICK_INPUTS if args.quick else DEFAULT_INPUTS)
    names = args.targets or list(TARGETS)
    skipped = [n for n in names if not TARGETS[n].available()]
    results = []
    started = time.perf_counter()
    for name in names:
        if name in skipped:
            continue
        results.append(fuzz(TARGETS[name], inputs, args.seed))
        print(
            f"{name}: {results[-1]['inputs']:,} inputs, {results[-1]['crashes']} crashes, "
            f"{results[-1]['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    wall = time.perf_counter() - started
    print_results(
        results,
        skipped,
        f"Fuzzing: {inputs:,} inputs per target (hypothesis, seed {args.seed}; wall {wall:.0f} s)",
    )
    emit_json(
        args.json,
        {
            "benchmark": "fuzz",
            "config": {"inputs": inputs, "targets": names, "seed": args.seed},
            "results": results,
            "skipped": skipped,
            "wall_s": round(wall, 1),
            "environment": environment(),
        },
    )
    return 1 if any(r["crashes"] for r in results) else 0


