"""MEDIA / SIGNAL packets: nonce layout, 8-byte tags, AAD, replay window and statistics."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.session.replay import ReplayWindow
from kadtalk.node.session.stream import ReceiveStream, SendStream, stats_of
from kadtalk.node.session.wire import MEDIA, SIGNAL, Drop

KEY = bytes(range(32))
SALT = bytes.fromhex("0102030405060708")


def pair():
    return SendStream(KEY, SALT), ReceiveStream(KEY, SALT)


def reason(fn, *args) -> str:
    with pytest.raises(Drop) as info:
        fn(*args)
    return info.value.reason


def test_packet_layout_matches_plain_aesgcm_with_the_tag_cut_to_8_bytes():
    tx, _ = pair()
    tx.seq = 0x01020304
    wire = tx.seal(MEDIA, b"payload")
    full = AESGCM(KEY).encrypt(SALT + bytes([1, 2, 3, 4]), b"payload", b"\x04")
    assert wire == b"\x04\x01\x02\x03\x04" + full[-16:-8] + full[:-16]
    assert len(wire) == 13 + len(b"payload")


def test_round_trip_and_type_byte_is_authenticated():
    tx, rx = pair()
    wire = tx.seal(SIGNAL, b"\x05")
    assert rx.open(wire, 0.0) == (SIGNAL, 0, b"\x05")
    forged = bytes([MEDIA]) + tx.seal(SIGNAL, b"\x05")[1:]
    assert reason(rx.open, forged, 0.0) == "auth_failed"
    assert rx.rejected == 1 and rx.packets == 1


def test_wrong_direction_key_or_salt_fails():
    tx = SendStream(KEY, SALT)
    wire = tx.seal(MEDIA, b"x")
    assert reason(ReceiveStream(KEY, bytes(8)).open, wire, 0.0) == "auth_failed"
    assert reason(ReceiveStream(bytes(32), SALT).open, wire, 0.0) == "auth_failed"


def test_replay_reorder_and_too_old():
    tx, rx = pair()
    packets = [tx.seal(MEDIA, i.to_bytes(2, "big")) for i in range(1100)]
    rx.open(packets[1099], 0.0)
    assert rx.open(packets[100], 0.0)[1] == 100  # 999 behind: inside the window, reordered
    assert reason(rx.open, packets[100], 0.0) == "duplicate"
    assert reason(rx.open, packets[1099], 0.0) == "duplicate"
    assert reason(rx.open, packets[75], 0.0) == "too_old"  # 1024 behind
    assert (rx.packets, rx.reordered, rx.duplicate, rx.rejected) == (2, 1, 2, 1)
    assert rx.lost == 1098


def test_replay_window_unit():
    w = ReplayWindow(1024)
    assert w.check(0) is None
    assert w.commit(0) is False
    assert w.check(0) == "duplicate"
    assert w.commit(5000) is False
    assert w.check(5000 - 1023) is None and w.check(5000 - 1024) == "too_old"
    assert w.commit(4999) is True and w.check(4999) == "duplicate"
    assert w.bits.bit_length() <= 1024
    with pytest.raises(ValueError):
        ReplayWindow(0)


def test_jitter_from_media_arrival_spacing():
    tx, rx = pair()
    for i in range(200):
        rx.open(tx.seal(MEDIA, b"x"), i * 0.02 + (0.005 if i % 2 else 0.0))
    assert rx.jitter == pytest.approx(0.005, rel=0.05)


def test_report_fraction_since_the_last_report():
    tx, rx = pair()
    packets = [tx.seal(MEDIA, b"x") for i in range(20)]
    for p in packets[:10]:
        rx.open(p, 0.0)
    assert rx.report()[:3] == (0.0, 0, 9)
    for p in packets[10:20:2]:
        rx.open(p, 0.0)
    fraction, lost, highest, _ = rx.report()
    assert (lost, highest) == (4, 18) and fraction == pytest.approx(4 / 9)


def test_wipe_zeroes_keys_and_disables_the_streams():
    tx, rx = pair()
    wire = tx.seal(MEDIA, b"x")
    tx.wipe()
    rx.wipe()
    assert tx.key == bytearray(32) and rx.key == bytearray(32)
    assert reason(rx.open, wire, 0.0) == "no_session"
    assert stats_of(None, None).packets == 0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 2999), min_size=1, max_size=300))
def test_any_order_with_repeats_accepts_each_fresh_packet_once(order):
    tx, rx = pair()
    packets = [tx.seal(MEDIA, i.to_bytes(2, "big")) for i in range(3000)]
    accepted = []
    outcomes = {"duplicate": 0, "too_old": 0}
    for i in order:
        try:
            kind, seq, plaintext = rx.open(packets[i], 0.0)
        except Drop as drop:
            outcomes[drop.reason] += 1
            continue
        assert (kind, int.from_bytes(plaintext, "big")) == (MEDIA, seq) and seq == i
        accepted.append(seq)
    assert len(accepted) == len(set(accepted))
    assert rx.packets == len(accepted)
    assert rx.duplicate == outcomes["duplicate"] and rx.rejected == outcomes["too_old"]
    assert rx.packets + rx.duplicate + rx.rejected == len(order)
    assert rx.highest == max(accepted)
    for seq in accepted:  # everything accepted is now refused
        assert rx.window.check(seq) is not None
    assert rx.lost == max(accepted) + 1 - len(accepted)


# -- the whole 32-bit range (review M1) ----------------------------------------------------------

U32 = 0xFFFFFFFF


def _peak_bytes(action) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_jump_across_the_whole_sequence_space_costs_no_memory():
    w = ReplayWindow(1024)
    w.commit(0)

    def jump():
        assert w.check(U32) is None
        w.commit(U32)

    assert _peak_bytes(jump) < 64 * 1024  # was a 2^32-bit shift: half a gigabyte
    assert w.highest == U32 and w.bits == 1
    assert w.check(0) == "too_old" and w.check(U32) == "duplicate"


class _ModelWindow:
    """The replay rule written out: a set of accepted numbers and the highest one."""

    def __init__(self, size: int):
        self.size, self.highest, self.accepted = size, -1, set()

    def check(self, seq: int):
        if seq > self.highest:
            return None
        if self.highest - seq >= self.size:
            return "too_old"
        return "duplicate" if seq in self.accepted else None

    def commit(self, seq: int) -> bool:
        self.accepted.add(seq)
        reordered = seq <= self.highest
        self.highest = max(self.highest, seq)
        return reordered


# sequence numbers anywhere in the u32 range, and near the ones already drawn
_seqs = st.lists(
    st.one_of(
        st.integers(0, U32),
        st.tuples(st.sampled_from([0, 1, 1023, 1024, 1025, U32 - 1024, U32]), st.integers(-3, 3))
        .map(lambda t: min(U32, max(0, t[0] + t[1]))),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1024, 2048]), _seqs, st.data())
def test_replay_window_matches_the_model_over_the_whole_u32_range(size, seqs, data):
    w, model = ReplayWindow(size), _ModelWindow(size)
    for seq in seqs:
        if data.draw(st.booleans()) and model.highest >= 0:  # also near the current highest
            seq = min(U32, max(0, model.highest - data.draw(st.integers(-2, size + 2))))
        verdict = w.check(seq)
        assert verdict == model.check(seq)
        if verdict is None:
            assert w.commit(seq) == model.commit(seq)
        assert w.highest == model.highest and w.bits.bit_length() <= size
