"""What an attack study returns and how it is written out: `AttackResult` (tidy rows, one
summary), a pandas frame of rows, JSON for summaries (NaN as null)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence


@dataclass
class AttackResult:
    study: Any
    rows: list[dict[str, Any]]
    summary: dict[str, Any]



def frame(rows: Sequence[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame(list(rows))



def json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return str(value)



def study_parameters(study: Any) -> dict[str, Any]:
    return asdict(study)
