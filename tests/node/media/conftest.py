from __future__ import annotations

import math

import numpy as np
import pytest

from kadtalk.node.media.codec import FRAME_SAMPLES, SAMPLE_RATE


def voiced(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a glottal-ish harmonic series with a slowly moving pitch and
    a syllable envelope (4 Hz), plus a little noise; 48 kHz int16."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    pitch = f0 * (1 + 0.1 * np.sin(2 * math.pi * 0.7 * t))
    phase = 2 * math.pi * np.cumsum(pitch) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 16))
    envelope = 0.55 + 0.45 * np.sin(2 * math.pi * 4 * t)
    x = x * envelope + 0.01 * rng.standard_normal(n)
    return np.round(6000 * x / np.max(np.abs(x)) * 1.5).astype(np.int16)


def frames(signal: np.ndarray) -> list[bytes]:
    n = len(signal) // FRAME_SAMPLES
    return [signal[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].astype("<i2").tobytes()
            for i in range(n)]


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float64)


@pytest.fixture(scope="session")
def speech_frames() -> list[bytes]:
    return frames(voiced(3.0))
