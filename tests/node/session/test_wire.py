"""The session codecs: KEY messages, packet headers, signal payloads."""

from __future__ import annotations

import pytest

from kadtalk.node.session.wire import (
    ANSWER,
    HANGUP,
    KEY_REQ,
    KEY_RES,
    MAX_KEY_MESSAGE,
    REPORT,
    Drop,
    KeyMessage,
    decode_key,
    decode_report,
    decode_signal,
    encode_key,
    encode_report,
    encode_signal,
    packet_header,
)

from .conftest import identity

EPH = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + bytes(64)


def reason(fn, *args) -> str:
    with pytest.raises(Drop) as info:
        fn(*args)
    return info.value.reason


@pytest.mark.parametrize("kind", [KEY_REQ, KEY_RES])
@pytest.mark.parametrize("key", ["p256", "rsa", "ed25519"])
def test_key_message_round_trip(kind, key):
    spki = identity(key, "wire").public_der
    msg = KeyMessage(kind, EPH, spki, 1_767_225_600_123, b"\x01" * 71)
    data = encode_key(msg)
    assert data[0] == kind and len(data) == 1 + 91 + len(spki) + 8 + 71
    assert decode_key(data) == msg


def test_key_message_layout_is_type_eph_identity_timestamp_signature():
    spki = identity("p256", "wire").public_der
    data = encode_key(KeyMessage(KEY_REQ, EPH, spki, 0x0102030405060708, b"SIG"))
    assert data[1:92] == EPH
    assert data[92:92 + len(spki)] == spki
    assert data[92 + len(spki):100 + len(spki)] == bytes(range(1, 9))
    assert data.endswith(b"SIG")


def test_key_message_rejections():
    spki = identity("p256", "wire").public_der
    good = encode_key(KeyMessage(KEY_REQ, EPH, spki, 5, b"s"))
    assert reason(decode_key, good[:-1]) == "truncated"  # no signature left
    assert reason(decode_key, good[:50]) == "truncated"
    assert reason(decode_key, b"\x04" + good[1:]) == "unknown_type"
    assert reason(decode_key, b"") == "unknown_type"
    assert reason(decode_key, good[:1] + b"\x31" + good[2:]) == "bad_der"
    assert reason(decode_key, good + bytes(MAX_KEY_MESSAGE)) == "oversized"
    # non-minimal DER lengths are refused
    long_form = b"\x02\x30\x81\x59" + EPH[2:] + spki + bytes(8) + b"s"
    assert reason(decode_key, long_form) == "bad_der"


def test_packet_header():
    assert packet_header(b"\x04\x00\x00\x01\x00" + bytes(8)) == (4, 256)
    assert reason(packet_header, bytes(12)) == "truncated"


def test_signals():
    assert decode_signal(encode_signal(ANSWER)) == (ANSWER, b"")
    assert decode_signal(encode_signal(HANGUP, b"\x01")) == (HANGUP, b"\x01")
    assert reason(decode_signal, b"") == "bad_signal"
    assert reason(decode_signal, b"\x02\x00") == "bad_signal"
    assert reason(decode_signal, b"\x03") == "bad_signal"
    assert reason(decode_signal, b"\x99") == "unknown_signal"


def test_report_round_trip_and_clamping():
    data = encode_report(0.25, 12, 0x1_0000_0005, 0.0125)
    assert data[0] == REPORT and len(data) == 14
    kind, body = decode_signal(data)
    assert decode_report(body) == (0.25, 12, 5, 0.0125)
    _, body = decode_signal(encode_report(2.0, -3, 7, 1e9))
    assert decode_report(body) == (255 / 256, 0, 7, 0xFFFFFFFF / 1e6)
