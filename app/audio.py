"""The daemon's audio policy: which device names mean what, which ones a control client may
choose, and opening them as one call's `AudioPump` (transport/audiopump.py moves the frames).

Device names (config [audio], flags --capture / --playback, the `set_audio` command):

- an ALSA PCM name: ``default``, ``plughw:1,0``, ``pulse``, a PCM from an asoundrc; opened
  non-blocking, so the event loop never waits on a device;
- ``none``: capture sends silence, playback discards;
- ``tone:HZ`` (capture only): a steady test tone;
- ``wav:PATH``: capture plays a WAV file (then silence), playback records one. Playback never
  overwrites an existing file that is not a kadtalk recording (`check_recording`).

A control client (`set_audio`) may choose only what `choose` allows: the devices the user
configured, ``none``, ``default``, a tone, the PCMs ALSA lists (`offered`), and WAV files inside
the recordings directory (``[audio] recordings_dir``). Arbitrary ALSA names are refused because
a PCM name can write files too (``file:FILE=PATH``, ``tee:``).

Devices are opened when a call is placed or answered and closed when it ends, so a device that
is busy or unplugged is reported right then (AudioError) and the daemon keeps running.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any, Callable, Iterable

from kadtalk.node.media.call import MediaSettings
from kadtalk.transport.audiopump import AudioPump, Discard, Endless, Silence, close, describe

log = logging.getLogger(__name__)


class AudioError(Exception):
    """An audio device cannot be opened or used; the message names it."""


class NotAllowed(Exception):
    """A control client asked for a device or file it may not choose; the message says why."""


MIN_TONE, MAX_TONE = 20.0, 20000.0  # Hz


def tone_hz(name: str) -> float:
    """The frequency of ``tone:HZ`` (ValueError unless a finite 20-20000)."""
    hz = float(name[5:])
    if not (math.isfinite(hz) and MIN_TONE <= hz <= MAX_TONE):
        raise ValueError(f"a tone is {MIN_TONE:g}-{MAX_TONE:g} Hz")
    return hz


# A kadtalk recording starts with the header WavSink writes: RIFF/WAVE, PCM, mono, 48 kHz, 16 bit.
_HEADER = struct.Struct("<4sI4s4sIHHIIHH")


def check_recording(path: Path) -> None:
    """ValueError unless writing a recording to ``path`` destroys nothing: it does not exist, or
    it is a regular file (not a symlink) that is empty or holds a kadtalk recording's header."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} exists and is not a regular file")
    if info.st_size == 0:
        return
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
    fields = _HEADER.unpack(head) if len(head) == _HEADER.size else None
    if fields is None or (fields[0], fields[2], fields[3], fields[5], fields[6], fields[7],
                          fields[10]) != (b"RIFF", b"WAVE", b"fmt ", 1, 1, 48000, 16):
        raise ValueError(f"{path} exists and is not a kadtalk recording (a 48 kHz mono 16-bit "
                         "WAV file); kadtalk never overwrites other files")


def offered(kind: str) -> list[str]:
    """The PCM names alsa-lib lists for ``kind`` (capture / playback), as `aplay -L` does."""
    try:
        from kadtalk.transport.alsa import devices

        capture, playback = devices()
    except Exception:  # no alsa-lib, no pyalsaaudio: only the other choices
        return []
    return capture if kind == "capture" else playback


def choose(name: str, kind: str, configured: Iterable[str], recordings: Path) -> str:
    """The device name a control client may set for ``kind``, with a ``wav:`` path made absolute
    inside ``recordings``; NotAllowed or ValueError (a bad tone) otherwise."""
    name = name.strip()
    if name in ("none", "default") or name in {c.strip() for c in configured}:
        return name
    if name.startswith("tone:") and kind == "capture":
        tone_hz(name)
        return name
    if name.startswith("wav:"):
        base = recordings.resolve()
        path = Path(name[4:])
        try:
            real = (path if path.is_absolute() else base / path).resolve()
        except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
            raise NotAllowed(f"cannot resolve {name[4:]!r}: {e}") from None
        if real == base or not real.is_relative_to(base):
            raise NotAllowed(f"a WAV file must lie in the recordings directory {base} "
                             "([audio] recordings_dir); give a name inside it")
        if kind == "playback":
            try:
                check_recording(real)
            except ValueError as e:
                raise NotAllowed(str(e)) from None
        return f"wav:{real}"
    if name in offered(kind):
        return name
    raise NotAllowed(f"{name!r} is not a {kind} device this daemon offers (the `devices` command "
                     "lists them); other names can be set in config.toml or with --" + kind)


def open_capture(name: str) -> Any:
    """A capture device with `read_frame()` (bytes, or None: nothing ready) and `close()`."""
    name = name.strip()
    try:
        if name == "none":
            return Silence()
        if name.startswith("tone:"):
            from kadtalk.transport.audiofile import ToneSource

            return ToneSource(tone_hz(name))
        if name.startswith("wav:"):
            from kadtalk.transport.audiofile import WavSource

            return Endless(WavSource(name[4:]))
        from kadtalk.transport.alsa import AlsaCapture

        return AlsaCapture(name, nonblocking=True)
    except Exception as e:  # ALSAAudioError, OSError, ValueError, wave.Error
        raise AudioError(f"cannot open capture device {name!r}: {describe(e, 'capture')}") from e


def open_playback(name: str) -> Any:
    """A playback device with `write_frame(pcm)` and `close()`."""
    name = name.strip()
    try:
        if name == "none":
            return Discard()
        if name.startswith("tone:"):
            raise ValueError("a tone is a capture source only")
        if name.startswith("wav:"):
            from kadtalk.transport.audiofile import WavSink

            check_recording(Path(name[4:]))
            return WavSink(name[4:])
        from kadtalk.transport.alsa import AlsaPlayback

        return AlsaPlayback(name, nonblocking=True)
    except Exception as e:
        raise AudioError(f"cannot open playback device {name!r}: {describe(e, 'playback')}") from e


def check_devices(capture: str, playback: str) -> None:
    """Open and close both devices; AudioError names the one that fails."""
    open_audio(capture, playback).close()


def open_audio(capture: str, playback: str, settings: MediaSettings | None = None,
               open_sink: Callable[[str], Any] = open_playback) -> AudioPump:
    """One call's devices as an AudioPump (AudioError names the device that fails)."""
    source = open_capture(capture)
    try:
        sink = open_sink(playback)
    except AudioError:
        close(source)
        raise
    return AudioPump(source, sink, settings, capture, playback)


def swap(pump: AudioPump, capture: str | None, playback: str | None,
         open_sink: Callable[[str], Any] = open_playback) -> None:
    """Switch a call's devices by name; on AudioError the old devices stay."""
    source = open_capture(capture) if capture else None
    try:
        sink = open_sink(playback) if playback else None
    except AudioError:
        if source is not None:
            close(source)
        raise
    pump.replace(source, sink, capture, playback)
