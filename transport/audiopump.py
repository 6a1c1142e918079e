"""Moves one call's audio between audio devices and a node, one 20 ms frame per tick.

Devices are anything with `read_frame()` (capture: ALSA, WAV, tone) and `write_frame(pcm)`
(playback: ALSA, WAV). The driver calls `tick(now)` every 20 ms and passes every node event
to `on_event`; the media itself is the sans-I/O `MediaCall`.
"""

from __future__ import annotations

from typing import Any

from kadtalk.node.media.call import MediaCall, MediaSettings
from kadtalk.node.media.codec import SILENCE


class AudioPump:
    __slots__ = ("node", "session_id", "media", "source", "sink", "ticks", "sent", "source_done")

    def __init__(self, node: Any, session_id: int, source: Any, sink: Any,
                 settings: MediaSettings | None = None):
        self.node = node
        self.session_id = session_id
        self.media = MediaCall(session_id, settings)
        self.source = source
        self.sink = sink
        self.ticks = 0
        self.sent = 0
        self.source_done = False

    def tick(self, now: float) -> None:
        """Capture, encode and send one frame; play one frame."""
        self.ticks += 1
        pcm = None if self.source_done else self.source.read_frame()
        if pcm is None:
            self.source_done = True
            pcm = SILENCE
        payload = self.media.send_frame(pcm, now)
        if self.node.send_media(self.session_id, payload, now) is not None:
            self.sent += 1
        if self.sink is not None:
            self.sink.write_frame(self.media.play_frame(now))

    def on_event(self, event: Any) -> bool:
        return self.media.handle_event(event)
