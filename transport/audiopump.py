"""Moves one call's audio between audio devices and the sans-I/O `MediaCall`, one 20 ms frame
per tick: the daemon's call audio (app/daemon.py) and the media tests (tests/node/media) use it.

Devices are anything with `read_frame()` (capture: ALSA, WAV, tone; None means "no frame ready
this tick") and `write_frame(pcm)` (playback: ALSA, WAV), both with `close()`. The driver calls
`attach(session_id)` once the session is known, `capture(now, muted)` every 20 ms while talking
and sends the payload it returns with `Node.send_media`, `play(now)` at the times
`next_play(now)` names (20 ms apart, phased to packet arrival: node/media/playout.py; nothing
is written before the first frame is due), and passes every node event to `on_event`.
`tick(now, muted)` does both on one clock (the frame then waits for that clock's tick).

The capture tick comes from the driver's clock, not from the device: a capture device with no
frame ready sends nothing (the peer's jitter buffer conceals it), a playback device with no room
drops the frame. A device that fails is closed and replaced by silence (capture) or `Discard`
(playback); the failure is recorded in `errors`, never raised, so the call goes on.

`stats()` gives `capture_epoch` and `playback_epoch`: the driver-clock time of each device's
first sample as the mean over frames of (time of the read or write - 20 ms x frames before it),
so a file's sample position maps to the driver's clock (the daemon benchmark's delay).
"""

from __future__ import annotations

import logging
from typing import Any

from kadtalk.node.media.call import MediaCall, MediaSettings
from kadtalk.node.media.codec import FRAME_BYTES, FRAME_SECONDS, SILENCE

log = logging.getLogger(__name__)


class Silence:
    """A capture device that gives silence for ever."""

    def read_frame(self) -> bytes:
        return SILENCE

    def close(self) -> None:
        pass


class Discard:
    """A playback device that drops every frame."""

    frames = 0

    def write_frame(self, pcm: bytes) -> bool:
        self.frames += 1
        return True

    def close(self) -> None:
        pass


class Endless:
    """A finite source (a WAV file: None at its end) followed by silence."""

    def __init__(self, source: Any):
        self.source = source

    def read_frame(self) -> bytes:
        frame = self.source.read_frame()
        return SILENCE if frame is None else frame

    def close(self) -> None:
        self.source.close()


class AudioPump:
    """One call's devices and media. `capture_name` / `playback_name` name the devices in
    error messages and statistics."""

    def __init__(self, source: Any, sink: Any, settings: MediaSettings | None = None,
                 capture_name: str = "capture", playback_name: str = "playback"):
        self.source = source
        self.sink = sink if sink is not None else Discard()
        self.settings = settings
        self.capture_name = capture_name
        self.playback_name = playback_name
        self.media: MediaCall | None = None
        self.errors: list[str] = []  # device failures, for the driver to report
        self.frames_captured = 0
        self.frames_played = 0
        self._capture_epoch = 0.0  # sums of (time - 20 ms x frames before), see stats()
        self._playback_epoch = 0.0

    def attach(self, session_id: int) -> None:
        if self.media is None or self.media.session_id != session_id:
            self.media = MediaCall(session_id, self.settings)

    def tick(self, now: float, muted: bool = False) -> bytes | None:
        """Capture and encode one frame (the MEDIA payload, or None when the device had none
        ready); play one frame."""
        if self.media is None:
            return None
        payload = self.capture(now, muted)
        self.play(now)
        return payload

    def capture(self, now: float, muted: bool = False) -> bytes | None:
        """Read and encode one frame: the MEDIA payload, or None (no device frame ready)."""
        media = self.media
        if media is None:
            return None
        pcm = None
        try:
            pcm = self.source.read_frame()
        except Exception as e:
            self._fail("capture", e)
        if pcm is None:
            return None
        self._capture_epoch += now - FRAME_SECONDS * self.frames_captured
        self.frames_captured += 1
        if muted or len(pcm) != FRAME_BYTES:
            pcm = SILENCE
        return media.send_frame(pcm, now)

    def next_play(self, now: float) -> float | None:
        """When `play` is due next (<= now: at once); None until the peer's first frame."""
        return None if self.media is None else self.media.next_play(now)

    def play(self, now: float) -> None:
        """Pull one frame from the jitter buffer and write it to the playback device."""
        media = self.media
        if media is None:
            return
        out = media.play_frame(now)
        try:
            if self.sink.write_frame(out):
                self._playback_epoch += now - FRAME_SECONDS * self.frames_played
                self.frames_played += 1
        except Exception as e:
            self._fail("playback", e)

    def on_event(self, event: Any) -> bool:
        return self.media is not None and self.media.handle_event(event)

    def replace(self, source: Any = None, sink: Any = None, capture_name: str | None = None,
                playback_name: str | None = None) -> None:
        """Switch devices mid-call (None keeps one); the old ones are closed."""
        if source is not None:
            close(self.source)
            self.source, self.capture_name = source, capture_name or self.capture_name
        if sink is not None:
            close(self.sink)
            self.sink, self.playback_name = sink, playback_name or self.playback_name

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.media.stats()) if self.media is not None else {}
        out.update(frames_captured=self.frames_captured, frames_played=self.frames_played,
                   capture=self.capture_name, playback=self.playback_name,
                   capture_epoch=_mean(self._capture_epoch, self.frames_captured),
                   playback_epoch=_mean(self._playback_epoch, self.frames_played))
        return out

    def _fail(self, kind: str, error: Exception) -> None:
        name = self.capture_name if kind == "capture" else self.playback_name
        message = f"{kind} device {name!r} failed: {describe(error, kind)}; continuing without it"
        log.warning("%s", message)
        self.errors.append(message)
        if kind == "capture":
            close(self.source)
            self.source = Silence()
        else:
            close(self.sink)
            self.sink = Discard()

    def close(self) -> None:
        close(self.source)
        close(self.sink)


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def describe(error: Exception, kind: str | None = None) -> str:
    """A device error for people: what failed, and the likely reason (`kind`: capture or
    playback, for the command that lists such devices)."""
    text = str(error) or type(error).__name__
    lister = {"capture": "`arecord -L`", "playback": "`aplay -L`"}.get(
        kind, "`arecord -L` / `aplay -L`")
    if "No such file" in text or "Unknown PCM" in text:
        text += f" (no such device: unplugged, or a wrong name? {lister} lists them)"
    elif "busy" in text.lower():
        text += " (another program is using it)"
    return text


def close(device: Any) -> None:
    try:
        device.close()
    except Exception as e:  # a device that fails on close must not stop the driver
        log.debug("closing an audio device: %s", e)
