"""The README's "two daemons on one machine" block, pasted into bash as a user would: the
commands are read from README.md and run literally, with only /tmp/ and the two UDP ports
replaced (a private directory, free ports), on loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parent.parent / "README.md"


def two_daemon_block() -> str:
    text = README.read_text()
    start = text.index("Two daemons on one machine")
    match = re.compile(r"```sh\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dominant_hz(path: Path) -> float:
    with wave.open(str(path)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
    assert len(samples) > 48000, f"{path}: {len(samples)} samples"
    spectrum = np.abs(np.fft.rfft(samples[-48000:]))
    return float(np.argmax(spectrum[1:]) + 1)  # 1 s of audio: bins are 1 Hz apart


def test_the_readme_two_daemon_block_runs_as_pasted(tmp_path):
    block = two_daemon_block()
    assert "wait-ready" in block and "kadtalk call" in block  # the block we mean
    ports = {"5004": str(free_udp_port()), "5005": str(free_udp_port())}
    script = block.replace("/tmp/", f"{tmp_path}/")
    for old, new in ports.items():
        script = script.replace(old, new)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
           "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
           "XDG_RUNTIME_DIR": str(tmp_path / "xdg-run")}
    proc = subprocess.Popen(["bash", "-c", "set -e\n" + script], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
        deadline = time.monotonic() + 20  # the daemons it stopped finish their shutdown
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the daemons did not stop")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, err[-3000:]
    assert out.count("ready: node ") == 2, out
    assert "joined (1 peer)" in out
    assert "talking with " in out and "answered\n" in out and "hung up\n" in out, out
    assert re.search(r"quality rx [\d.]+ kbit/s", out), out
    assert "Traceback" not in err and "Warning" not in err, err[-3000:]
    # each daemon recorded the other's tone
    assert abs(dominant_hz(tmp_path / "alice-hears.wav") - 660) < 5
    assert abs(dominant_hz(tmp_path / "bob-hears.wav") - 440) < 5
