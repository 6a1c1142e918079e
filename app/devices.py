"""The audio devices calls use, as control clients choose them (`devices`, `set_audio`;
app/audio.py's policy decides what they may choose), and the last audio error for `status`."""

from __future__ import annotations

from typing import Any, Callable

from kadtalk.transport.audiopump import AudioPump

from . import protocol
from .audio import AudioError, NotAllowed, check_devices, choose, offered, open_audio, swap
from .config import Config, ConfigError


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

    def status(self) -> dict[str, Any]:
        return {"capture": self.capture, "playback": self.playback, "error": self.error}

    def failed(self, message: str) -> None:
        """A device failed (opening it, or during a call): remember and tell every client."""
        self.error = message
        self.broadcast({"event": "audio_error", "message": message})

    def open(self) -> AudioPump:
        """The chosen devices as a call's pump, else a bad request `audio_device`."""
        try:
            audio = open_audio(self.capture, self.playback)
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
                swap(pump, capture, playback)
            else:
                check_devices(capture or self.capture, playback or self.playback)
        except AudioError as e:
            self.error = str(e)
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.capture = capture or self.capture
        self.playback = playback or self.playback
        self.error = None
        audio = {"capture": self.capture, "playback": self.playback}
        self.broadcast({"event": "audio", **audio})
        return audio
