"""ALSA capture and playback through pyalsaaudio: 48 kHz, S16_LE, mono, one 20 ms frame a period.

Device names are ALSA PCM names ("default", "plughw:1,0", "pulse", or a PCM from an asoundrc);
the user picks them. Both devices move whole frames (1,920 bytes): a device that delivers
another period size is re-framed here.

Xruns: when the application is late, a capture PCM overruns and a playback PCM underruns;
alsa-lib reports -EPIPE. pyalsaaudio re-prepares the PCM (snd_pcm_prepare) and returns the
negative error; we count it and retry, so the stream goes on with a gap instead of failing.
A PCM that reports another error (suspended, disconnected) is closed and opened again, once
per call; if that fails too the error is raised.
"""

from __future__ import annotations

import errno
from typing import Any

import alsaaudio

from kadtalk.node.media.codec import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

FORMAT = alsaaudio.PCM_FORMAT_S16_LE


class _Pcm:
    __slots__ = ("device", "periods", "nonblocking", "xruns", "reopens", "_kind", "_pcm",
                 "_factory")

    def __init__(self, kind: int, device: str, periods: int, nonblocking: bool, factory: Any):
        if periods < 2:
            raise ValueError("periods must be at least 2")
        self.device = device
        self.periods = periods
        self.nonblocking = nonblocking
        self.xruns = 0
        self.reopens = 0
        self._kind = kind
        self._factory = factory or alsaaudio.PCM
        self._pcm = None
        self._open()

    def _open(self) -> None:
        self._pcm = self._factory(
            self._kind,
            alsaaudio.PCM_NONBLOCK if self.nonblocking else alsaaudio.PCM_NORMAL,
            rate=SAMPLE_RATE, channels=CHANNELS, format=FORMAT, periodsize=FRAME_SAMPLES,
            periods=self.periods, device=self.device,
        )

    def _reopen(self) -> None:
        self.reopens += 1
        try:
            self._pcm.close()
        except alsaaudio.ALSAAudioError:
            pass
        self._open()

    @property
    def pcm(self) -> Any:
        return self._pcm

    def close(self) -> None:
        if self._pcm is not None:
            self._pcm.close()
            self._pcm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AlsaCapture(_Pcm):
    """A capture PCM read one 20 ms frame at a time."""

    __slots__ = ("_pending",)

    def __init__(self, device: str = "default", periods: int = 4, nonblocking: bool = False,
                 factory: Any = None):
        super().__init__(alsaaudio.PCM_CAPTURE, device, periods, nonblocking, factory)
        self._pending = bytearray()

    def read_frame(self) -> bytes | None:
        """One frame of S16_LE PCM; None when non-blocking and a whole frame is not there yet."""
        tries = 0
        while len(self._pending) < FRAME_BYTES:
            try:
                length, data = self._pcm.read()
            except alsaaudio.ALSAAudioError:
                if tries:
                    raise
                tries += 1
                self._reopen()
                continue
            if length < 0:
                if length == -errno.EPIPE:
                    self.xruns += 1  # overrun: pyalsaaudio prepared the PCM; read on
                    continue
                if length == -errno.EAGAIN:
                    return None
                if tries:
                    raise alsaaudio.ALSAAudioError(f"capture read failed: {length}")
                tries += 1
                self._reopen()
                continue
            if length == 0:
                if self.nonblocking:
                    return None
                continue
            self._pending += data
        frame = bytes(self._pending[:FRAME_BYTES])
        del self._pending[:FRAME_BYTES]
        return frame


class AlsaPlayback(_Pcm):
    """A playback PCM written one 20 ms frame at a time."""

    __slots__ = ()

    def __init__(self, device: str = "default", periods: int = 4, nonblocking: bool = False,
                 factory: Any = None):
        super().__init__(alsaaudio.PCM_PLAYBACK, device, periods, nonblocking, factory)

    def write_frame(self, pcm: bytes) -> bool:
        """Play one frame; False when non-blocking and the device has no room (frame dropped)."""
        if len(pcm) != FRAME_BYTES:
            pcm = bytes(pcm[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        tries = 0
        while True:
            try:
                written = self._pcm.write(pcm)
            except alsaaudio.ALSAAudioError:
                if tries:
                    raise
                tries += 1
                self._reopen()
                continue
            if written > 0:
                return True
            if written == 0 or written == -errno.EAGAIN:
                return False
            if written == -errno.EPIPE:
                self.xruns += 1  # underrun: pyalsaaudio prepared the PCM; write again
            elif tries:
                raise alsaaudio.ALSAAudioError(f"playback write failed: {written}")
            else:
                self._reopen()
            tries += 1
            if tries > 2:
                raise alsaaudio.ALSAAudioError(f"playback write keeps failing: {written}")

    def drain(self) -> None:
        """Block until everything written has been played."""
        try:
            self._pcm.drain()
        except alsaaudio.ALSAAudioError:
            pass


def devices() -> tuple[list[str], list[str]]:
    """(capture, playback) PCM names alsa-lib knows."""
    return alsaaudio.pcms(alsaaudio.PCM_CAPTURE), alsaaudio.pcms(alsaaudio.PCM_PLAYBACK)
