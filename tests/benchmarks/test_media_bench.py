"""The media benchmark runs and reports coherent figures (smoke run: jitter 0, short speech)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import media

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is not installed (./setup.sh installs it)")


def test_quick_run_reports_every_map(capsys):
    assert media.main(["--quick", "--json", "-"]) == 0
    out = capsys.readouterr().out
    payload = json.loads(out.strip().splitlines()[-1])
    for key in ("overhead_bytes", "latency_ms", "cpu_ms_per_frame", "pesq", "pesq_baseline"):
        assert set(payload[key]) == {"0", "5", "10", "20"}, key
    assert set(payload["overhead_bytes"].values()) == {13.0}
    pesq, base = payload["pesq"], payload["pesq_baseline"]
    assert pesq["0"] > 3.5 and pesq["0"] > pesq["10"] > 1.0
    assert pesq["10"] > base["10"]  # concealment + FEC beat silence
    assert 20 < payload["latency_ms"]["0"] < 60
    assert 0 < payload["cpu_ms_per_frame"]["0"] < 5
    assert "Media layer" in out
