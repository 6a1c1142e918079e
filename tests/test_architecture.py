"""docs/architecture.md stays true: every `kadtalk.…` name it gives must import."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
NAMES = sorted(set(re.findall(r"`(kadtalk(?:\.\w+)+)`", DOC.read_text())))


def resolve(name: str) -> object:
    """Import the longest module prefix of `name`, then follow attributes for the rest."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:cut]).startswith(error.name):
                raise  # the module exists but one of its imports is missing: a real failure
            continue
        for attr in parts[cut:]:
            target = getattr(target, attr)
        return target
    raise ModuleNotFoundError(name)


def test_the_map_names_something():
    assert len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
def test_every_name_on_the_map_exists(name):
    resolve(name)
