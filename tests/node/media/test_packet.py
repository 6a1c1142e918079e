"""Opus packet framing (RFC 6716, 3.2): two single-frame packets joined into one valid two-frame
packet, and any bytes split exactly as libopus itself parses them (never raising)."""

from __future__ import annotations

import ctypes

import opuslib
import opuslib.api
import opuslib.api.decoder as opus_decoder
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.media.codec import FRAME_BYTES, OpusEncoder
from kadtalk.node.media.packet import (
    MAX_FRAME,
    carries,
    frame_count,
    frame_samples,
    join_two,
    single,
    split,
)

_parse = opuslib.api.libopus.opus_packet_parse
_parse.argtypes = (ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_ubyte),
                   ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
_parse.restype = ctypes.c_int
_spf = opuslib.api.libopus.opus_packet_get_samples_per_frame
_spf.argtypes = (ctypes.c_char_p, ctypes.c_int32)
_spf.restype = ctypes.c_int


def libopus_split(data: bytes) -> tuple[int, list[bytes]] | None:
    """libopus's own `opus_packet_parse`: (TOC, frames) or None when it rejects the packet."""
    buf = ctypes.create_string_buffer(data, len(data))
    toc = ctypes.c_ubyte()
    frames = (ctypes.c_void_p * 48)()
    sizes = (ctypes.c_int16 * 48)()
    offset = ctypes.c_int()
    n = _parse(buf, len(data), ctypes.byref(toc), frames, sizes, ctypes.byref(offset))
    if n < 0:
        return None
    base = ctypes.addressof(buf)
    return toc.value, [data[frames[i] - base:frames[i] - base + sizes[i]] for i in range(n)]


def libopus_frames(data: bytes) -> int:
    return opus_decoder.packet_get_nb_frames(data, len(data))


def test_join_two_of_real_encoder_output_is_a_valid_two_frame_packet(speech_frames):
    enc = OpusEncoder(bitrate=24000)
    packets = [enc.encode(f) for f in speech_frames[:40]]
    whole, parts = opuslib.Decoder(48000, 1), opuslib.Decoder(48000, 1)
    for a, b in zip(packets[::2], packets[1::2]):
        joined = join_two(a, b)
        assert joined is not None and len(joined) == len(a) + len(b)  # -1 TOC, +1 length
        assert libopus_frames(joined) == 2 and frame_count(joined) == 2
        assert libopus_split(joined) == (joined[0], [a[1:], b[1:]])
        # libopus decodes it as 40 ms: exactly the two frames, as from their own packets
        pcm = whole.decode(joined, 2 * 960)
        assert len(pcm) == 2 * FRAME_BYTES
        assert pcm == parts.decode(a, 960) + parts.decode(b, 960)
        toc, frames = split(joined)
        assert single(toc, frames[0]) == a and single(toc, frames[1]) == b


toc_bytes = st.integers(0, 255).map(lambda t: t & 0xFC)


@settings(max_examples=300, deadline=None)
@given(toc_bytes, st.binary(max_size=MAX_FRAME), st.binary(max_size=300))
def test_round_trip_against_libopus(toc, first, second):
    joined = join_two(single(toc, first), single(toc, second))
    assert joined is not None and joined[0] & 3 == 2
    assert split(joined) == (toc, [first, second])
    assert libopus_split(joined) == (joined[0], [first, second])
    assert libopus_frames(joined) == 2


@settings(max_examples=200, deadline=None)
@given(toc_bytes, st.binary(max_size=40), st.binary(max_size=40),
       st.integers(1, 3), st.integers(1, 3))
def test_join_refuses_what_cannot_share_a_packet(toc, first, second, other_code, shift):
    a = single(toc, first)
    assert join_two(a, single(toc ^ (shift << 3) & 0xFC, second)) is None  # other config
    assert join_two(a, bytes((toc ^ 4,)) + second) is None  # other channel count
    multi = bytes((toc | other_code,)) + (b"\x02" if other_code == 3 else b"") + second * 2
    if frame_count(multi) != 1:
        assert join_two(a, multi) is None and join_two(multi, a) is None
    assert join_two(b"", a) is None and join_two(a, b"") is None


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.binary(max_size=64),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=700)).map(
        lambda t: bytes((t[0] | 3, t[1])) + t[2]),  # code 3: count byte, padding, VBR
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=1400)).map(
        lambda t: bytes((t[0] & 0xFC | 2, t[1])) + t[2]),  # code 2: length byte(s)
))
def test_any_bytes_split_as_libopus_parses_them_and_never_raise(data):
    ours = split(data)
    theirs = libopus_split(data)
    if theirs is None:
        assert ours is None
    else:
        assert ours == (theirs[0] & 0xFC, theirs[1])
        assert frame_count(data) == len(theirs[1])
    carries(data, data)  # never raises either
    carries(data, b"\x08" + data)


def test_frame_durations_match_libopus():
    for toc in range(0, 256, 8):
        assert frame_samples(toc) == _spf(bytes((toc,)), 48000), toc


def test_not_bytes_is_malformed_not_an_exception():
    assert split(None) is None and split(3.5) is None and split(5) is None
    assert frame_count(None) == 0
    assert join_two(None, b"\x08ab") is None


def test_carries_needs_a_real_copy():
    frames = [bytes((0x08,)) + bytes([k]) * 20 for k in range(4)]
    pair = join_two(frames[1], frames[2])
    assert carries(pair, frames[1]) and carries(pair, join_two(frames[0], frames[1]))
    assert not carries(pair, frames[2]) and not carries(frames[2], frames[1])
    silence = bytes((0x08,)) + b"\x07" * 20  # digital silence: the same bytes every frame
    assert not carries(join_two(silence, silence), silence)
    assert not carries(join_two(silence, frames[1]), join_two(silence, silence))
    short = bytes((0x08, 1, 2))  # too short to tell apart
    assert not carries(join_two(short, frames[1]), short)
