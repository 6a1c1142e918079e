"""The audio devices calls use, as control clients choose them (`devices`, `set_audio`;
app/audio.py's policy decides what they may choose), the last audio error for `status`, and
the check `kadtalk daemon` makes at start (`check`).

A ``wav:`` playback file is created at the first frame a call plays (`LateWavSink`), not when a
call is placed or a device is checked: a call that is never answered, or ends unreachable,
leaves the last recording as it was. The file is still checked at once (`check_recording`, its
folder), so a wrong path fails when it is chosen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kadtalk.transport.audiopump import AudioPump, close

from . import protocol
from .audio import (MAX_TONE, MIN_TONE, AudioError, NotAllowed, check_recording, choose, offered,
                    open_audio, open_capture, open_playback, swap, tone_hz)
from .config import MAX_VOLUME, Config, ConfigError


class LateWavSink:
    """A ``wav:`` playback file opened (truncated) at the first frame written to it."""

    def __init__(self, path: str):
        self.path = path
        self._sink: Any = None

    def write_frame(self, pcm: bytes) -> bool:
        if self._sink is None:
            from kadtalk.transport.audiofile import WavSink

            check_recording(Path(self.path))  # it may have changed since it was chosen
            self._sink = WavSink(self.path)
        return self._sink.write_frame(pcm)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


def _wav_path(kind: str, name: str) -> Path:
    """The file of a ``wav:`` device, checked without writing it: AudioError says what is
    wrong (a missing file to play, a missing folder to record in, a file kadtalk must not
    overwrite)."""
    path = Path(name.strip()[4:])  # as open_capture / open_playback take it
    if kind == "capture":
        if not path.is_file():
            raise AudioError(f"capture {name!r}: no such file {path}")
        return path
    folder = path.parent
    if not folder.is_dir():
        raise AudioError(f"playback {name!r}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AudioError(f"playback {name!r}: cannot write in {folder}")
    try:
        check_recording(path)
    except (ValueError, OSError) as e:
        raise AudioError(f"playback {name!r}: {e}") from None
    return path


def open_sink(name: str) -> Any:
    """A playback device; a ``wav:`` file only once a call plays (LateWavSink)."""
    if name.strip().startswith("wav:"):
        return LateWavSink(str(_wav_path("playback", name)))
    return open_playback(name)


class Scaled:
    """A playback device whose frames are scaled by `owner.volume` (percent, read at each
    frame, so a change applies at once; 100 passes them through untouched)."""

    def __init__(self, sink: Any, owner: Any):
        self.sink = sink
        self.owner = owner

    def write_frame(self, pcm: bytes) -> bool:
        volume = self.owner.volume
        if volume != 100:
            samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.int32)
            pcm = np.clip(samples * volume // 100, -32768, 32767).astype("<i2").tobytes()
        return self.sink.write_frame(pcm)

    def close(self) -> None:
        close(self.sink)


def check_device(kind: str, name: str) -> None:
    """AudioError unless the device can be used now: it is opened and closed (a ``wav:``
    playback file is only checked, never created)."""
    name = name.strip()
    if name.startswith("tone:"):
        if kind != "capture":
            raise AudioError(f"playback {name!r}: a tone is a capture source only")
        try:
            tone_hz(name)
        except ValueError:
            raise AudioError(f"capture {name!r}: a tone is tone:HZ with HZ from {MIN_TONE:g} to "
                             f"{MAX_TONE:g} (tone:440)") from None
    elif name.startswith("wav:"):
        _wav_path(kind, name)
    close(open_capture(name) if kind == "capture" else open_sink(name))


def check_at_start(capture: str, playback: str) -> None:
    """What `kadtalk daemon` checks before it says "ready": DaemonError naming the device that
    cannot be used and how to choose another."""
    from .control import DaemonError

    for kind, name in (("capture", capture), ("playback", playback)):
        try:
            check_device(kind, name)
        except AudioError as e:
            spare = "none, tone:440 and wav:FILE" if kind == "capture" else "none and wav:FILE"
            raise DaemonError(f"{e}; choose another with --{kind} ([audio] {kind} in "
                              f"config.toml); {spare} need no sound card") from None


class Devices:
    """`live()`: the current call's pump, switched at once by set_audio (None: no call audio)."""

    def __init__(self, config: Config, broadcast: Callable[[dict], None],
                 live: Callable[[], AudioPump | None]):
        self.config = config
        self.broadcast = broadcast
        self.live = live
        self.capture = config.capture
        self.playback = config.playback
        self.error: str | None = None
        self.testing = False  # an audio_test runs

    @property
    def volume(self) -> int:
        """Calls' playback volume, percent (`volume`; [audio] volume, kept in settings.json)."""
        return self.config.volume

    def status(self) -> dict[str, Any]:
        return {"capture": self.capture, "playback": self.playback, "error": self.error}

    def failed(self, message: str) -> None:
        """A device failed (opening it, or during a call): remember and tell every client."""
        self.error = message
        self.broadcast({"event": "audio_error", "message": message})

    def open(self) -> AudioPump:
        """The chosen devices as a call's pump, else a bad request `audio_device`."""
        try:
            audio = open_audio(self.capture, self.playback, open_sink=self._open_sink)
        except AudioError as e:
            self.failed(str(e))
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.error = None
        return audio

    def _choose(self, kind: str, value: Any) -> str | None:
        """A device a client named, if it may choose it (audio.choose: configured, listed, or a
        WAV file in the recordings directory)."""
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            raise protocol.BadRequest("bad_argument", f'"{kind}" must be a device name')
        configured = (self.config.capture, self.config.playback)
        try:
            if value.strip().startswith("wav:"):
                self.config.recordings_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return choose(value, kind, configured, self.config.recordings_path)
        except NotAllowed as e:
            raise protocol.BadRequest("not_allowed", str(e)) from None
        except (ValueError, ConfigError) as e:
            raise protocol.BadRequest("bad_argument", f"{kind} {value!r}: {e}") from None
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"recordings directory {self.config.recordings_path}: {e}") from None

    def cmd_devices(self, client: Any, msg: dict) -> dict:
        fixed = ["none", "default", self.config.capture, self.config.playback]
        lists = {kind: list(dict.fromkeys(fixed + (["tone:440"] if kind == "capture" else [])
                                          + offered(kind))) for kind in ("capture", "playback")}
        return {**lists, "recordings_dir": str(self.config.recordings_path)}

    def cmd_set_audio(self, client: Any, msg: dict) -> dict:
        capture = self._choose("capture", msg.get("capture"))
        playback = self._choose("playback", msg.get("playback"))
        try:
            pump = self.live()
            if pump is not None:
                swap(pump, capture, playback, open_sink=self._open_sink)
            else:
                check_device("capture", capture or self.capture)
                check_device("playback", playback or self.playback)
        except AudioError as e:
            self.error = str(e)
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.capture = capture or self.capture
        self.playback = playback or self.playback
        self.error = None
        audio = {"capture": self.capture, "playback": self.playback}
        self.broadcast({"event": "audio", **audio})
        return audio

    def _open_sink(self, name: str) -> Scaled:
        return Scaled(open_sink(name), self)

    def cmd_volume(self, client: Any, msg: dict) -> dict:
        """Calls' playback volume (`percent`) and the daemon's ring tone's (`ring`), in percent
        (0-200; without them: the current ones), applied at once and kept across restarts
        (settings.json, `Config.keep`); every client gets a `volume` event."""
        changes = {}
        for arg, name in (("percent", "volume"), ("ring", "ring_volume")):
            value = msg.get(arg)
            if value is not None and (type(value) is not int or not 0 <= value <= MAX_VOLUME):
                raise protocol.BadRequest(
                    "bad_argument", f'"{arg}" must be an integer, 0-{MAX_VOLUME}')
            if value is not None and value != getattr(self.config, name):
                changes[name] = value
        try:
            for name, value in changes.items():
                self.config.keep(name, value)
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.config.settings_path}: {e.strerror}") from None
        volumes = {"volume": self.config.volume, "ring": self.config.ring_volume}
        if changes:
            self.broadcast({"event": "volume", **volumes})
        return volumes

    def cmd_audio_test(self, client: Any, msg: dict) -> dict:
        """The settings page's test (docs/control.md): a 440 Hz tone on the playback device and
        the capture device's level for `seconds` (1-10, default 3), as `audio_level` events to
        the client that asked, every 100 ms, the last with `done`. Replies at once. Never during
        a call (`busy`): the call has the devices; a ``wav:`` recording is not written (the
        tone is not played)."""
        import asyncio

        seconds = msg.get("seconds", 3)
        if type(seconds) not in (int, float) or not 1 <= seconds <= 10:
            raise protocol.BadRequest("bad_argument", '"seconds" must be a number, 1-10')
        if self.live() is not None or self.testing:
            raise protocol.BadRequest("busy", "the devices are in use (a call, or another test)")
        recording = self.playback.strip().startswith("wav:")
        try:
            source = open_capture(self.capture)
            try:
                sink = self._open_sink("none" if recording else self.playback)
            except AudioError:
                close(source)
                raise
        except AudioError as e:
            self.failed(str(e))
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.testing = True
        asyncio.ensure_future(self._audio_test(client, source, sink, round(seconds * 50)))
        return {"seconds": seconds, "capture": self.capture, "playback": self.playback,
                "played": not recording}

    async def _audio_test(self, client: Any, source: Any, sink: Any, frames: int) -> None:
        import asyncio
        import math

        from kadtalk.transport.audiofile import ToneSource

        def dbfs(value: float) -> float:
            return round(20 * math.log10(value / 32768), 1) if value > 0 else -96.0

        tone, loop = ToneSource(440.0), asyncio.get_running_loop()
        start, read, loudest, block, event = loop.time(), 0, 0.0, [], {}
        try:
            for n in range(frames):
                sink.write_frame(tone.read_frame())
                pcm = source.read_frame()
                if pcm:
                    read += 1
                    block.append(np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(float))
                if n % 5 == 4 or n == frames - 1:
                    if event:
                        client.send(event)
                    samples = np.concatenate(block) if block else np.zeros(1)
                    peak = float(np.abs(samples).max())
                    loudest = max(loudest, peak)
                    event = {"event": "audio_level", "peak_dbfs": dbfs(peak),
                             "rms_dbfs": dbfs(float(np.sqrt(np.mean(samples ** 2)))),
                             "at": round((n + 1) / 50, 2)}
                    block = []
                await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
        except Exception as e:  # a device that fails midway: said, never a crash
            self.failed(f"audio test: {e}")
        finally:
            self.testing = False
            close(source)
            close(sink)
        # the last one once the devices are free: a client may start the next test at once
        client.send({"event": "audio_level", "peak_dbfs": -96.0, "rms_dbfs": -96.0, "at": 0.0,
                     **event, "done": True, "frames_read": read, "loudest_dbfs": dbfs(loudest)})
