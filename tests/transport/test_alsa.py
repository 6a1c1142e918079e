"""kadtalk.transport.alsa over real alsa-lib: the `file` plugin (bit-exact, unpaced) and a
PulseAudio null sink (real time). See tests/transport/audio_env.py and DEVELOPERS.md."""

from __future__ import annotations

import errno
import math
import time
import wave

import alsaaudio
import numpy as np
import pytest

from kadtalk.node.media.codec import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from kadtalk.transport.alsa import AlsaCapture, AlsaPlayback, devices
from kadtalk.transport.audiofile import ToneSource

from ..node.media.callnet import CallNet
from .audio_env import alsa_files, pulse  # noqa: F401  (fixtures)


def tone(freq: float, seconds: float, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.round(amplitude * np.sin(2 * math.pi * freq * t)).astype(np.int16)


def read_wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def dominant(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def test_file_plugin_capture_is_bit_exact_one_frame_a_period(alsa_files):
    env = alsa_files("mic")
    signal_ = tone(440, 0.5)
    env.feed("mic", signal_)
    assert "mic_in" in devices()[0] and "mic_out" in devices()[1]
    with AlsaCapture("mic_in") as cap:
        assert cap.pcm.info()["period_size"] == FRAME_SAMPLES
        frames = [cap.read_frame() for _ in range(25)]
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert b"".join(frames) == signal_.tobytes()


def test_file_plugin_playback_writes_a_wav(alsa_files):
    env = alsa_files("spk")
    signal_ = tone(660, 0.4)
    with AlsaPlayback("spk_out") as out:
        for k in range(20):
            assert out.write_frame(signal_[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES].tobytes())
    assert np.array_equal(read_wav(env.wav("spk")), signal_)


def test_a_call_carries_audio_both_ways_from_capture_to_playback_devices(alsa_files):
    """Two nodes, a real key exchange and encrypted stream, real alsa-lib devices each side."""
    env = alsa_files("a", "b")
    seconds = 3.0
    env.feed("a", tone(440, seconds + 0.2))
    env.feed("b", tone(660, seconds + 0.2))
    net = CallNet(delay=0.03, jitter=0.01, loss=0.05)
    sids = net.connect()
    with AlsaCapture("a_in") as cap_a, AlsaCapture("b_in") as cap_b, \
            AlsaPlayback("a_out") as play_a, AlsaPlayback("b_out") as play_b:
        net.talk(*sids, [cap_a, cap_b], [play_a, play_b], seconds=seconds)
    heard_by_a, heard_by_b = read_wav(env.wav("a")), read_wav(env.wav("b"))
    assert len(heard_by_a) == len(heard_by_b) == int(seconds / 0.02) * FRAME_SAMPLES
    assert abs(dominant(heard_by_a[SAMPLE_RATE // 2:]) - 660) < 5  # A hears B
    assert abs(dominant(heard_by_b[SAMPLE_RATE // 2:]) - 440) < 5  # B hears A
    loud = np.sqrt(np.mean(heard_by_b[SAMPLE_RATE // 2:].astype(float) ** 2))
    assert loud > 0.5 * 8000 / math.sqrt(2)  # not just a trickle: the tone came through


class FakePcm:
    """Scripted pyalsaaudio PCM: each call returns (or raises) the next scripted result."""

    opened = 0

    def __init__(self, kind, mode, **kw):
        FakePcm.opened += 1
        self.kw = kw
        self.script = FakePcm.script  # shared: a reopened PCM goes on with the script

    def read(self):
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def write(self, data):
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self):
        pass


def test_capture_recovers_from_overruns_and_errors_and_reframes_periods():
    FakePcm.opened = 0
    half = b"\x01\x00" * (FRAME_SAMPLES // 2)
    FakePcm.script = [(-errno.EPIPE, b""), (480, half), alsaaudio.ALSAAudioError("gone"),
                      (480, half), (480, half), (480, half)]
    cap = AlsaCapture("x", factory=FakePcm)
    assert cap.pcm.kw["periodsize"] == FRAME_SAMPLES and cap.pcm.kw["rate"] == SAMPLE_RATE
    assert cap.read_frame() == half * 2  # the error reopened the PCM (new script)
    assert cap.xruns == 1 and cap.reopens == 1 and FakePcm.opened == 2


def test_playback_recovers_from_underruns_and_reopens_once():
    FakePcm.script = [-errno.EPIPE, FRAME_SAMPLES, alsaaudio.ALSAAudioError("x"), FRAME_SAMPLES]
    out = AlsaPlayback("x", factory=FakePcm)
    assert out.write_frame(bytes(FRAME_BYTES)) and out.xruns == 1
    assert out.write_frame(bytes(FRAME_BYTES)) and out.reopens == 1
    FakePcm.script = [alsaaudio.ALSAAudioError("x")] * 3
    broken = AlsaPlayback("x", factory=FakePcm)
    with pytest.raises(alsaaudio.ALSAAudioError):
        broken.write_frame(bytes(FRAME_BYTES))
    FakePcm.script = [0]
    assert AlsaPlayback("x", factory=FakePcm, nonblocking=True).write_frame(b"") is False


def test_a_missing_device_raises_a_clear_error(alsa_files):
    alsa_files("n")
    with pytest.raises(alsaaudio.ALSAAudioError):
        AlsaCapture("no_such_pcm_here")


# -- real time: a PulseAudio null sink ----------------------------------------------------------


def test_pulse_paces_playback_and_recovers_from_an_underrun(pulse):
    out = AlsaPlayback("pulse", periods=4)
    cap = AlsaCapture("pulse", periods=4)
    try:
        cap.read_frame()  # connect both streams first (the first contact is slow)
        src = ToneSource(440)
        for _ in range(10):
            out.write_frame(src.read_frame())
        start = time.monotonic()
        for _ in range(25):
            out.write_frame(src.read_frame())
            cap.read_frame()  # the monitor delivers in real time
        elapsed = time.monotonic() - start
        assert elapsed > 0.3  # 0.5 s of audio is not "played" in no time, as on `null`
        # Stop feeding playback for ~0.3 s (capture reads keep real time); it underruns.
        for _ in range(15):
            cap.read_frame()
        assert out.write_frame(src.read_frame())
        assert out.xruns >= 1  # recovered: the write after the underrun went through
    finally:
        out.close()
        cap.close()


def test_pulse_loopback_carries_the_tone(pulse):
    out = AlsaPlayback("pulse", periods=4)
    cap = AlsaCapture("pulse", periods=4)
    try:
        src = ToneSource(880)
        captured = []
        for _ in range(40):
            out.write_frame(src.read_frame())
            captured.append(cap.read_frame())
    finally:
        out.close()
        cap.close()
    heard = np.frombuffer(b"".join(captured[15:]), "<i2")
    assert np.abs(heard).max() > 1000
    assert abs(dominant(heard) - 880) < 10
