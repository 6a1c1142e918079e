"""What a study records: lookup rows, and the figures every summary shares."""

from __future__ import annotations

import math
import platform
import resource
import sys
from typing import Any, Callable

import simpy

from kadtalk.node.routing.events import LookupCompleted

Progress = Callable[[str, int, int], None]

LOOKUP_FIELDS = ("start", "source", "target", "latency_ms", "rpcs", "hops", "timeouts", "success")


class LookupRecorder:
    """Find-peer lookups started through `start` become rows when their LookupCompleted comes."""

    def __init__(self, ids: list[int], expected: int, progress: Progress | None = None):
        self.ids = ids
        self.expected = expected
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self.running: dict[tuple[int, int], tuple[int, float]] = {}  # (source, id) -> (target, t)

    def start(self, node: Any, source: int, target: int, now: float) -> None:
        lookup_id = node.find_peer(self.ids[target], now)
        self.running[(source, lookup_id)] = (target, now)

    def on_event(self, addr: int, event: Any) -> bool:
        """Record `event` if it ends one of our lookups; True when it did."""
        if type(event) is not LookupCompleted:
            return False
        key = (addr, event.lookup_id)
        if key not in self.running:
            return False
        target, start = self.running.pop(key)
        self.rows.append(
            {
                "start": start,
                "source": addr,
                "target": target,
                "latency_ms": event.latency * 1000.0,
                "rpcs": event.rpcs,
                "hops": event.hops,
                "timeouts": event.timeouts,
                "success": event.peer is not None and event.peer[1] == target,
            }
        )
        if self.progress:
            self.progress("lookups", len(self.rows), self.expected)
        return True

    def sorted_rows(self) -> list[dict[str, Any]]:
        self.rows.sort(key=lambda r: (r["start"], r["source"]))
        return self.rows


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def environment() -> dict[str, Any]:
    """The software a result was measured with."""
    import kadtalk

    return {
        "kadtalk": kadtalk.__version__,
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
