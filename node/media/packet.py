"""Opus packet framing (RFC 6716, section 3.2): split any packet into its frames, and join two
single-frame packets into one valid two-frame packet (packet-level redundancy).

An Opus packet starts with a TOC byte: `config` (5 bits: mode, bandwidth, frame size), `s`
(stereo) and `c` (2 bits, the frame count code):

- c = 0: one frame, the rest of the packet;
- c = 1: two frames of equal size, half of the rest each;
- c = 2: two frames, the first one's length in 1-2 bytes, then both frames' data;
- c = 3: a frame-count byte (VBR flag, padding flag, count 1-48), optional padding length,
  then (VBR) all but the last frame's lengths, the frames, and the padding.

A length below 252 is one byte; otherwise two bytes, `first + 4 * second` (at most 1,275).
All frames of a packet share the TOC's config: two packets can be joined only when their TOC
bytes agree outside the `c` bits.

`join_two` builds code-2 packets (the two-frame form of section 3.2.4): the same as the code-3
VBR form with a count of two, one byte shorter (no frame-count byte). `split` reads all four
codes and returns None for anything the RFC calls malformed (rules R1-R7, section 3.4); it
never raises on bytes. `single` rebuilds one frame as a code-0 packet (TOC with c = 0 plus the
frame's data), so a decoder can be fed one 20 ms frame of a two-frame packet at a time.
"""

from __future__ import annotations

MAX_FRAME = 1_275  # bytes, the largest Opus frame (RFC 6716, section 3.2.1)
MIN_TRUSTED = 8  # bytes: shorter frames are not told apart by `carries`
MAX_DURATION = 5_760  # samples at 48 kHz: 120 ms, the longest packet (R5)
_SIZES = (480, 960, 1920, 2880)  # SILK / hybrid / CELT frame sizes at 48 kHz, by config & 3


def frame_samples(toc: int) -> int:
    """Samples (at 48 kHz) in one frame of a packet with this TOC byte (RFC 6716, table 2)."""
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return _SIZES[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return 480 if config & 1 == 0 else 960
    return (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms


def _length(data: bytes, at: int) -> tuple[int, int] | None:
    """A frame length at `at`: (length, bytes used), or None when the packet ends first."""
    if at >= len(data):
        return None
    first = data[at]
    if first < 252:
        return first, 1
    if at + 1 >= len(data):
        return None
    return first + 4 * data[at + 1], 2


def _encode_length(n: int) -> bytes:
    if n < 252:
        return bytes((n,))
    first = 252 + (n & 3)
    return bytes((first, (n - first) // 4))


def split(packet: bytes) -> tuple[int, list[bytes]] | None:
    """(TOC byte with c = 0, [frame data, ...]) of an Opus packet, or None if it is malformed."""
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        return None
    try:
        return _split(bytes(packet))
    except (TypeError, ValueError, IndexError):  # defensive: never raise on input
        return None


def _split(data: bytes) -> tuple[int, list[bytes]] | None:
    if not data:
        return None  # R1
    toc = data[0]
    code = toc & 3
    base = toc & 0xFC
    if code == 0:
        frames = [data[1:]]
    elif code == 1:
        body = len(data) - 1
        if body % 2:
            return None  # R3
        frames = [data[1:1 + body // 2], data[1 + body // 2:]]
    elif code == 2:
        got = _length(data, 1)
        if got is None:
            return None  # R4
        n1, used = got
        start = 1 + used
        if start + n1 > len(data):
            return None  # R4
        frames = [data[start:start + n1], data[start + n1:]]
    else:
        if len(data) < 2:
            return None  # R6/R7: no frame-count byte
        count_byte = data[1]
        vbr, padded, count = count_byte & 0x80, count_byte & 0x40, count_byte & 0x3F
        if count == 0 or count * frame_samples(toc) > MAX_DURATION:
            return None  # R5
        at = 2
        padding = 0
        if padded:
            while True:
                if at >= len(data):
                    return None  # R6/R7
                p = data[at]
                at += 1
                padding += 254 if p == 255 else p
                if p != 255:
                    break
        end = len(data) - padding
        if end < at:
            return None  # R6/R7
        if vbr:
            lengths = []
            for _ in range(count - 1):
                got = _length(data, at)
                if got is None:
                    return None
                lengths.append(got[0])
                at += got[1]
            if at > end or at + sum(lengths) > end:
                return None  # R7
            lengths.append(end - at - sum(lengths))
        else:
            body = end - at
            if body % count:
                return None  # R6
            lengths = [body // count] * count
        frames = []
        for n in lengths:
            frames.append(data[at:at + n])
            at += n
    if any(len(f) > MAX_FRAME for f in frames):
        return None  # R2
    return base, frames


def single(toc: int, frame: bytes) -> bytes:
    """One frame as a code-0 packet."""
    return bytes((toc & 0xFC,)) + frame


def join_two(first: bytes, second: bytes) -> bytes | None:
    """Two single-frame packets (the frames n-1 and n) as one two-frame packet (code 2).

    None when they cannot share a packet: either is not a one-frame packet, their configs
    (mode, bandwidth, frame size, stereo) differ, or a frame is too long to be framed.
    """
    a, b = split(first), split(second)
    if a is None or b is None or len(a[1]) != 1 or len(b[1]) != 1 or a[0] != b[0]:
        return None
    f1, f2 = a[1][0], b[1][0]
    if len(f1) > MAX_FRAME or len(f2) > MAX_FRAME:
        return None
    return bytes((a[0] | 2,)) + _encode_length(len(f1)) + f1 + f2


def carries(packet: bytes, previous: bytes) -> bool:
    """True when `packet` holds two frames and the first is the last frame of `previous`.

    The sender's copy is byte for byte the frame it sent before, but equal frames in a row
    are no proof (digital silence encodes to the same bytes frame after frame): frames
    shorter than `MIN_TRUSTED`, or equal to their neighbour in either packet, never count."""
    if not packet or not packet[0] & 3 or not previous:
        return False
    got, before = split(packet), split(previous)
    if got is None or before is None or len(got[1]) != 2 or got[0] != before[0]:
        return False
    first, second = got[1]
    if len(first) < MIN_TRUSTED or first != before[1][-1] or first == second:
        return False
    return len(before[1]) < 2 or before[1][-2] != first  # a repeating stream proves nothing


def frame_count(packet: bytes) -> int:
    """Frames in the packet (0 if malformed), read from the TOC and count byte only."""
    got = split(packet)
    return 0 if got is None else len(got[1])


__all__ = ["MAX_FRAME", "carries", "frame_count", "frame_samples", "join_two", "single", "split"]
