"""Media over real session layers: both directions, loss, reports, never-reset decoder."""

from __future__ import annotations

import numpy as np

from kadtalk.node.media.call import MediaCall, MediaReceiver, MediaSettings
from kadtalk.node.media.codec import OpusDecoder, OpusEncoder
from kadtalk.node.media.jitter import JitterSettings
from kadtalk.node.session import ReceiverReport
from kadtalk.transport.audiofile import ToneSource

from .callnet import A, B, CallNet
from .conftest import pcm


class Collect:
    def __init__(self):
        self.frames = []

    def write_frame(self, frame):
        self.frames.append(frame)
        return True


def dominant(frames, skip=25) -> float:
    x = pcm(b"".join(frames[skip:]))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * 48000 / len(x))


def test_a_call_carries_audio_both_ways_through_the_session_layer():
    net = CallNet(delay=0.03, jitter=0.02, loss=0.1)
    sids = net.connect()
    sinks = [Collect(), Collect()]
    net.talk(*sids, [ToneSource(440), ToneSource(660)], sinks, seconds=4.0)
    assert abs(dominant(sinks[0].frames) - 660) < 5  # A hears B
    assert abs(dominant(sinks[1].frames) - 440) < 5  # B hears A
    for addr in (A, B):
        stats = net.pumps[addr].media.stats()
        assert stats["frames_sent"] == 200
        # the reports turned redundancy on (and Opus FEC off: the copies get its bits)
        assert stats["redundancy"] == 1 and stats["fec_enabled"] == 0
        assert stats["loss_perc"] >= 5 and stats["packets_doubled"] > 100
        assert stats["bitrate"] == 64000 and stats["frame_bitrate"] == 32000
        assert stats["red_decoded"] > 0
        # receiver reports' sequence numbers were no frames (told by the session layer, or
        # inferred first from the redundant copies)
        assert stats["signal_slots"] + stats["signals_inferred"] >= 3
        assert stats["skipped"] + stats["dropped"] <= 2
        assert any(type(e) is ReceiverReport for e in net.events[addr])
    assert net.lost > 20


def test_events_of_other_calls_are_ignored():
    call = MediaCall(session_id=5)
    assert not call.handle_event(ReceiverReport(6, 0.5, 1, 1, 0.0, 0.0))
    assert call.handle_event(ReceiverReport(5, 0.5, 1, 1, 0.0, 0.0))
    assert not call.handle_event(object())


def test_the_decoder_is_never_reset_by_a_gap(speech_frames):
    enc = OpusEncoder(bitrate=24000)
    packets = [enc.encode(f) for f in speech_frames[:60]]
    lost = {20, 21, 22, 40}
    rx = MediaReceiver(MediaSettings(jitter=JitterSettings(min_delay=0.0, fec_wait=False)))
    out = []
    for k, p in enumerate(packets):
        if k not in lost:
            rx.receive(k, p, 0.05 + k * 0.02)
        out.append(rx.pull(0.05 + k * 0.02 + 0.001))
    # the same decoder fed the same sequence (decode, conceal for the gap, decode on) ...
    ref = OpusDecoder()
    expected = [b"\0" * 1920]  # the first pull waits for the first frame
    for k, p in enumerate(packets[:-1]):
        expected.append(ref.conceal() if k in lost else ref.decode(p))
    assert out == expected
    # ... while a decoder reset after the gap would have produced something else
    fresh = OpusDecoder()
    assert fresh.decode(packets[23]) != expected[24]


def test_garbage_media_payloads_never_raise():
    import random

    rng = random.Random(3)
    call = MediaCall()
    for k in range(300):
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        call.on_media(rng.choice([k, rng.randrange(-10, 2**33)]), payload, k * 0.02)
        assert len(call.play_frame(k * 0.02)) == 1920
