"""Audio devices without a sound card: WAV files and a synthetic source.

They have the ALSA devices' interface (`read_frame()` / `write_frame(pcm)`, `close()`), so a
call can run headless or in a test. WAV input of any rate and channel count (8/16-bit PCM) is
converted to 48 kHz mono; output is always 48 kHz mono S16_LE.
"""

from __future__ import annotations

import math
import wave

import numpy as np

from kadtalk.node.media.codec import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE


def load_wav(path: str) -> np.ndarray:
    """A WAV file as 48 kHz mono int16 samples."""
    with wave.open(str(path), "rb") as w:
        width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2:
        data = np.frombuffer(raw, "<i2").astype(np.float64)
    elif width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float64) - 128) * 256
    else:
        raise ValueError(f"{path}: only 8- and 16-bit PCM WAV files are supported")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return resample(data, rate, SAMPLE_RATE)


def resample(data: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear-interpolation resampling to int16 (good enough for test and speech material)."""
    data = np.asarray(data, dtype=np.float64)
    if rate != to and len(data):
        n = int(round(len(data) * to / rate))
        data = np.interp(np.arange(n) * (rate / to), np.arange(len(data)), data)
    return np.clip(np.round(data), -32768, 32767).astype(np.int16)


def save_wav(path: str, samples: np.ndarray | bytes, rate: int = SAMPLE_RATE) -> None:
    if isinstance(samples, (bytes, bytearray)):
        data = bytes(samples)
    else:
        data = np.asarray(samples, "<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


class WavSource:
    """Frames from a WAV file; None at the end (the last frame is padded with silence)."""

    __slots__ = ("samples", "position", "loop")

    def __init__(self, path_or_samples, loop: bool = False):
        if isinstance(path_or_samples, np.ndarray):
            self.samples = path_or_samples.astype(np.int16)
        else:
            self.samples = load_wav(path_or_samples)
        self.position = 0
        self.loop = loop

    def read_frame(self) -> bytes | None:
        if self.position >= len(self.samples):
            if not self.loop or not len(self.samples):
                return None
            self.position = 0
        chunk = self.samples[self.position:self.position + FRAME_SAMPLES]
        self.position += FRAME_SAMPLES
        return chunk.astype("<i2").tobytes().ljust(FRAME_BYTES, b"\0")

    def close(self) -> None:
        pass


class WavSink:
    """Frames into a WAV file (48 kHz mono S16_LE), written as they come."""

    __slots__ = ("_wave", "frames")

    def __init__(self, path: str):
        self._wave = wave.open(str(path), "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(SAMPLE_RATE)
        self.frames = 0

    def write_frame(self, pcm: bytes) -> bool:
        self._wave.writeframes(bytes(pcm[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0"))
        self.frames += 1
        return True

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
            self._wave = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ToneSource:
    """A synthetic talker: a tone at `freq` Hz, in talk spurts of `talk` seconds separated by
    `pause` seconds of silence (no pause: a steady tone). Deterministic; never ends."""

    __slots__ = ("freq", "amplitude", "talk", "pause", "_n")

    def __init__(self, freq: float = 440.0, amplitude: int = 8000, talk: float = 1.0,
                 pause: float = 0.0):
        self.freq = freq
        self.amplitude = amplitude
        self.talk = talk
        self.pause = pause
        self._n = 0

    def read_frame(self) -> bytes:
        t = (self._n + np.arange(FRAME_SAMPLES)) / SAMPLE_RATE
        wave_ = self.amplitude * np.sin(2 * math.pi * self.freq * t)
        if self.pause:
            wave_ *= (t % (self.talk + self.pause)) < self.talk
        self._n += FRAME_SAMPLES
        return np.round(wave_).astype("<i2").tobytes()

    def close(self) -> None:
        pass
