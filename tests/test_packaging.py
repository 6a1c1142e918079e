"""pyproject.toml lists every package, so a plain `pip install .` ships all of kadtalk.

Editable installs (setup.sh) map whole folders and would hide a package missing from the list;
this test does not."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
ROOTS = CONFIG["package-dir"]  # dotted name -> folder


def folder_of(package: str) -> Path:
    """The folder setuptools takes `package` from (the longest mapped prefix, then the rest)."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        base = ".".join(parts[:cut])
        if base in ROOTS:
            return ROOT / ROOTS[base] / Path(*parts[cut:])
    return ROOT / Path(*parts)


def test_every_package_folder_is_listed_in_pyproject():
    found = {
        ".".join((name, *init.parent.relative_to(ROOT / path).parts))
        for name, path in ROOTS.items()
        for init in (ROOT / path).rglob("__init__.py")
    }
    assert found - set(CONFIG["packages"]) == set(), "add these to packages in pyproject.toml"


def test_every_listed_package_exists():
    missing = [p for p in CONFIG["packages"] if not folder_of(p).is_dir()]  # configs: data only
    assert missing == []
