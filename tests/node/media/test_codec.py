"""The Opus wrapper, and proof that each opuslib 3.0.1 workaround is needed and works."""

from __future__ import annotations

import numpy as np
import opuslib
import opuslib.api.ctl as ctl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.media.codec import (
    FRAME_BYTES,
    MAX_BITRATE,
    MIN_BITRATE,
    SILENCE,
    OpusDecoder,
    OpusEncoder,
)

from .conftest import pcm


def test_opuslib_decode_none_is_broken_and_empty_packet_conceals():
    raw = opuslib.Decoder(48000, 1)
    with pytest.raises(TypeError):
        raw.decode(None, 960)  # the bug: len(None)
    dec = OpusDecoder()
    out = dec.conceal()
    assert len(out) == FRAME_BYTES and dec.concealed == 1


def test_opuslib_fec_setter_is_broken_and_the_ctl_workaround_sets_it():
    raw = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    with pytest.raises(TypeError):
        raw.inband_fec = 1  # the bug: the setter drops its value
    enc = OpusEncoder(fec=False)
    assert enc.ctl_get(ctl.get_inband_fec) == 0
    enc.fec = True
    assert enc.fec and enc.ctl_get(ctl.get_inband_fec) == 1
    enc.fec = False
    assert enc.ctl_get(ctl.get_inband_fec) == 0


def test_settings_reach_libopus_and_stay_in_range():
    enc = OpusEncoder(bitrate=1, complexity=99, loss_perc=250)
    assert enc.bitrate == MIN_BITRATE and enc.ctl_get(ctl.get_bitrate) == MIN_BITRATE
    assert enc.complexity == 10 and enc.ctl_get(ctl.get_complexity) == 10
    assert enc.loss_perc == 100 and enc.ctl_get(ctl.get_packet_loss_perc) == 100
    enc.bitrate = 10**9
    assert enc.bitrate == MAX_BITRATE
    assert enc.ctl_get(ctl.get_bitrate) == 300_000  # libopus caps a mono stream at 300 kbit/s
    enc.loss_perc = 7
    assert enc.ctl_get(ctl.get_packet_loss_perc) == 7
    assert enc.ctl_get(ctl.get_application) == opuslib.APPLICATION_VOIP
    assert enc.ctl_get(ctl.get_vbr) == 1
    assert 100 < enc.lookahead < 500  # 312 samples in VOIP mode (6.5 ms)


def test_bandwidth_and_signal_reach_libopus(speech_frames):
    """The call's encoder is capped at wideband with a voice hint: SILK wideband packets (TOC
    configs 8-11, RFC 6716 table 2) even at 64 kbit/s, where libopus's own choice for speech
    is CELT fullband (PESQ-WB 3.79 against 4.53, docs/media.md "Encoder settings")."""
    enc = OpusEncoder(64000, max_bandwidth="wideband", signal="voice")
    assert enc.ctl_get(ctl.get_max_bandwidth) == opuslib.BANDWIDTH_WIDEBAND
    assert enc.ctl_get(ctl.get_signal) == opuslib.SIGNAL_VOICE
    assert {enc.encode(f)[0] >> 3 for f in speech_frames[:50]} <= {8, 9, 10, 11}
    plain = OpusEncoder(64000)  # the wrapper's defaults are libopus's
    assert plain.ctl_get(ctl.get_max_bandwidth) == opuslib.BANDWIDTH_FULLBAND
    assert plain.ctl_get(ctl.get_signal) == opuslib.AUTO
    with pytest.raises(KeyError):
        OpusEncoder(max_bandwidth="ultraband")


def test_round_trip_and_short_frames(speech_frames):
    enc, dec = OpusEncoder(bitrate=32000), OpusDecoder()
    out = [dec.decode(enc.encode(f)) for f in speech_frames[:50]]
    assert all(len(o) == FRAME_BYTES for o in out)
    assert np.std(pcm(b"".join(out[10:]))) > 1000  # audible, not silence
    assert 20 < len(enc.encode(b"\x01\x00" * 10)) < 400  # a short frame is padded


def _error(a: bytes, b: bytes) -> float:
    return float(np.sqrt(np.mean((pcm(a) - pcm(b)) ** 2)))


def test_fec_recovers_a_lost_frame_better_than_concealment(speech_frames):
    enc = OpusEncoder(bitrate=32000, fec=True, loss_perc=20)
    packets = [enc.encode(f) for f in speech_frames]
    plc_error = fec_error = 0.0
    carried = 0
    for k in range(20, 140, 10):
        reference, plc, fec = OpusDecoder(), OpusDecoder(), OpusDecoder()
        for p in packets[:k]:
            reference.decode(p), plc.decode(p), fec.decode(p)
        truth = reference.decode(packets[k])
        concealed = plc.conceal()
        recovered = fec.recover(packets[k + 1])
        assert fec.fec_recovered == 1 and plc.concealed == 1
        carried += recovered != concealed  # the packet carried FEC data
        plc_error += _error(concealed, truth)
        fec_error += _error(recovered, truth)
    assert carried >= 6  # libopus decides per frame; 9 of these 12 carry FEC data
    assert fec_error < 0.75 * plc_error  # measured: about 0.56


def test_without_fec_data_recovery_falls_back_to_concealment(speech_frames):
    enc = OpusEncoder(bitrate=32000, fec=False)
    packets = [enc.encode(f) for f in speech_frames[:30]]
    a, b = OpusDecoder(), OpusDecoder()
    for p in packets[:20]:
        a.decode(p), b.decode(p)
    assert a.recover(packets[21]) == b.conceal()  # no LBRR in the packet: libopus conceals


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500))
def test_garbage_packets_never_raise(data):
    dec = OpusDecoder()
    assert len(dec.decode(data)) == FRAME_BYTES
    assert len(dec.recover(data)) == FRAME_BYTES
    assert dec.decoded + dec.concealed + dec.fec_recovered >= 2


def test_empty_and_oversized_packets_are_concealed():
    dec = OpusDecoder()
    assert len(dec.decode(b"")) == FRAME_BYTES and dec.corrupt == 0
    assert len(dec.decode(b"\x00" * 5000)) == FRAME_BYTES and dec.corrupt == 1
    assert dec.concealed == 2


def test_concealment_fades_to_silence(speech_frames):
    enc, dec = OpusEncoder(), OpusDecoder()
    for f in speech_frames[:30]:
        dec.decode(enc.encode(f))
    tail = [dec.conceal() for _ in range(20)]
    assert np.abs(pcm(tail[-1])).max() < np.abs(pcm(tail[0])).max() / 4 or tail[-1] == SILENCE
