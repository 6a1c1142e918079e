"""WAV file devices and the synthetic source."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from kadtalk.node.media.codec import FRAME_BYTES, FRAME_SAMPLES
from kadtalk.transport.audiofile import ToneSource, WavSink, WavSource, load_wav, save_wav


def test_wav_round_trip_frame_by_frame(tmp_path):
    samples = (np.arange(FRAME_SAMPLES * 3 + 100) % 2000 - 1000).astype(np.int16)
    save_wav(tmp_path / "in.wav", samples)
    src = WavSource(tmp_path / "in.wav")
    with WavSink(tmp_path / "out.wav") as sink:
        while (frame := src.read_frame()) is not None:
            assert len(frame) == FRAME_BYTES
            sink.write_frame(frame)
    out = load_wav(tmp_path / "out.wav")
    assert len(out) == FRAME_SAMPLES * 4  # the last frame is padded
    assert np.array_equal(out[:len(samples)], samples) and not out[len(samples):].any()


def test_other_rates_and_channels_become_48k_mono(tmp_path):
    t = np.arange(16000) / 16000
    left = np.round(8000 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    with wave.open(str(tmp_path / "st.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.stack([left, left], axis=1).astype("<i2").tobytes())
    out = load_wav(tmp_path / "st.wav")
    assert len(out) == 48000
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert abs(np.argmax(spectrum) - 500) <= 1
    with wave.open(str(tmp_path / "u8.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(1), w.setframerate(48000)
        w.writeframes(bytes([128, 255, 0]))
    assert list(load_wav(tmp_path / "u8.wav")) == [0, 127 * 256, -128 * 256]
    with wave.open(str(tmp_path / "s24.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(3), w.setframerate(48000)
        w.writeframes(bytes(6))
    with pytest.raises(ValueError):
        load_wav(tmp_path / "s24.wav")


def test_looping_source_and_tone_source():
    src = WavSource(np.ones(FRAME_SAMPLES, np.int16), loop=True)
    assert src.read_frame() == src.read_frame()
    assert WavSource(np.zeros(0, np.int16), loop=True).read_frame() is None
    tone = ToneSource(1000, amplitude=1000, talk=0.02, pause=0.02)
    talk, pause = tone.read_frame(), tone.read_frame()
    assert np.abs(np.frombuffer(talk, "<i2")).max() > 900 and not any(pause)
