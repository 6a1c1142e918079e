"""Session wire formats: KEY_REQ / KEY_RES, MEDIA / SIGNAL packets and signal payloads.

KEY_REQ (0x02) and KEY_RES (0x03):
    type (1) | ephemeral SPKI (DER, 91) | identity SPKI (DER) | timestamp (u64, ms) | signature
The two SPKIs are DER SEQUENCEs, so their lengths come from their own headers (minimal DER
length encoding required); the signature is the rest of the datagram.

MEDIA (0x04) and SIGNAL (0x05):
    type (1) | sequence (u32) | GCM tag (8) | ciphertext

SIGNAL plaintext: kind (1) | body, see `SIGNAL_BODY`.

COOKIE (0x07), the stateless address proof (issue 17; docs/protocol.md section 11a):
    COOKIE_REPLY: type (1) | 0x01 | request tag (16) | cookie (16)         34 bytes, callee -> caller
    COOKIE_RETRY: type (1) | 0x02 | cookie (16) | KEY_REQ (unchanged)     caller -> callee
The request tag is SHA-256(KEY_REQ)[:16]: the caller matches a reply to a KEY_REQ it sent.

Parsers raise `Drop(reason)`; the layer counts the reason and drops the datagram.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

KEY_REQ = 0x02
KEY_RES = 0x03
MEDIA = 0x04
SIGNAL = 0x05
COOKIE = 0x07  # cookie reply to a KEY_REQ under load (issue 17); routed to the session
COOKIE_REPLY = 0x01  # COOKIE operations (second byte)
COOKIE_RETRY = 0x02
TAG_LEN = 16  # request tag and cookie: 128 bits each
COOKIE_REPLY_SIZE = 2 + 2 * TAG_LEN  # 34 bytes
COOKIE_RETRY_OVERHEAD = 2 + TAG_LEN  # 18 bytes in front of the KEY_REQ

MAX_KEY_MESSAGE = 4096  # bytes; room for RSA identities up to 8192 bits
MAX_SPKI = 2048
TIMESTAMP_SIZE = 8
SEQ_SIZE = 4
TAG_SIZE = 8
HEADER_SIZE = 1 + SEQ_SIZE + TAG_SIZE  # 13 bytes of overhead per MEDIA / SIGNAL packet
MAX_PACKET = 1500  # bytes: a MEDIA / SIGNAL packet never needs more (8-byte tags: keep GCM's
#                    per-packet forgery bound small, NIST SP 800-38D appendix C)
MAX_SEQ = 0xFFFFFFFF

# SIGNAL kinds
RING = 0x01
ANSWER = 0x02
HANGUP = 0x03
BUSY = 0x04
KEEPALIVE = 0x05
REPORT = 0x06

# HANGUP reason codes
HANGUP_NORMAL = 0
HANGUP_DECLINED = 1
HANGUP_NO_ANSWER = 2

# REPORT body: fraction lost (/256), cumulative lost, highest sequence, jitter (µs)
REPORT_BODY = struct.Struct(">BIII")
SIGNAL_BODY = {RING: 0, ANSWER: 0, HANGUP: 1, BUSY: 0, KEEPALIVE: 0, REPORT: REPORT_BODY.size}
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">BI")


class Drop(Exception):
    """Input to drop; `reason` is the counter name."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class KeyMessage:
    kind: int  # KEY_REQ or KEY_RES
    ephemeral: bytes  # DER SPKI
    identity: bytes  # DER SPKI
    timestamp: int  # milliseconds since the Unix epoch
    signature: bytes


def encode_key(msg: KeyMessage) -> bytes:
    return b"".join(
        (bytes((msg.kind,)), msg.ephemeral, msg.identity, _U64.pack(msg.timestamp), msg.signature)
    )


def _der_sequence(data: bytes, offset: int) -> int:
    """End offset of the DER SEQUENCE starting at `offset` (minimal length encoding only)."""
    if len(data) < offset + 2 or data[offset] != 0x30:
        raise Drop("bad_der")
    first = data[offset + 1]
    if first < 0x80:
        length, header = first, 2
    elif first == 0x81:
        if len(data) < offset + 3 or data[offset + 2] < 0x80:
            raise Drop("bad_der")
        length, header = data[offset + 2], 3
    elif first == 0x82:
        if len(data) < offset + 4:
            raise Drop("bad_der")
        length, header = (data[offset + 2] << 8) | data[offset + 3], 4
        if length < 0x100:
            raise Drop("bad_der")
    else:
        raise Drop("bad_der")
    end = offset + header + length
    if end > len(data):
        raise Drop("truncated")
    if end - offset > MAX_SPKI:
        raise Drop("oversized")
    return end


