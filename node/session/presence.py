"""Presence and contact requests inside a session's encrypted stream (issue 14 item 3;
docs/protocol.md §15c): three more SIGNAL kinds beside TEXT / RECEIPT (messages.py).

    PRESENCE       0x09 | status (1)                                     2 bytes
    CONTACT_REQ    0x0a | request id (16) | note (UTF-8, 0-MAX_NOTE bytes)  17-273 bytes
    CONTACT_REPLY  0x0b | reply id (16) | request id (16) | verdict (1)   34 bytes

PRESENCE is state, not an event: a node sends it only to peers its owner trusts (its contacts,
`SessionSettings.trusted`), when a session with one opens, when the owner's status changes, and
in place of every KEEPALIVE on such a session, so a lost one is made good within
keepalive_interval without a retransmission rule. Nothing about presence goes to the DHT.

CONTACT_REQ and CONTACT_REPLY are acknowledged by the RECEIPT of their first 16 bytes after the
kind (the request id, the reply id) and ride the session's Outbox like a TEXT: sent again until
that RECEIPT, delivered once per session, metered by the same budgets (§15b). The layer reports
them (`ContactRequested`, `ContactReplied`) and, like a TEXT's, holds their RECEIPT until the
owner confirms it kept them (`SessionLayer.confirm(session_id, frame id, now)`), so one the
owner could not write is sent again, not lost. What they mean (a pending request, a new
contact) is the owner's to decide: a reply that answers no request of ours must change nothing
there (it is confirmed all the same: the owner refuses it for good).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .messages import ID_SIZE
from .wire import Drop

PRESENCE = 0x09
CONTACT_REQ = 0x0a
CONTACT_REPLY = 0x0b
KINDS = frozenset({PRESENCE, CONTACT_REQ, CONTACT_REPLY})
RELIABLE = frozenset({CONTACT_REQ, CONTACT_REPLY})  # acknowledged by RECEIPT, via the Outbox

# statuses on the wire; "offline" is what a peer infers from silence, or is told on shutdown
STATUSES = ("online", "away", "busy", "offline")
ONLINE, AWAY, BUSY, OFFLINE = range(4)
PRESENCE_SIZE = 2

MAX_NOTE = 256  # bytes of UTF-8: a short "hi, it's Bob from the club", not a letter
_REQ_HEAD = 1 + ID_SIZE
_REPLY = struct.Struct(">B16s16sB")  # kind, reply id, request id, verdict
DECLINED, ACCEPTED = 0, 1


@dataclass(frozen=True, slots=True)
class Request:
    request_id: bytes
    note: str


@dataclass(frozen=True, slots=True)
class Reply:
    reply_id: bytes
    request_id: bytes
    accepted: bool


def encode_presence(status: int) -> bytes:
    if status not in range(len(STATUSES)):
        raise ValueError(f"a status is 0-{len(STATUSES) - 1} ({', '.join(STATUSES)})")
    return bytes((PRESENCE, status))


def decode_presence(plaintext: bytes) -> int:
    if len(plaintext) != PRESENCE_SIZE or plaintext[0] != PRESENCE:
        raise Drop("bad_presence")
    if plaintext[1] >= len(STATUSES):
        raise Drop("bad_presence")
    return plaintext[1]


def encode_request(request_id: bytes, note: str = "") -> bytes:
    """A CONTACT_REQ plaintext; ValueError (naming the limit) for what a receiver would drop."""
    if len(request_id) != ID_SIZE:
        raise ValueError(f"a request id is {ID_SIZE} bytes")
    data = note.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    if len(data) > MAX_NOTE:
        raise ValueError(f"a request's note is at most {MAX_NOTE} bytes of UTF-8; this one is "
                         f"{len(data)}")
    return bytes((CONTACT_REQ,)) + request_id + data


def decode_request(plaintext: bytes) -> Request:
    if len(plaintext) < _REQ_HEAD or plaintext[0] != CONTACT_REQ:
        raise Drop("bad_request")
    if len(plaintext) > _REQ_HEAD + MAX_NOTE:
        raise Drop("oversized_note")
    try:
        note = plaintext[_REQ_HEAD:].decode("utf-8")
    except UnicodeDecodeError:
        raise Drop("bad_utf8") from None
    return Request(plaintext[1:_REQ_HEAD], note)


def encode_reply(reply_id: bytes, request_id: bytes, accepted: bool) -> bytes:
    if len(reply_id) != ID_SIZE or len(request_id) != ID_SIZE:
        raise ValueError(f"reply and request ids are {ID_SIZE} bytes")
    return _REPLY.pack(CONTACT_REPLY, reply_id, request_id, ACCEPTED if accepted else DECLINED)


def decode_reply(plaintext: bytes) -> Reply:
    if len(plaintext) != _REPLY.size:
        raise Drop("bad_reply")
    kind, reply_id, request_id, verdict = _REPLY.unpack(plaintext)
    if kind != CONTACT_REPLY or verdict not in (DECLINED, ACCEPTED):
        raise Drop("bad_reply")
    return Reply(reply_id, request_id, verdict == ACCEPTED)


def frame_id(plaintext: bytes) -> bytes:
    """The id a RECEIPT names for a reliable frame (TEXT, CONTACT_REQ, CONTACT_REPLY)."""
    return plaintext[1:1 + ID_SIZE]


# -- what the layer reports -----------------------------------------------------------------------

from .events import SessionEvent  # noqa: E402 (the frames above need no events)


@dataclass(frozen=True, slots=True)
class PresenceReceived(SessionEvent):
    """A peer's PRESENCE that differs from the last one on this session (the first one always).
    Anyone with a session can send one: the owner shows only its contacts' (a stranger's is the
    owner's counted drop)."""

    session_id: int
    peer_id: int
    status: int  # ONLINE, AWAY, BUSY, OFFLINE (STATUSES names them)
    at: float


@dataclass(frozen=True, slots=True)
class ContactRequested(SessionEvent):
    """A CONTACT_REQ, new on this session or held (reported again until the owner confirms
    `request_id`: only then does its RECEIPT go)."""

    session_id: int
    peer_id: int
    request_id: bytes
    note: str  # the peer's text, unchecked: sanitise it before printing
    at: float


@dataclass(frozen=True, slots=True)
class ContactReplied(SessionEvent):
    """A CONTACT_REPLY, new on this session or held (its RECEIPT goes when the owner confirms
    `reply_id`): the owner checks it answers a request it sent."""

    session_id: int
    peer_id: int
    reply_id: bytes  # the frame's id: what the owner confirms
    request_id: bytes
    accepted: bool
    at: float
