"""Standard figures of lookup studies, drawn with matplotlib (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def latency_cdf(rows: Iterable[dict[str, Any]], path: Path, title: str = "") -> Path:
    """CDF of successful lookups' latency, with the median and p90 marked."""
    latencies = sorted(r["latency_ms"] for r in rows if r["success"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    if latencies:
        n = len(latencies)
        ax.step(latencies, [(i + 1) / n for i in range(n)], where="post", label=f"{n} lookups")
        for q, style in ((0.5, "--"), (0.9, ":")):
            value = latencies[min(n - 1, int(q * n))]
            ax.axvline(value, color="grey", linestyle=style, linewidth=0.8)
            ax.annotate(f"p{int(q * 100)} {value:.0f} ms", (value, q), xytext=(4, -12),
                        textcoords="offset points", fontsize=8)
        ax.legend(loc="lower right")
    ax.set_xlabel("lookup latency (ms)")
    ax.set_ylabel("fraction of lookups")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or "find-peer lookup latency")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
