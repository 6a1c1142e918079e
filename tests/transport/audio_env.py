"""Real alsa-lib without a sound card, for the audio tests (see DEVELOPERS.md).

- `alsa_files`: an ALSA configuration appended to the search path through ALSA_CONFIG_PATH,
  defining PCMs on alsa-lib's `file` plugin: capture devices that read raw S16_LE files and
  playback devices that write WAV files, bit-exact, as fast as the code runs (no pacing).
- `pulse`: a PulseAudio daemon with a null sink, started in a temporary directory and stopped
  afterwards, so that ALSA's `pulse` device plays and captures in real time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kadtalk.node.media.codec import SAMPLE_RATE

ALSA_CONF = "/usr/share/alsa/alsa.conf"


class AlsaFiles:
    """PCM names <name>_in (capture from <name>.raw) and <name>_out (playback to <name>.wav)."""

    def __init__(self, root: Path, names: list[str], monkeypatch):
        self.root = root
        lines = []
        for name in names:
            raw = root / f"{name}.raw"
            raw.write_bytes(b"")
            lines += [
                f'pcm.{name}_in_file {{ type file slave.pcm "null" file "/dev/null" '
                f'infile "{raw}" format "raw" }}',
                f"pcm.{name}_in {{ type plug slave {{ pcm \"{name}_in_file\" format S16_LE "
                f"rate {SAMPLE_RATE} channels 1 }} }}",
                f'pcm.{name}_out_file {{ type file slave.pcm "null" file "{root / name}.wav" '
                f'format "wav" }}',
                f"pcm.{name}_out {{ type plug slave {{ pcm \"{name}_out_file\" format S16_LE "
                f"rate {SAMPLE_RATE} channels 1 }} }}",
            ]
        conf = root / "kadtalk-test.conf"
        conf.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("ALSA_CONFIG_PATH", f"{ALSA_CONF}:{conf}")

    def feed(self, name: str, samples: np.ndarray) -> None:
        (self.root / f"{name}.raw").write_bytes(np.asarray(samples, "<i2").tobytes())

    def wav(self, name: str) -> Path:
        return self.root / f"{name}.wav"


@pytest.fixture
def alsa_files(tmp_path, monkeypatch):
    if not os.path.exists(ALSA_CONF):
        pytest.skip(f"alsa-lib's configuration {ALSA_CONF} is missing (install libasound2)")
    return lambda *names: AlsaFiles(tmp_path, list(names), monkeypatch)


DEFAULT_PA = """\
load-module module-null-sink sink_name=nullsink rate=48000 channels=1
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
set-default-sink nullsink
set-default-source nullsink.monitor
"""


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio daemon with a null sink; yields the environment that reaches it."""
    binary = shutil.which("pulseaudio")
    if binary is None:
        pytest.skip("pulseaudio is not installed (./setup.sh installs it)")
    root = tmp_path_factory.mktemp("pulse")
    runtime, home = root / "rt", root / "home"
    runtime.mkdir(mode=0o700)
    home.mkdir()
    socket = root / "native"
    script = root / "default.pa"
    script.write_text(DEFAULT_PA.format(socket=socket))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), HOME=str(home))
    started = subprocess.run(
        [binary, "--daemonize=yes", "--exit-idle-time=-1", "-n", "-F", str(script),
         "--use-pid-file=yes", f"--log-target=file:{root / 'log'}"],
        env=env, capture_output=True, text=True, timeout=30,
    )
    pid_file = runtime / "pulse" / "pid"
    if started.returncode != 0 or not pid_file.exists():
        log = (root / "log").read_text() if (root / "log").exists() else started.stderr
        pytest.skip(f"pulseaudio could not start here: {log.strip()[-300:]}")
    try:
        pid = int(pid_file.read_text().split()[0])
    except (IndexError, ValueError):  # read while the daemon was still writing it
        pytest.skip("pulseaudio's pid file was empty; rerun")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULSE_SERVER", f"unix:{socket}")
        mp.setenv("XDG_RUNTIME_DIR", str(runtime))
        mp.setenv("HOME", str(home))
        yield {"PULSE_SERVER": f"unix:{socket}"}
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):  # the daemon exits within a few ms; poll its pid
            os.kill(pid, 0)  # ProcessLookupError once it is gone
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone (it may exit between any two of these calls)
