"""The loopback flood benchmark: a real flooding process; honest lookups through the flooded
node."""

from __future__ import annotations

import json

from benchmarks import flood


def test_quick_flood_run_keeps_honest_lookups_working(tmp_path, capsys):
    out = tmp_path / "flood.json"
    assert (
        flood.main(
            ["--quick", "--seconds", "0.5", "--lookups", "10", "--rate", "5000", "--json", str(out)]
        )
        == 0
    )
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert figures["honest lookups that succeed"]["ours"] >= 0.9  # under flood
    assert figures["honest lookups that succeed"]["baseline"] == 1.0
    [run] = payload["runs"]
    assert run["refused_source"] > 0  # the flood did reach the server and was held to its budget
    assert run["flooded"]["success"] >= 0.9
    assert "Flood on loopback" in capsys.readouterr().out
