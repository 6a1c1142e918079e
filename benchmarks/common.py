"""Shared helpers for the benchmarks: options, medians, ratios, the rich table and JSON output.

Every benchmark follows the same rules (machines are shared and noisy):

- figures are ratios against a baseline measured in the same invocation, never absolute
  numbers compared across runs;
- each figure is the median over `--repeat N` repetitions (default 5);
- a table is printed; `--json FILE` also writes the figures as JSON, and `--json -` prints them
  as one JSON object on the last line of standard output;
- `--quick` is a short smoke run (a test runs it, so it must stay well under ~20 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

HIGHER = "higher"  # a larger value is better (throughput)
LOWER = "lower"  # a smaller value is better (latency, RPCs)


# -- options ------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_common_options(parser: argparse.ArgumentParser, default_repeat: int = 5) -> None:
    """--repeat, --quick and --json, the same in every benchmark."""
    group = parser.add_argument_group("common benchmark options")
    group.add_argument(
        "--repeat", type=positive_int, default=None, metavar="N",
        help=f"repetitions; every figure is the median over them (default {default_repeat}, "
        "2 with --quick)",
    )
    group.add_argument(
        "--quick", action="store_true",
        help="short smoke run: fewer and shorter repetitions (finishes in well under 20 s)",
    )
    group.add_argument(
        "--json", metavar="FILE",
        help="also write the figures as JSON to FILE; '-' prints them as one JSON object on the "
        "last line of standard output",
    )
    parser.set_defaults(_default_repeat=default_repeat)


def resolve_repeat(args: argparse.Namespace, quick_repeat: int = 2) -> int:
    if args.repeat is not None:
        return args.repeat
    return quick_repeat if args.quick else args._default_repeat


# -- statistics ---------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """Median of the finite values; NaN when there are none."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def mean(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    return data[low] + (data[high] - data[low]) * (position - low)


def ratio(ours: float, baseline: float) -> float:
    """ours / baseline, NaN when undefined (baseline 0 or missing)."""
    if not _finite(ours) or not _finite(baseline) or baseline == 0:
        return math.nan
    return ours / baseline


# -- figures and the table ----------------------------------------------------------------------


@dataclass
class Figure:
    """One row: our value, the baseline's, and which direction is better (None: context only)."""

    name: str
    ours: float
    baseline: float
    unit: str = ""
    better: str | None = None  # HIGHER, LOWER or None
    note: str = ""
    digits: int = 1
    samples: dict[str, list[float]] = field(default_factory=dict)  # per-repetition values

    @property
    def ratio(self) -> float:
        return ratio(self.ours, self.baseline)

    @property
    def ours_wins(self) -> bool | None:
        if self.better is None or not _finite(self.ours) or not _finite(self.baseline):
            return None  # context only, or a value is missing
        if self.ours == self.baseline:
            return None  # a tie
        # compare the values, not the ratio, so that a zero baseline still has a winner
        return self.ours > self.baseline if self.better == HIGHER else self.ours < self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {
            "ours": _json_number(self.ours),
            "baseline": _json_number(self.baseline),
            "ratio": _json_number(self.ratio),
            "unit": self.unit,
            "better": self.better,
            "ours_wins": self.ours_wins,
            "note": self.note,
            "samples": {k: [_json_number(v) for v in vs] for k, vs in self.samples.items()},
        }


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)


def _json_number(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and (math.isnan(value) or math.isinf(value))):
        return None
    return value


def format_value(value: float, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.{digits}f}"
    return f"{text} {unit}".rstrip()


def format_ratio(value: float) -> str:
    if math.isnan(value):
        return "–"
    if value >= 100 or value < 0.01:
        return f"{value:.3g}×"
    return f"{value:.2f}×"


def print_table(
    title: str,
    figures: Sequence[Figure],
    ours_name: str,
    baseline_name: str,
    notes: Sequence[str] = (),
    console: Any = None,
) -> None:
    """figure | ours | baseline | ratio (ours / baseline) | which way is better, then notes."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(120, _terminal_width()))
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column(ours_name, justify="right")
    table.add_column(baseline_name, justify="right")
    table.add_column(f"ratio {ours_name}/{baseline_name}", justify="right")
    table.add_column("better", justify="left")
    for fig in figures:
        wins = fig.ours_wins
        if fig.better is None:
            verdict = "(context)"
        else:
            arrow = "higher ↑" if fig.better == HIGHER else "lower ↓"
            if wins is None:
                tie = _finite(fig.ours) and fig.ours == fig.baseline
                verdict = f"{arrow}: tie" if tie else arrow
            else:
                winner = ours_name if wins else baseline_name
                style = "green" if wins else "red"
                verdict = f"{arrow}: [{style}]{winner}[/{style}]"
        name = fig.name + (f" [dim]({fig.note})[/dim]" if fig.note else "")
        table.add_row(
            name,
            format_value(fig.ours, fig.digits, fig.unit),
            format_value(fig.baseline, fig.digits, fig.unit),
            format_ratio(fig.ratio),
            verdict,
        )
    console.print(table)
    for note in notes:
        console.print(f"[dim]•[/dim] {note}", highlight=False)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0


# -- JSON ---------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def emit_json(destination: str | None, payload: dict[str, Any]) -> None:
    """Write `payload` to FILE, or print it as the last line of stdout for '-'."""
    if not destination:
        return
    text = json.dumps(_sanitize(payload), allow_nan=False, default=_json_default)
    if destination == "-":
        sys.stdout.flush()
        print(text, flush=True)
    else:
        with open(destination, "w") as f:
            f.write(text + "\n")


def _sanitize(value: Any) -> Any:
    """NaN and infinities become null (JSON has neither); tuples become lists."""
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, dict):
        return {str(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def figures_payload(figures: Sequence[Figure]) -> dict[str, Any]:
    return {fig.name: fig.as_dict() for fig in figures}


# -- ports --------------------------------------------------------------------------------------


def busy_udp_ports(host: str, ports: Iterable[int]) -> list[int]:
    """The ports among `ports` that cannot be bound for UDP on `host` right now."""
    busy = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            busy.append(port)
        finally:
            sock.close()
    return busy
