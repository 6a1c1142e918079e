"""The media benchmark's two-daemon mode: its delay arithmetic, its iptables clean-up, and one
quick clean call between two real daemons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from benchmarks import media

SR = media.SAMPLE_RATE


def test_file_lag_finds_a_known_shift_either_way():
    rng = np.random.default_rng(3)
    captured = (rng.standard_normal(SR) * 3000).astype(np.int16)
    for shift in (0, 317, 1500, -200):
        played = np.roll(np.concatenate([captured, np.zeros(SR, np.int16)]), shift)
        assert media.file_lag(captured, played, SR // 2) == shift


def test_the_delay_adds_the_files_start_offset_on_the_clock():
    rng = np.random.default_rng(4)
    lead = (rng.standard_normal(SR // 2) * 2000).astype(np.int16)
    clip = (rng.standard_normal(SR) * 2000).astype(np.int16)
    signal = np.concatenate([lead, clip])
    # played 480 samples (10 ms) later in its file; the playback file started 5 ms after
    # the capture file on the shared clock: 15 ms from capture to playback
    played = np.concatenate([np.zeros(480, np.int16), signal])
    got = media.score_direction(signal, len(lead), clip, played, 100.0, 100.005)
    assert abs(got["file_lag_ms"] - 10.0) < 1e-9
    assert abs(got["delay_ms"] - 15.0) < 1e-6


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None,
                                reason="iptables rules need root")


@needs_root
def test_loss_rules_are_removed_even_when_the_call_fails():
    def ours() -> list[str]:
        listing = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
        return [line for line in listing.stdout.splitlines() if media.DAEMON_TAG in line]

    try:
        rules = media.iptables_loss([40001, 40002], 0.25)
        assert len(rules) == 2 and len(ours()) == 2
        assert all("0.25" in line and "statistic" in line for line in ours())
        raise RuntimeError("the call failed")
    except RuntimeError:
        pass
    finally:
        media.iptables_clear()
    assert ours() == []


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("espeak-ng") is None or not os.path.exists(media.ALSA_CONF),
                    reason="needs espeak-ng and alsa-lib")
def test_a_quick_clean_call_between_two_daemons_is_scored(capsys):
    assert media.main(["--daemons-only", "--quick", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = payload["daemons"]["table"]["0"]
    assert len(row["samples"]["pesq"]) == 2  # both directions of the one call
    # loose bounds: the shared machine's stalls move both figures
    assert 1.0 < row["pesq"] <= 4.7
    assert 0.0 < row["delay_ms"] < 300.0
    assert not [line for line in subprocess.run(
        ["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout.splitlines()
        if media.DAEMON_TAG in line]
