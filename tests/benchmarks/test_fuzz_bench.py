"""The fuzz job: a short run of every target reports its counts, and finds no crash."""

from __future__ import annotations

import json

import pytest

from benchmarks import fuzz

NODE_TARGETS = ["routing-decode", "routing-layer", "session-key", "session-stream"]


def test_quick_run_of_the_node_parsers_finds_no_crash(tmp_path, capsys):
    out = tmp_path / "fuzz.json"
    status = fuzz.main(
        ["--quick", "--inputs", "400", "--targets", *NODE_TARGETS, "--json", str(out)]
    )
    payload = json.loads(out.read_text())
    rows = {r["target"]: r for r in payload["results"]}
    assert list(rows) == NODE_TARGETS
    for name, row in rows.items():
        assert row["inputs"] >= 400, name  # hypothesis ran every input asked for
        assert row["crashes"] == 0, row["examples"]
    assert status == 0
    assert "routing-layer" in capsys.readouterr().out


def test_a_crash_is_counted_and_shown(capsys):
    """The harness itself: a target that raises on some inputs is reported, not stopped at."""

    def run(_state, data: bytes) -> None:
        if data[:1] == b"\x00":
            raise ValueError("boom")

    target = fuzz.Target("toy", "toy", lambda: None, lambda _s: fuzz.typed_bytes([0, 1], 4), run)
    result = fuzz.fuzz(target, 200)
    assert result["inputs"] >= 200
    assert 0 < result["crashes"] < result["inputs"]
    assert list(result["crash_kinds"]) == ["ValueError: boom"]


@pytest.mark.skipif(not fuzz.traversal_available(), reason="kadtalk.node.traversal not installed")
def test_quick_run_of_the_traversal_parser():
    result = fuzz.fuzz(fuzz.TARGETS["traversal"], 300)
    assert result["inputs"] >= 300
    assert result["crashes"] == 0, result["examples"]


@pytest.mark.skipif(not fuzz.app_available(), reason="kadtalk.app not installed")
@pytest.mark.parametrize("name", fuzz.APP_TARGETS)
def test_quick_run_of_the_app_parsers(name):
    result = fuzz.fuzz(fuzz.TARGETS[name], 300)
    assert result["inputs"] >= 300
    # (a request with two Host headers once made app/web.py's check raise: found by this job)
    assert result["crashes"] == 0, result["examples"]
