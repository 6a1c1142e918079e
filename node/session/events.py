"""Events the session layer reports through `next_event()`. Peer IDs are 160-bit ints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..layer import Event
from .state import CallState, EndReason, Role


class SessionEvent(Event):
    """Base of the session layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SessionStats:
    """One session's counters at one moment (receive side unless marked sent)."""

    packets: int = 0  # authentic packets accepted
    bytes: int = 0  # their wire bytes
    lost: int = 0  # sequence numbers never received (highest + 1 - packets)
    reordered: int = 0  # accepted below the highest sequence seen
    duplicate: int = 0  # authentic replays, dropped
    rejected: int = 0  # failed authentication or older than the replay window, dropped
    packets_sent: int = 0
    bytes_sent: int = 0
    jitter: float = 0.0  # seconds, RFC 3550 style over consecutive MEDIA packets


@dataclass(frozen=True, slots=True)
class CallProgress(SessionEvent):
    """A call moved to `state` (caller: key exchange, ringing, talking; callee: talking)."""

    session_id: int
    peer_id: int
    role: Role
    state: CallState
    at: float


@dataclass(frozen=True, slots=True)
class IncomingCall(SessionEvent):
    """An authenticated caller's RING arrived: the call is ringing here; answer or decline."""

    session_id: int
    peer_id: int
    addr: Any
    at: float


@dataclass(frozen=True, slots=True)
class MissedCall(SessionEvent):
    """An authenticated caller rang while we were busy; it was sent BUSY."""

    session_id: int
    peer_id: int
    addr: Any
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded(SessionEvent):
    session_id: int
    peer_id: int
    role: Role
    reason: EndReason
    at: float
    stats: SessionStats


@dataclass(frozen=True, slots=True)
class MediaReceived(SessionEvent):
    session_id: int
    seq: int
    payload: bytes
    at: float


@dataclass(frozen=True, slots=True)
class ReceiverReport(SessionEvent):
    """The peer's view of our stream, for the media layer's bitrate control."""

    session_id: int
    fraction_lost: float  # since its previous report, 0..1 (1/256 steps)
    cumulative_lost: int
    highest_seq: int
    jitter: float  # seconds
    at: float
    seq: int | None = None  # the report packet's own sequence number (a SIGNAL slot)
    rtt: float | None = None  # seconds: the round-trip time with this report (`rtt_of`)


@dataclass(frozen=True, slots=True)
class SessionOpened(SessionEvent):
    """A session with `peer_id` carries messages from now on (a call's once it rings, or one
    opened for messages): the moment to send what waits for this peer (`send_message`)."""

    session_id: int
    peer_id: int
    at: float


@dataclass(frozen=True, slots=True)
class MessageReceived(SessionEvent):
    """A TEXT, new on this session, or again while its RECEIPT is held. The RECEIPT goes
    only when the owner has saved it and calls `SessionLayer.confirm(session_id, message_id,
    now)` (an owner that cannot save it does not: the sender sends it again). A retransmission
    on a later session comes again with the same `message_id`: the owner keeps it once."""

    session_id: int
    peer_id: int
    message_id: bytes  # 16 bytes, the sender's
    seq: int  # the sender's number for it (1, 2, ... per peer)
    sent_ms: int  # the sender's wall clock, ms
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class MessageDelivered(SessionEvent):
    """The peer's RECEIPT for a message we sent: it has it."""

    session_id: int
    peer_id: int
    message_id: bytes
    at: float


@dataclass(frozen=True, slots=True)
class MessagesUnsent(SessionEvent):
    """The last session with `peer_id` ended (`reason`) before these messages' receipts came:
    they stay the owner's to send again on the next session (SessionOpened)."""

    peer_id: int
    message_ids: tuple[bytes, ...]
    reason: EndReason
    at: float
