"""The first-second benchmark: its frame analysis on recordings made to order, and a quick run of
two calls through two real daemons under 20 % iptables loss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from benchmarks import first_second as fs
from benchmarks import media

SR = fs.SAMPLE_RATE
FRAME = fs.FRAME_SAMPLES


def talker(seconds: float, seed: int = 5) -> np.ndarray:
    """Speech-like test audio: noise under a syllable envelope (4 per second, some quieter)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    return (rng.standard_normal(len(t)) * 4000 * envelope).astype(np.int16)


def recording(captured: np.ndarray, delay: float, absent: float = 0.0,
              step_at: float | None = None, step: float = 0.1) -> np.ndarray:
    """What a caller plays: the capture `delay` later, its first `absent` seconds never played
    (the recording starts with the first frame after them), and, from `step_at`, 100 ms more
    delay (a host freeze: silence, then the rest)."""
    played = np.concatenate([np.zeros(int(delay * SR), np.int16), captured])
    if step_at is not None:
        cut = int((delay + step_at) * SR)
        played = np.concatenate([played[:cut], np.zeros(int(step * SR), np.int16), played[cut:]])
    return played[int((delay + absent) * SR):]


def test_a_call_whose_first_600_ms_never_played_lost_its_first_second():
    captured = talker(5.0)
    # the recording began 600 ms late on the clock too (its first sample was played then)
    got = fs.analyse(captured, recording(captured, 0.05, absent=0.6), 100.0, 100.65, 200)
    assert got["lost_first_second"]
    assert got["first_missing"] == 30 and got["missing_frames"] == list(range(30))
    assert got["first_heard_ms"] == 600
    assert got["rest_heard_share"] == 1.0
    assert abs(got["delay_ms"] - 50.0) < 0.1


def test_a_host_freeze_moves_the_lag_but_loses_nothing():
    captured = talker(5.0)
    got = fs.analyse(captured, recording(captured, 0.04, step_at=0.5), 10.0, 10.04, 200)
    assert not got["lost_first_second"]
    assert got["first_missing"] == 0 and got["rest_heard_share"] == 1.0
    assert got["block_delays_ms"][0] == pytest.approx(40.0, abs=0.1)
    assert got["block_delays_ms"][-1] == pytest.approx(140.0, abs=0.1)


def test_silence_where_the_first_frames_belong_is_missing_too():
    captured = talker(5.0)
    played = recording(captured, 0.05)
    played[:int(0.3 * SR)] = 0  # the caller played silence for the callee's first 300 ms
    got = fs.analyse(captured, played, 100.0, 100.0, 200)
    assert got["first_missing"] == 15 and got["lost_first_second"]


def test_a_recording_of_something_else_hears_nothing():
    captured = talker(5.0)
    got = fs.analyse(captured, talker(5.0, seed=9), 100.0, 100.0, 200)
    assert got["first_missing"] == got["first_speech"] == 50
    assert got["rest_heard_share"] == 0.0


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None,
                                reason="iptables loss rules need root")


@needs_root
@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("espeak-ng") is None or not os.path.exists(media.ALSA_CONF),
                    reason="needs espeak-ng and alsa-lib")
def test_a_quick_run_of_two_lossy_calls(capsys):
    assert fs.main(["--quick", "--json", "-"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["config"]["loss"] == 20 and payload["config"]["calls"] == 2
    assert payload["lost_first_second"] == sum(c["lost_first_second"] for c in payload["calls"])
    assert len(payload["calls"]) == 2
    for call in payload["calls"]:
        assert call["first_speech"] >= 40  # the trimmed speech talks from its first frame
        assert 0.0 < call["delay_ms"] < 1000.0
        # the caller played the callee's speech: most of it after the first second is found
        # in its recording (loose: this shared host freezes processes for ~100 ms at times)
        assert call["rest_heard_share"] >= 0.7
        assert call["first_heard_ms"] is not None
    assert not [line for line in subprocess.run(
        ["iptables", "-S", "INPUT"], capture_output=True, text=True).stdout.splitlines()
        if media.DAEMON_TAG in line]