def decode_key(data: bytes) -> KeyMessage:
    if len(data) > MAX_KEY_MESSAGE:
        raise Drop("oversized")
    if not data or data[0] not in (KEY_REQ, KEY_RES):
        raise Drop("unknown_type")
    eph_end = _der_sequence(data, 1)
    id_end = _der_sequence(data, eph_end)
    sig_start = id_end + TIMESTAMP_SIZE
    if len(data) <= sig_start:
        raise Drop("truncated")
    (timestamp,) = _U64.unpack_from(data, id_end)
    return KeyMessage(data[0], data[1:eph_end], data[eph_end:id_end], timestamp, data[sig_start:])


@dataclass(frozen=True, slots=True)
class CookieMessage:
    op: int  # COOKIE_REPLY or COOKIE_RETRY
    cookie: bytes  # 16 bytes
    tag: bytes  # COOKIE_REPLY: the request tag; COOKIE_RETRY: b""
    key_req: bytes  # COOKIE_RETRY: the KEY_REQ datagram it carries; COOKIE_REPLY: b""


def request_tag(key_req: bytes) -> bytes:
    """What a COOKIE_REPLY echoes and a cookie is bound to: SHA-256 of the KEY_REQ, cut to 16."""
    return hashlib.sha256(key_req).digest()[:TAG_LEN]


def encode_cookie_reply(tag: bytes, cookie: bytes) -> bytes:
    return bytes((COOKIE, COOKIE_REPLY)) + tag + cookie


def encode_cookie_retry(cookie: bytes, key_req: bytes) -> bytes:
    return bytes((COOKIE, COOKIE_RETRY)) + cookie + key_req


def decode_cookie(data: bytes) -> CookieMessage:
    """A COOKIE datagram's fields; the KEY_REQ inside a retry is decoded by `decode_key`."""
    if len(data) < 2:
        raise Drop("truncated")
    if data[0] != COOKIE:
        raise Drop("unknown_type")
    op = data[1]
    if op == COOKIE_REPLY:
        if len(data) != COOKIE_REPLY_SIZE:
            raise Drop("truncated" if len(data) < COOKIE_REPLY_SIZE else "oversized")
        return CookieMessage(op, data[2 + TAG_LEN :], data[2 : 2 + TAG_LEN], b"")
    if op == COOKIE_RETRY:
        if len(data) <= COOKIE_RETRY_OVERHEAD:
            raise Drop("truncated")
        if len(data) > COOKIE_RETRY_OVERHEAD + MAX_KEY_MESSAGE:
            raise Drop("oversized")
        if data[COOKIE_RETRY_OVERHEAD] != KEY_REQ:
            raise Drop("bad_cookie_retry")  # only a KEY_REQ travels with a cookie
        return CookieMessage(op, data[2:COOKIE_RETRY_OVERHEAD], b"", data[COOKIE_RETRY_OVERHEAD:])
    raise Drop("unknown_cookie_op")


def packet_header(data: bytes) -> tuple[int, int]:
    """(type, sequence) of a MEDIA / SIGNAL packet, after a length check."""
    if len(data) < HEADER_SIZE:
        raise Drop("truncated")
    return _HEADER.unpack_from(data)


def encode_signal(kind: int, body: bytes = b"") -> bytes:
    return bytes((kind,)) + body


def decode_signal(plaintext: bytes) -> tuple[int, bytes]:
    """(kind, body) of a SIGNAL plaintext; unknown kinds and wrong body sizes raise Drop."""
    if not plaintext:
        raise Drop("bad_signal")
    kind = plaintext[0]
    size = SIGNAL_BODY.get(kind)
    if size is None:
        raise Drop("unknown_signal")
    if len(plaintext) != 1 + size:
        raise Drop("bad_signal")
    return kind, plaintext[1:]


def encode_report(fraction_lost: float, lost: int, highest: int, jitter: float) -> bytes:
    return encode_signal(
        REPORT,
        REPORT_BODY.pack(
            min(255, max(0, int(fraction_lost * 256))),
            min(MAX_SEQ, max(0, lost)),
            highest & MAX_SEQ,
            min(MAX_SEQ, max(0, round(jitter * 1e6))),
        ),
    )


def decode_report(body: bytes) -> tuple[float, int, int, float]:
    fraction, lost, highest, jitter = REPORT_BODY.unpack(body)
    return fraction / 256, lost, highest, jitter / 1e6
