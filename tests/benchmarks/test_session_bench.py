"""The session benchmark runs and reports coherent figures (smoke run, not timed)."""

from __future__ import annotations

import json

from benchmarks import session


def test_quick_run_reports_every_figure(tmp_path, capsys):
    out = tmp_path / "session.json"
    assert session.main(["--quick", "--repeat", "1", "--handshakes", "5", "--packets", "200",
                         "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert figures["(c) overhead per packet"]["ours"] == 13
    assert figures["(c) overhead per packet"]["baseline"] == 21
    for name, fig in figures.items():
        assert fig["ours"] > 0 and fig["baseline"] > 0, name
    assert payload["config"]["handshakes"] == 5
    assert "Session layer" in capsys.readouterr().out
