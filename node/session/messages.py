"""Text messages inside a session's encrypted stream: the TEXT / RECEIPT frames and the sender's
retransmission and the receiver's duplicate rules (issue 14 item 1; docs/protocol.md §15b).

Two SIGNAL kinds beyond the call's (wire.py's RING ... REPORT), so the frames ride the same
AES-GCM stream, sequence space and replay window as RING and MEDIA:

    TEXT    0x07 | message id (16) | seq (u32) | sent (u64, ms) | UTF-8 text (1-MAX_TEXT bytes)
    RECEIPT 0x08 | message id (16)

The message id is the sender's (random, 128 bits): the receiver acknowledges by it and keeps a
message once however often it arrives. `seq` numbers the sender's messages to this peer (1, 2,
...), so the receiver can put them in the sender's order; `sent` is the sender's wall clock.
A text longer than MAX_TEXT bytes is refused (ValueError naming the limit), never split: one
message is one datagram, which then fits the IPv6 minimum MTU with room for a relay's header.

Sans-I/O and without keys: `Outbox` decides when a frame goes (again), `Inbox` whether one is
new; the session layer seals and sends, with the time it is given.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass

from ..ratelimit import TokenBucket
from .wire import Drop

TEXT = 0x07
RECEIPT = 0x08
KINDS = frozenset({TEXT, RECEIPT})
ID_SIZE = 16
MAX_TEXT = 1024  # bytes of UTF-8; a TEXT datagram is then at most 13 + 29 + 1,024 = 1,066 bytes
MAX_SEQ = 0xFFFFFFFF
_TEXT_HEAD = struct.Struct(">B16sIQ")  # kind, message id, seq, sent
RECEIPT_SIZE = 1 + ID_SIZE


@dataclass(frozen=True, slots=True)
class TextFrame:
    message_id: bytes
    seq: int
    sent_ms: int  # the sender's wall clock, milliseconds since the Unix epoch
    text: str


def encode_text(message_id: bytes, seq: int, sent_ms: int, text: str) -> bytes:
    """A TEXT plaintext; ValueError for what a receiver would drop (say why, with the limit)."""
    if len(message_id) != ID_SIZE:
        raise ValueError(f"a message id is {ID_SIZE} bytes")
    if not 0 <= seq <= MAX_SEQ or not 0 <= sent_ms < 1 << 64:
        raise ValueError("seq must fit 32 bits and sent_ms 64")
    data = text.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    if not data:
        raise ValueError("a message cannot be empty")
    if len(data) > MAX_TEXT:
        raise ValueError(f"a message is at most {MAX_TEXT} bytes of UTF-8; this one is "
                         f"{len(data)} (send it in parts)")
    return _TEXT_HEAD.pack(TEXT, message_id, seq, sent_ms) + data


def decode_text(plaintext: bytes) -> TextFrame:
    if len(plaintext) <= _TEXT_HEAD.size:
        raise Drop("bad_text")
    if len(plaintext) > _TEXT_HEAD.size + MAX_TEXT:
        raise Drop("oversized_text")
    kind, message_id, seq, sent_ms = _TEXT_HEAD.unpack_from(plaintext)
    if kind != TEXT:
        raise Drop("bad_text")
    try:
        text = plaintext[_TEXT_HEAD.size:].decode("utf-8")
    except UnicodeDecodeError:
        raise Drop("bad_utf8") from None
    return TextFrame(message_id, seq, sent_ms, text)


def encode_receipt(message_id: bytes) -> bytes:
    if len(message_id) != ID_SIZE:
        raise ValueError(f"a message id is {ID_SIZE} bytes")
    return bytes((RECEIPT,)) + message_id


def decode_receipt(plaintext: bytes) -> bytes:
    """The message id a RECEIPT acknowledges."""
    if len(plaintext) != RECEIPT_SIZE or plaintext[0] != RECEIPT:
        raise Drop("bad_receipt")
    return plaintext[1:]


class Full(ValueError):
    """Too many messages wait for their receipts on one session."""


class _Entry:
    __slots__ = ("frame", "next_at", "interval")

    def __init__(self, frame: bytes):
        self.frame = frame
        self.next_at: float | None = None  # None: not sent yet (the session is not open yet)
        self.interval = 0.0


class Outbox:
    """One session's messages awaiting their receipts, oldest first. A message goes at once when
    the session carries messages, then again after `retry` s, the interval doubling up to
    `retry_max`, until its RECEIPT comes or the session ends (the owner keeps it pending)."""

    __slots__ = ("retry", "retry_max", "limit", "_entries")

    def __init__(self, retry: float, retry_max: float, limit: int):
        self.retry = retry
        self.retry_max = retry_max
        self.limit = limit
        self._entries: dict[bytes, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._entries

    def add(self, message_id: bytes, frame: bytes) -> None:
        """Queue a frame (a message already queued is left as it is)."""
        if message_id in self._entries:
            return
        if len(self._entries) >= self.limit:
            raise Full(f"{self.limit} messages already await their receipts on this session")
        self._entries[message_id] = _Entry(frame)

    def adopt(self, taken: list[tuple[bytes, bytes]]) -> None:
        """Take over another session's messages (`take`), to send at once, over the limit if
        need be: they were within one before."""
        for message_id, frame in taken:
            if message_id not in self._entries:
                self._entries[message_id] = _Entry(frame)

    def due(self, now: float, cap: float | None = None) -> list[tuple[bytes, bool]]:
        """(frame, is a retransmission) of every message to send now; each is rescheduled, the
        interval no longer than `cap` if given (the session layer's while the peer is silent)."""
        out = []
        most = self.retry_max if cap is None else min(cap, self.retry_max)
        for entry in self._entries.values():
            if entry.next_at is None:
                entry.interval = min(self.retry, most)
                out.append((entry.frame, False))
            elif now >= entry.next_at:
                entry.interval = min(entry.interval * 2, most)
                out.append((entry.frame, True))
            else:
                continue
            entry.next_at = now + entry.interval
        return out

    def next_at(self) -> float | None:
        """The earliest retransmission (messages not sent yet wait for `due`, not the timer)."""
        times = [e.next_at for e in self._entries.values() if e.next_at is not None]
        return min(times) if times else None

    def acknowledge(self, message_id: bytes) -> bool:
        """A RECEIPT: True when it named a message waiting here (then it is done)."""
        return self._entries.pop(message_id, None) is not None

    def discard(self, message_id: bytes) -> None:
        """Forget a message (it moves to another session)."""
        self._entries.pop(message_id, None)

    def ids(self) -> list[bytes]:
        return list(self._entries)

    def take(self) -> list[tuple[bytes, bytes]]:
        """Empty the outbox: (message id, frame) of each, oldest first (to move them)."""
        taken = [(message_id, e.frame) for message_id, e in self._entries.items()]
        self._entries.clear()
        return taken


class Inbox:
    """The ids of the latest `size` messages a session delivered: a retransmission (its
    RECEIPT was lost) is acknowledged again but delivered once. Across sessions the owner's
    store dedups (app/history.py: one row per peer and message id).

    A TEXT is `held` until the owner confirms that it saved it (SessionLayer.confirm): only
    then does its RECEIPT go, so a message the owner could not write (disk full) is sent again
    by its sender. A held one that comes again is delivered again (the owner may write it
    now), and costs a token like a new one.

    `budget` meters new messages (a token each): one past it is dropped without a RECEIPT, so
    an honest sender sends it again later and a flooding one gets no further (§15b)."""

    __slots__ = ("size", "budget", "_seen", "_held")

    def __init__(self, size: int, budget: TokenBucket | None = None):
        self.size = size
        self.budget = budget
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._held: set[bytes] = set()  # delivered, not confirmed yet: no RECEIPT sent

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._seen

    def known(self, message_id: bytes) -> bool:
        """Delivered here and not held: a repeat that needs only its RECEIPT again."""
        return message_id in self._seen and message_id not in self._held

    def held(self, message_id: bytes) -> bool:
        return message_id in self._held

    def admits(self, message_id: bytes, now: float) -> bool:
        """False for a new (or held) message over the budget (a repeat of a confirmed one is
        always admitted: it costs one RECEIPT and no delivery)."""
        return self.known(message_id) or self.budget is None or self.budget.take(now)

    def add(self, message_id: bytes, hold: bool = False) -> bool:
        """True for a message not seen before on this session (remembered from now; with
        `hold`, held until `confirm`)."""
        if message_id in self._seen:
            self._seen.move_to_end(message_id)
            return False
        self._seen[message_id] = None
        if hold:
            self._held.add(message_id)
        if len(self._seen) > self.size:
            self._held.discard(self._seen.popitem(last=False)[0])
        return True

    def confirm(self, message_id: bytes) -> bool:
        """The owner saved a held message: True when it was held here (its RECEIPT goes now)."""
        if message_id not in self._held:
            return False
        self._held.discard(message_id)
        return True
