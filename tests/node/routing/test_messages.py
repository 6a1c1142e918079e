"""ROUTE_REQ / ROUTE_RES codec: byte layout, round trips, rejection of malformed input."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire
from kadtalk.node.routing.messages import (
    CONTACT_SIZE,
    MAX_CONTACTS,
    MAX_REQUEST_SIZE,
    REQUEST_SIZE,
    ROUTE_REQ,
    ROUTE_RES,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode,
    encode_request,
    encode_response,
    id_from_bytes,
    id_to_bytes,
)

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire

ids = st.integers(min_value=0, max_value=(1 << 160) - 1)


def _usable(addr):
    return ipv4_from_wire(TO_WIRE(addr)) is not None


usable_addrs = (
    st.tuples(st.integers(0, (1 << 32) - 1), st.integers(1, 65535))
    .map(lambda t: (f"{t[0] >> 24}.{(t[0] >> 16) & 255}.{(t[0] >> 8) & 255}.{t[0] & 255}", t[1]))
    .filter(_usable)
)
contact_lists = st.lists(st.tuples(ids, usable_addrs), min_size=0, max_size=MAX_CONTACTS)


# -- constants -------------------------------------------------------------------------------------


def test_sizes_match_the_nanotalk_layout():
    assert REQUEST_SIZE == 41
    assert CONTACT_SIZE == 26
    assert MAX_CONTACTS == 20
    assert MAX_REQUEST_SIZE == 41 + 20 * 26
    assert (ROUTE_REQ, ROUTE_RES) == (0x00, 0x01)


# -- exact byte layout ---------------------------------------------------------------------------

ORIGIN_HEX = "0102030405060708090a0b0c0d0e0f1011121314"
TARGET_HEX = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4"
ORIGIN = int(ORIGIN_HEX, 16)
TARGET = int(TARGET_HEX, 16)


def test_request_bytes_match_hand_built_hex():
    data = encode_request(RouteRequest(ORIGIN, TARGET))
    assert data == bytes.fromhex("00" + ORIGIN_HEX + TARGET_HEX)
    assert len(data) == 41


def test_request_padding_is_zero_bytes_after_byte_41():
    data = encode_request(RouteRequest(ORIGIN, TARGET), padding=7)
    assert data == bytes.fromhex("00" + ORIGIN_HEX + TARGET_HEX + "00" * 7)


def test_response_bytes_match_hand_built_hex():
    c1 = int("ff" * 19 + "01", 16)
    c2 = int("00" * 19 + "02", 16)
    msg = RouteResponse(ORIGIN, TARGET, ((c1, ("10.0.0.1", 5004)), (c2, ("192.168.1.2", 258))))
    expected = bytes.fromhex(
        "01"
        + ORIGIN_HEX
        + TARGET_HEX
        + "ff" * 19 + "01" + "0a000001" + "138c"  # 10.0.0.1, port 5004 big-endian
        + "00" * 19 + "02" + "c0a80102" + "0102"  # 192.168.1.2, port 258 = 0x0102
    )
    data = encode_response(msg, TO_WIRE)
    assert data == expected
    assert len(data) == 41 + 26 * 2
    assert encode(msg, TO_WIRE) == expected
    assert decode(expected, FROM_WIRE) == (msg, 0)


def test_empty_response_is_41_bytes():
    data = encode_response(RouteResponse(ORIGIN, TARGET, ()), TO_WIRE)
    assert data == bytes.fromhex("01" + ORIGIN_HEX + TARGET_HEX)


def test_request_parses_from_hand_built_hex():
    msg, skipped = decode(bytes.fromhex("00" + ORIGIN_HEX + TARGET_HEX), FROM_WIRE)
    assert msg == RouteRequest(ORIGIN, TARGET)
    assert skipped == 0


def test_id_helpers_are_big_endian_20_bytes():
    assert id_to_bytes(1) == bytes(19) + b"\x01"
    assert id_from_bytes(b"\x80" + bytes(19)) == 1 << 159
    with pytest.raises(OverflowError):
        id_to_bytes(1 << 160)


# -- round trips ---------------------------------------------------------------------------------


@given(ids, ids, st.integers(0, MAX_REQUEST_SIZE - REQUEST_SIZE))
def test_request_round_trip_with_padding(origin, target, padding):
    msg = RouteRequest(origin, target)
    data = encode(msg, TO_WIRE, padding)
    assert len(data) == REQUEST_SIZE + padding
    assert decode(data, FROM_WIRE) == (msg, 0)


@given(ids, ids, contact_lists)
def test_response_round_trip(responder, target, contacts):
    msg = RouteResponse(responder, target, tuple(contacts))
    data = encode(msg, TO_WIRE)
    assert len(data) == 41 + 26 * len(contacts)
    assert decode(data, FROM_WIRE) == (msg, 0)


@given(ids, ids, contact_lists, st.data())
def test_unusable_contacts_are_skipped_and_counted(responder, target, contacts, data):
    bad = [b"\x00\x00\x00\x00\x13\x8c", b"\x0a\x00\x00\x01\x00\x00", b"\xff\xff\xff\xff\x00\x01",
           b"\xe0\x00\x00\x01\x13\x8c", b"\xef\x01\x02\x03\x13\x8c"]
    entries = [(cid, TO_WIRE(addr), True) for cid, addr in contacts]
    extra = data.draw(st.lists(st.tuples(ids, st.sampled_from(bad)), max_size=MAX_CONTACTS - len(entries)))
    entries += [(cid, wire, False) for cid, wire in extra]
    entries = data.draw(st.permutations(entries))
    raw = bytes((ROUTE_RES,)) + id_to_bytes(responder) + id_to_bytes(target)
    raw += b"".join(id_to_bytes(cid) + wire for cid, wire, _ in entries)
    msg, skipped = decode(raw, FROM_WIRE)
    assert skipped == len(extra)
    assert msg.contacts == tuple((cid, FROM_WIRE(wire)) for cid, wire, good in entries if good)
    assert (msg.responder, msg.target) == (responder, target)


# -- rejection -----------------------------------------------------------------------------------


def _reason(data, **kw):
    with pytest.raises(MalformedMessage) as info:
        decode(data, FROM_WIRE, **kw)
    assert isinstance(info.value, ValueError)
    return info.value.reason


@pytest.mark.parametrize("size", [0, 1, 20, 40])
@pytest.mark.parametrize("kind", [ROUTE_REQ, ROUTE_RES, 0x07])
def test_truncated(size, kind):
    data = (bytes((kind,)) + bytes(60))[:size]
    assert _reason(data) == "truncated"


@pytest.mark.parametrize("kind", [0x02, 0x03, 0x04, 0x05, 0x06, 0x80, 0xFF])
def test_unknown_type(kind):
    assert _reason(bytes((kind,)) + bytes(40)) == "unknown_type"
    assert _reason(bytes((kind,)) + bytes(40 + 26)) == "unknown_type"


@pytest.mark.parametrize("extra", [1, 25, 27, 51, 26 * 3 + 5])
def test_response_body_not_multiple_of_26(extra):
    assert _reason(bytes((ROUTE_RES,)) + bytes(40 + extra)) == "bad_length"


def test_response_with_more_than_k_contacts():
    contact = id_to_bytes(5) + TO_WIRE(("10.0.0.1", 5004))
    header = bytes((ROUTE_RES,)) + bytes(40)
    assert len(decode(header + contact * 20, FROM_WIRE)[0].contacts) == 20
    assert _reason(header + contact * 21) == "oversized"
    # the caller's k is the limit
    assert len(decode(header + contact * 8, FROM_WIRE, max_contacts=8)[0].contacts) == 8
    assert _reason(header + contact * 9, max_contacts=8) == "oversized"


def test_oversized_request():
    header = bytes((ROUTE_REQ,)) + bytes(40)
    assert decode(header + bytes(MAX_REQUEST_SIZE - 41), FROM_WIRE)[0] == RouteRequest(0, 0)
    assert _reason(header + bytes(MAX_REQUEST_SIZE - 40)) == "oversized"
    assert _reason(header + bytes(4000)) == "oversized"


def test_padded_request_with_nonzero_padding_parses():
    data = encode_request(RouteRequest(ORIGIN, TARGET)) + b"\xab" * 100
    assert decode(data, FROM_WIRE) == (RouteRequest(ORIGIN, TARGET), 0)


REASONS = {"truncated", "unknown_type", "bad_length", "oversized"}

garbage = st.one_of(
    st.binary(max_size=700),
    st.builds(
        lambda kind, n, tail: bytes((kind,)) + tail[: 40 + n] + bytes(max(0, 40 + n - len(tail))),
        st.sampled_from([ROUTE_REQ, ROUTE_RES]),
        st.sampled_from([0, 26, 52, 26 * 20, 26 * 21, 13, 480, 481]),
        st.binary(min_size=0, max_size=700),
    ),
)


@settings(max_examples=400)
@given(garbage)
def test_arbitrary_bytes_raise_only_malformed(data):
    try:
        msg, skipped = decode(data, FROM_WIRE)
    except MalformedMessage as error:
        assert error.reason in REASONS
        return
    assert len(data) >= 41
    if data[0] == ROUTE_REQ:
        assert type(msg) is RouteRequest and skipped == 0
        assert encode_request(msg, 0) == data[:41]
    else:
        assert type(msg) is RouteResponse
        assert len(msg.contacts) + skipped == (len(data) - 41) // 26
        for _, (host, port) in msg.contacts:
            assert 1 <= port <= 65535 and isinstance(host, str)
