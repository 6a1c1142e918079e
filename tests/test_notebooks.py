"""The notebooks run from top to bottom on small sizes (KADTALK_NB_SMALL=1), so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["lookup_latency.ipynb", "churn.ipynb"]
ALL = NAMES + ["call_setup.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_small_sizes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KADTALK_NB_SMALL", "1")
    monkeypatch.setenv("KADTALK_NB_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,  # a cell's limit (churn.ipynb took 81 s in all at load average 11, session 12)
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
    stem = name.removesuffix(".ipynb")
    assert (tmp_path / stem / "lookups.csv").stat().st_size > 0
    assert (tmp_path / stem / "figures" / "latency_cdf.png").stat().st_size > 1000


def test_call_setup_notebook_runs_on_small_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("KADTALK_NB_SMALL", "1")
    monkeypatch.setenv("KADTALK_NB_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / "call_setup.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
    out = tmp_path / "call_setup"
    assert len((out / "calls.csv").read_text().splitlines()) == 1 + 6 * 60  # 3 mixes x 2 modes
    for figure in ("setup_cdf.png", "phases.png"):
        assert (out / "figures" / figure).stat().st_size > 1000


@pytest.mark.parametrize("name", ALL)
def test_notebooks_are_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
