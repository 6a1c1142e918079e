"""Adaptive bitrate: backs off under loss, recovers after it, stays in the user's bounds."""

from __future__ import annotations

import math

import opuslib.api.ctl as ctl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.media.call import MediaSender, MediaSettings
from kadtalk.node.media.packet import frame_count
from kadtalk.node.media.rate import RateController, RateSettings


def feed(rc, loss, jitter, seconds, start):
    return [rc.on_report(loss, jitter, start + k) for k in range(seconds)]


def test_backs_off_under_loss_and_recovers():
    rc = RateController(RateSettings(min_bitrate=8000, max_bitrate=64000, start_bitrate=32000))
    calm = feed(rc, 0.0, 0.002, 20, 0)
    assert calm[-1].bitrate == 64000 and not calm[-1].fec and calm[-1].loss_perc == 0
    lossy = feed(rc, 0.25, 0.01, 10, 20)
    assert [d.bitrate for d in lossy] == sorted((d.bitrate for d in lossy), reverse=True)
    assert lossy[-1].bitrate == 32000  # the FEC floor: backed off as far as FEC allows
    # above red_max_loss: redundancy stays on, its floor does not hold; Opus FEC is off
    assert lossy[-1].redundancy and not lossy[-1].fec and lossy[-1].loss_perc == 25
    recovered = feed(rc, 0.0, 0.002, 30, 30)
    assert not recovered[-1].fec and recovered[-1].loss_perc == 0
    assert not recovered[-1].redundancy
    assert recovered[-1].bitrate == 64000
    # the climb is gradual: at most 8 % a report
    rates = [d.bitrate for d in recovered]
    assert all(b <= a * 1.08 + 1 for a, b in zip(rates, rates[1:]))


def test_moderate_loss_holds_and_high_jitter_stops_the_climb():
    rc = RateController(RateSettings(redundancy=False))
    held = feed(rc, 0.05, 0.0, 5, 0)
    assert {d.bitrate for d in held} == {32000} and held[-1].fec and held[-1].loss_perc == 10
    rc = RateController()  # with redundancy: the total goes to its floor, 32 kbit/s a frame
    held = feed(rc, 0.05, 0.0, 5, 0)
    assert {d.bitrate for d in held} == {64000} and held[-1].redundancy and not held[-1].fec
    rc = RateController()
    assert {d.bitrate for d in feed(rc, 0.0, 0.05, 5, 0)} == {32000}


def test_redundancy_from_the_start_until_a_report_says_the_path_is_clean(speech_frames):
    """Before the first report the path is unknown: the call starts with the copies on, at
    their floor (each frame at the start bitrate); a clean report turns them off and the
    bitrate climbs from the start, a lossy one keeps them, a lost one changes nothing."""
    rc = RateController()
    first = rc.decision()
    assert first.redundancy and first.bitrate == 64000 and not first.fec
    clean = rc.on_report(0.0, 0.002, 1.0)
    assert not clean.redundancy and clean.bitrate == round(32000 * 1.08)
    lossy = RateController().on_report(0.1, 0.002, 1.0)
    assert lossy.redundancy and lossy.bitrate == 64000
    assert not RateController(RateSettings(red_start=False)).decision().redundancy
    assert not RateController(RateSettings(redundancy=False)).decision().redundancy
    sender = MediaSender()
    assert sender.redundant and sender.bitrate == 64000 and sender.encoder.bitrate == 32000
    packets = [sender.encode(f) for f in speech_frames[:3]]
    assert [frame_count(p) for p in packets] == [1, 2, 2]  # the first has no frame before
    fixed = MediaSender(MediaSettings(adaptive=False))  # start bitrate, one frame, for ever
    assert not fixed.redundant and frame_count(fixed.encode(speech_frames[0])) == 1


def test_bounds_are_the_users():
    rc = RateController(RateSettings(min_bitrate=6000, max_bitrate=16000, start_bitrate=12000))
    assert feed(rc, 0.5, 0, 20, 0)[-1].bitrate == 16000  # FEC floor capped by max_bitrate
    rc = RateController(RateSettings(min_bitrate=10000, max_bitrate=20000, start_bitrate=15000,
                                     fec_floor=0))
    assert feed(rc, 0.9, 0, 20, 0)[-1].bitrate == 10000
    assert feed(rc, 0.0, 0, 40, 20)[-1].bitrate == 20000
    for bad in ({"min_bitrate": 5000}, {"max_bitrate": 600_000}, {"start_bitrate": 100_000},
                {"increase": 0.5}, {"smoothing": 0}):
        with pytest.raises(ValueError):
            RateSettings(**bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.floats(), st.integers(-5, 5)), st.floats()), max_size=60))
def test_any_report_keeps_the_bounds(reports):
    s = RateSettings(min_bitrate=9000, max_bitrate=40000, start_bitrate=20000)
    rc = RateController(s)
    for k, (loss, jitter) in enumerate(reports):
        d = rc.on_report(loss, jitter, float(k))
        assert s.min_bitrate <= d.bitrate <= s.max_bitrate
        assert 0 <= d.loss_perc <= s.max_loss_perc and isinstance(d.fec, bool)
        assert not math.isnan(rc.loss)


def test_the_sender_applies_decisions_to_libopus():
    sender = MediaSender(MediaSettings())
    enc = sender.encoder
    assert enc.ctl_get(ctl.get_bitrate) == 32000 and enc.ctl_get(ctl.get_inband_fec) == 0
    for k in range(5):
        sender.on_report(0.2, 0.01, k)
    assert sender.redundant and enc.ctl_get(ctl.get_inband_fec) == 0  # copies instead of FEC
    assert enc.ctl_get(ctl.get_packet_loss_perc) == 20
    assert enc.ctl_get(ctl.get_bitrate) == 16000  # 32 kbit/s (FEC floor, > red_max_loss) / 2
    assert sender.bitrate == 32000
    plain = MediaSender(MediaSettings(redundancy=False))
    for k in range(5):
        plain.on_report(0.2, 0.01, k)
    assert plain.encoder.ctl_get(ctl.get_inband_fec) == 1
    assert plain.encoder.ctl_get(ctl.get_bitrate) == 32000  # start = FEC floor: held
    fixed = MediaSender(MediaSettings(adaptive=False))
    fixed.on_report(0.2, 0.01, 0)
    assert fixed.encoder.ctl_get(ctl.get_bitrate) == 32000 and not fixed.encoder.fec


def test_packets_shrink_when_the_bitrate_backs_off(speech_frames):
    sender = MediaSender(MediaSettings(rate=RateSettings(min_bitrate=8000, start_bitrate=48000,
                                                         fec_floor=0, fec_loss=1.0)))
    big = sum(len(sender.encode(f)) for f in speech_frames[:50])
    for k in range(10):
        sender.on_report(0.3, 0.0, k)
    small = sum(len(sender.encode(f)) for f in speech_frames[50:100])
    assert small < big / 3
