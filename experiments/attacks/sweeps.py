"""The standard sweeps of the Sybil study: attacker share per defence, and key-generation budget
(what closeness to the victim costs when ID = SHA-1(key)); one summary row per run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

from .sybil import DEFENCES, SHARES, SybilStudy, keygen_rate, run_sybil_study


def sybil_sweep(
    base: SybilStudy,
    shares: Sequence[float] = SHARES,
    defences: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One summary row per (defence, share): a tidy table."""
    defences = DEFENCES if defences is None else defences
    rows = []
    total = len(shares) * len(defences)
    for name, overrides in defences.items():
        for share in shares:
            result = run_sybil_study(replace(base, share=share, **overrides))
            rows.append({"defence": name} | result.summary)
            if progress:
                progress(len(rows), total)
    return rows


def keygen_sweep(
    base: SybilStudy,
    budgets: Sequence[float] = (1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6),
    defences: Sequence[str] = ("as old as honest", "verify+4 paths", "verify+4 paths+/24"),
) -> list[dict[str, Any]]:
    """What closeness to the victim costs when ID = SHA-1(key): one row per (defence, budget)."""
    rate = keygen_rate()
    rows = []
    for name in defences:
        for budget in budgets:
            study = replace(base, ids="keygen", keys_per_id=float(budget), **DEFENCES[name])
            summary = run_sybil_study(study).summary
            rows.append(
                {
                    "defence": name,
                    "keygen_cpu_s": summary["keys_generated"] / rate,
                    "keys_per_s": rate,
                }
                | summary
            )
    return rows

