"""AudioPump, the one class that moves a call's frames between devices and MediaCall (the
daemon's call audio and the media tests' CallNet)."""

from __future__ import annotations

import numpy as np

from kadtalk.node.media.codec import FRAME_BYTES, SILENCE
from kadtalk.transport.audiofile import ToneSource, WavSource
from kadtalk.transport.audiopump import AudioPump, Discard, Endless, Silence


class Broken:
    def read_frame(self):
        raise OSError("device unplugged")

    def write_frame(self, pcm):
        raise OSError("device unplugged")

    def close(self):
        raise OSError("already gone")


class Script:
    """Capture that has a frame ready only on the ticks listed."""

    def __init__(self, ready):
        self.ready, self.n = set(ready), 0

    def read_frame(self):
        self.n += 1
        return ToneSource(440).read_frame() if self.n - 1 in self.ready else None

    def close(self):
        pass


class Collect:
    def __init__(self):
        self.frames = []

    def write_frame(self, pcm):
        self.frames.append(pcm)
        return True

    def close(self):
        pass


def test_nothing_happens_before_a_session_is_attached():
    pump = AudioPump(Silence(), Discard())
    assert pump.tick(0.0) is None and pump.frames_played == 0


def test_a_tick_sends_only_a_frame_the_device_had_ready_and_always_plays_one():
    sink = Collect()
    pump = AudioPump(Script(ready=[0, 2]), sink)
    pump.attach(7)
    payloads = [pump.tick(k * 0.02) for k in range(4)]
    assert [p is not None for p in payloads] == [True, False, True, False]
    assert len(sink.frames) == 4 and all(len(f) == FRAME_BYTES for f in sink.frames)
    assert pump.stats()["frames_captured"] == 2 and pump.stats()["frames_played"] == 4


def test_muted_sends_silence_and_a_finite_source_ends_in_silence():
    two = np.frombuffer(ToneSource(440).read_frame() * 2, "<i2")
    pump = AudioPump(Endless(WavSource(two)), Discard())
    pump.attach(1)
    assert [pump.source.read_frame() == SILENCE for _ in range(3)] == [False, False, True]
    muted = AudioPump(ToneSource(440), Discard())
    muted.attach(1)
    # a call starts with redundancy on, so a packet also carries the previous frame's copy:
    # compare a packet of two loud frames with one of two muted (silent) frames
    muted.tick(0.0)
    loud = muted.tick(0.02)
    muted.tick(0.04, muted=True)
    quiet = muted.tick(0.06, muted=True)
    assert loud is not None and quiet is not None and len(quiet) < len(loud)


def test_a_device_that_fails_is_replaced_and_reported_never_raised():
    pump = AudioPump(Broken(), Broken(), capture_name="mic", playback_name="spk")
    pump.attach(1)
    assert pump.tick(0.0) is None  # nothing captured this tick
    assert len(pump.errors) == 2 and "capture device 'mic' failed" in pump.errors[0]
    assert "playback device 'spk' failed" in pump.errors[1]
    assert isinstance(pump.source, Silence) and isinstance(pump.sink, Discard)
    assert pump.tick(0.02)  # goes on with silence
    pump.replace(ToneSource(300), None, "tone:300")
    assert pump.capture_name == "tone:300" and pump.playback_name == "spk"
    pump.close()
