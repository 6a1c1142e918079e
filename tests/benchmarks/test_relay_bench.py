"""The relay benchmark runs on real sockets and reports coherent figures (smoke run, not timed)."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import relay


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the media sizes need espeak-ng")
def test_quick_run_relays_every_packet_and_reports_every_figure(tmp_path, capsys):
    out = tmp_path / "relay.json"
    assert relay.main(["--quick", "--calls", "2", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    figures = payload["figures"]
    assert set(figures) == {"process CPU, idle (no calls)", "CPU per call, 2 calls",
                            "the Node's work per relayed datagram (in-process, no sockets)",
                            "CPU per relayed datagram, 2 calls",
                            "added one-way delay median, 2 calls",
                            "added one-way delay p99, 2 calls"}
    assert figures["CPU per call, 2 calls"]["ours"] > 0
    assert 0 < figures["CPU per relayed datagram, 2 calls"]["ours"] < 10_000  # µs
    [run] = payload["runs"]["relay"]["2"]
    # the relay forwarded both directions of both calls, nothing dropped
    assert run["relayed_packets"] > 0 and run["drops"] == {}
    assert run["forwarded"] >= run["relayed_packets"]
    assert run["direct_median_ms"] > 0 and run["delay_median_ms"] > 0
    sizes = payload["config"]["media_datagram_bytes"]
    assert 13 < sizes["min"] <= sizes["mean"] <= sizes["max"] <= 1500  # real Opus packets
    assert "Relay cost" in capsys.readouterr().out
