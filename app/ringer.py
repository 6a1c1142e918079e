"""The ring tone: played on a playback device while an incoming call rings here, so a Pi with a
speaker and no screen rings like a phone.

``[calls] ring_tone``: ``tone`` (the default: a generated double ring, 400 + 450 Hz, 0.4 s on,
0.2 s off, 0.4 s on, 2 s off), ``none``, or the path of a WAV file (8- or 16-bit PCM, any rate
and channel count; played in a loop, at most `MAX_SECONDS` of it). A file that is missing or
not audio is logged once, clearly, and the generated tone rings instead.

``[calls] ring_device``: the playback device to ring on; by default the call's playback device,
unless that is ``none`` or a ``wav:`` recording (nothing rings then). The device is opened when
the call starts ringing and closed before it is answered (the call needs it) or ends. A device
that cannot be opened or fails is logged and the call rings silently; the daemon goes on.

``[calls] ring_volume`` (0-200 %, default 100; the `volume` control command's ``ring``, kept
across restarts) scales the tone at each frame, so a change applies while it rings.

Frames go out every 20 ms from the event loop, like the call's audio (app/calls.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Callable

import numpy as np

from kadtalk.node.media.codec import FRAME_BYTES, SAMPLE_RATE
from kadtalk.transport.audiopump import close

from .audio import AudioError, open_playback
from .devices import Scaled

log = logging.getLogger(__name__)

FRAME = 0.02
FRAME_SAMPLES = FRAME_BYTES // 2
MAX_SECONDS = 30.0  # of a ring tone file
PATTERN = ((0.4, True), (0.2, False), (0.4, True), (2.0, False))  # seconds, sounding
TONE_HZ = (400.0, 450.0)
AMPLITUDE = 6000  # per component: about -9 dBFS together


def generated_tone() -> list[bytes]:
    """One cycle of the built-in double ring as 20 ms frames (S16_LE, 48 kHz mono)."""
    parts = []
    for seconds, sounding in PATTERN:
        t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
        if sounding:
            wave = sum(np.sin(2 * math.pi * hz * t) for hz in TONE_HZ) * AMPLITUDE
            ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # 5 ms fades: no clicks
            parts.append(wave * ramp)
        else:
            parts.append(np.zeros(len(t)))
    return _frames(np.concatenate(parts))


def _frames(samples: np.ndarray) -> list[bytes]:
    n = len(samples) // FRAME_SAMPLES
    pcm = np.clip(np.round(samples[: n * FRAME_SAMPLES]), -32768, 32767).astype("<i2")
    return [pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes() for i in range(n)]


def load_ring_tone(spec: str) -> list[bytes] | None:
    """The frames of `spec` (``tone``, ``none`` -> None, or a WAV path); a file that cannot be
    used is logged and replaced by the generated tone."""
    spec = spec.strip()
    if spec == "none":
        return None
    if spec in ("", "tone"):
        return generated_tone()
    from kadtalk.transport.audiofile import load_wav

    try:
        samples = load_wav(spec)
    except FileNotFoundError:
        log.warning("ring tone %s: no such file; ringing with the built-in tone", spec)
        return generated_tone()
    except Exception as e:  # wave.Error (not a WAV file), EOFError, ValueError (24-bit, ...)
        log.warning("ring tone %s is not a usable WAV file (%s); ringing with the built-in tone",
                    spec, str(e) or type(e).__name__)
        return generated_tone()
    frames = _frames(samples[: int(MAX_SECONDS * SAMPLE_RATE)])
    if not frames:
        log.warning("ring tone %s holds no sound; ringing with the built-in tone", spec)
        return generated_tone()
    return frames


class Ringer:
    """Rings on one device while `start` .. `stop`; `open_device` is app/audio.open_playback."""

    def __init__(self, frames: list[bytes] | None, device: str | None,
                 open_device: Callable[[str], Any] = open_playback,
                 volume: Callable[[], int] = lambda: 100):
        self.frames = frames
        self._volume = volume  # percent, read at each frame (Scaled)
        self.device = device
        self.open_device = open_device
        self.ringing = False
        self.frames_played = 0
        self._sink: Any = None
        self._handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0

    @property
    def volume(self) -> int:
        return self._volume()

    @property
    def enabled(self) -> bool:
        return bool(self.frames) and bool(self.device)

    def start(self) -> None:
        if self.ringing or not self.enabled:
            return
        try:
            self._sink = Scaled(self.open_device(self.device), self)
        except AudioError as e:
            log.warning("cannot ring: %s", e)
            return
        self.ringing = True
        loop = asyncio.get_running_loop()
        self._t0, self._n = loop.time(), 0
        self._handle = loop.call_soon(self._tick)

    def stop(self) -> None:
        """Silence, and free the device (a call about to be answered needs it)."""
        self.ringing = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._sink is not None:
            close(self._sink)
            self._sink = None

    def _tick(self) -> None:
        if not self.ringing:
            return
        frame = self.frames[self._n % len(self.frames)]
        try:
            if self._sink.write_frame(frame):
                self.frames_played += 1
        except Exception as e:
            log.warning("ring device %r failed: %s; ringing silently", self.device,
                        str(e) or type(e).__name__)
            self.stop()
            return
        self._n += 1
        loop = asyncio.get_running_loop()
        due = self._t0 + self._n * FRAME
        now = loop.time()
        if due < now - 5 * FRAME:  # the loop was held up: skip ahead, do not burst
            self._t0, self._n, due = now, 0, now
        self._handle = loop.call_at(due, self._tick)
