"""An adaptive jitter buffer, sans-I/O: packets go in with their arrival time, one playout
decision comes out per 20 ms pull.

Timestamps come from the stream's sequence numbers. MEDIA and SIGNAL share one sequence space,
so a SIGNAL packet (a receiver report, once a second) takes a number that no frame has: the
media index of a packet is its sequence number minus the SIGNAL sequence numbers below it.
`signal_received(now)` tells the buffer a SIGNAL packet arrived (or the exact `seq`, when the
caller knows it). On a calm path it took the number just above the highest one seen (the sender
interleaves them); on a jittery path, where packets overtake each other, the notice is kept and
given to the first missing frame around that arrival time that comes up for playout. A SIGNAL
slot the buffer is not told of (the report was lost) is inferred on any path when the packet
after the gap carries a copy of the frame before it (redundancy, see `packet.carries`), and
while the path is calm from arrival times: a gap of one to three numbers whose neighbours
arrived fewer frames apart than the numbers between them. One it still misses looks like one
frame of extra delay; the delay control below removes it at the next gap.

Delay control. Every packet's relative transit time `d = arrival - index * 20 ms` goes into a
sliding window. `base` is the window's minimum (the fastest path seen lately), and the target
delay is the window's `quantile` of `d - base` plus `margin`, bounded by `min_delay` and
`max_delay`. Frame `k` is due at `base + k * 20 ms + target`. At each pull the buffer compares
the due index with the next one to play:

- on schedule: play the frame; if it is missing, rebuild it from the next packet's FEC when
  that packet is here, else conceal it (PLC);
- behind (the buffer holds more than the target): skip missing frames for free; when two or
  more frames behind, drop a frame that is here (counted as `dropped`);
- ahead (the target grew, or nothing has arrived yet): conceal without advancing, which
  stretches the delay by one frame (`stretched`); a missing frame due within
  `stretch_tolerance` is rebuilt at once when its copy is here, and one due within
  `wait_tolerance` is concealed in its slot when it is not (a target that crept up by a
  millisecond is no reason to add a frame of delay);
- over the target by `accelerate_at` frames (less than the frame the two cuts above need) for
  `accelerate_after` seconds: cut one frame (`accelerated`), the cheapest first -- a missing
  frame without its copy, a quiet (small) packet, later any missing frame, then any frame --
  as NetEQ's accelerate does. Without it a stretch whose cause went away left the call up to
  a frame late for good (issue 16: 52 ms instead of 32 through the daemons at 10 % loss).

FEC, and the copy a redundant packet carries, need the packet after a lost one in time for the
lost one's playout (a FEC playout hands that packet out): while the share of
missing frames (a moving average over about 30 frames) is above `fec_loss`, one frame is added
to the target (`fec_wait`); it is taken off again once the loss falls below a quarter of that.

Packets for frames already played (or skipped) are late: dropped and counted. Nothing here
raises on input: any sequence number, payload and time is accepted or counted.
"""

from __future__ import annotations

import bisect
import collections
import math
from dataclasses import dataclass

from .packet import carries, frame_count, split

FRAME = 0.02
MAX_SEQ = 0xFFFFFFFF
_MAX_INFERRED = 3  # numbers missing in a row that arrival times may call SIGNAL slots

# Playout kinds
PLAY = "play"  # decode `payload`
FEC = "fec"  # the frame is missing; rebuild it from `payload`, the next frame's packet
CONCEAL = "conceal"  # the frame is missing: packet-loss concealment
SILENCE = "silence"  # nothing to play (before the first frame, or after a long outage)


@dataclass(frozen=True, slots=True)
class JitterSettings:
    min_delay: float = 0.0  # seconds, bounds of the target delay (above the fastest packet)
    max_delay: float = 0.2
    quantile: float = 0.97  # share of packets the target delay should have on time
    margin: float = 0.004  # seconds added to the measured spread
    window: int = 250  # packets in the delay window (5 s of frames)
    capacity: int = 500  # packets held at most (10 s); more are dropped as overflow
    max_conceal: int = 10  # concealed frames in a row before plain silence (libopus fades out)
    fec_wait: bool = True  # wait one frame more while frames go missing, for FEC recovery
    fec_loss: float = 0.02  # ... when the moving share of missing frames is above this
    stretch_tolerance: float = 0.5  # frames: a missing frame due less than this after the
    #                                 pull is rebuilt at once when the next packet is here
    wait_tolerance: float = 0.25  # frames: ... and concealed at once when it is not
    accelerate_at: float = 0.8  # frames over the target that make the buffer cut a frame ...
    accelerate_after: float = 1.0  # seconds ... once they have lasted this long
    quiet: float = 0.6  # a packet this share of the average size or smaller is a quiet one

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay <= self.max_delay:
            raise ValueError("need 0 <= min_delay <= max_delay")
        if not 0 < self.quantile <= 1 or self.window < 2 or self.capacity < 2:
            raise ValueError("quantile in (0, 1], window and capacity at least 2")


@dataclass(frozen=True, slots=True)
class Playout:
    kind: str  # PLAY, FEC, CONCEAL or SILENCE
    seq: int | None = None  # the frame's sequence number (None for SILENCE / stretching)
    payload: bytes = b""


_SILENCE = Playout(SILENCE)


class JitterBuffer:
    """Media packets keyed by sequence number, played out one frame per pull."""

    __slots__ = (
        "settings", "_packets", "_signals", "_signals_below", "_window", "_base", "_target",
        "_next", "_highest", "_run", "received", "played", "late", "duplicate", "overflow",
        "skipped", "dropped", "expired", "stretched", "concealed", "fec", "signal_slots",
        "signals_inferred", "signals_missed", "_sorted_at", "_times", "_pending", "_loss",
        "_waiting", "_spread", "_last_played", "_over_since", "_size", "accelerated",
    )

    def __init__(self, settings: JitterSettings | None = None):
        self.settings = settings or JitterSettings()
        self._packets: dict[int, bytes] = {}
        self._signals: list[int] = []  # known SIGNAL sequence numbers at or above the next frame
        self._signals_below = 0  # SIGNAL sequence numbers forgotten (below the next frame)
        # (seq, arrival) of the last `window` packets; `_times` indexes them by seq
        self._window: collections.deque[tuple[int, float]] = collections.deque()
        self._times: dict[int, float] = {}
        self._base = 0.0
        self._target = self.settings.min_delay
        self._next: int | None = None  # sequence number of the next frame to play
        self._highest: int | None = None
        self._run = 0  # concealed frames in a row
        self._sorted_at = 0
        self.received = 0  # packets accepted into the buffer
        self.played = 0
        self.late = 0  # arrived after their frame was played or skipped
        self.duplicate = 0
        self.overflow = 0
        self.skipped = 0  # missing frames skipped to cut the delay
        self.dropped = 0  # frames that were here, dropped to cut the delay
        self.expired = 0  # frames that were here, jumped over with a run of missing frames
        self.stretched = 0  # concealed frames inserted to grow the delay
        self.concealed = 0  # missing frames concealed in their own slot
        self.fec = 0  # missing frames handed out for FEC recovery
        self.signal_slots = 0  # SIGNAL sequence numbers we were told of
        self.signals_inferred = 0  # ... and inferred from arrival times
        self.signals_missed = 0  # notices that found no missing frame near their time
        self._pending: collections.deque[float] = collections.deque(maxlen=16)  # notice times
        self._loss = 0.0  # moving share of frames missing at their playout
        self._waiting = False  # the FEC frame of delay is in the target
        self._spread = 0.0
        self._last_played: tuple[int, bytes] | None = None  # (seq, payload) of the last frame
        self._over_since: float | None = None  # since when the delay is over the target
        self._size = 0.0  # moving average of played packets' sizes
        self.accelerated = 0  # frames cut (skipped or dropped) for a lasting excess delay

    # -- input ------------------------------------------------------------------------------------

    def put(self, seq: int, payload: bytes, now: float) -> bool:
        """Take one MEDIA packet; False when it is late, a duplicate, out of range or no room."""
        if not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            self.late += 1
            return False
        if self._next is not None and seq < self._next:
            self.late += 1
            # Too late to play, but it still tells how late the path runs: without it a delay
            # jump larger than the target leaves every later packet late for good.
            self._arrived(seq, now)
            return False
        if seq in self._packets:
            self.duplicate += 1
            return False
        if len(self._packets) >= self.settings.capacity:
            self.overflow += 1
            return False
        i = bisect.bisect_left(self._signals, seq)
        if i < len(self._signals) and self._signals[i] == seq:
            del self._signals[i]  # a guessed SIGNAL slot was a frame after all
        self._packets[seq] = bytes(payload)
        self.received += 1
        if self._highest is None or seq > self._highest:
            self._highest = seq
        self._infer_signal(seq, now)
        self._times[seq] = now
        self._arrived(seq, now)
        return True

    def _arrived(self, seq: int, now: float) -> None:
        """Note a packet's arrival in the delay window (the target follows its spread)."""
        window = self._window
        if len(window) >= self.settings.window:
            old_seq, _ = window.popleft()
            self._times.pop(old_seq, None)
        window.append((seq, now))
        d = now - self._index(seq) * FRAME
        if len(window) == 1 or d < self._base:
            self._base = d
        self._sorted_at += 1
        if self._sorted_at >= 10 or len(window) < 20:
            self._update_target()

    def _infer_signal(self, seq: int, now: float) -> None:
        """SIGNAL slots among the numbers missing just below `seq`, from two kinds of evidence.

        Redundancy (any path): `seq` carries a copy of the frame before it (a two-frame Opus
        packet), and that copy is the frame of `seq - 2`: `seq - 1` held no frame. Likewise
        for `seq + 2` and `seq` when `seq + 2` came first.

        Arrival times (a calm path only): `seq - 1` missing and `seq - 2` here one frame
        earlier: `seq - 1` was a SIGNAL. With two or three numbers missing, as many of them
        as the arrival times leave no frame time for (the latest ones: which of them it was
        does not change any frame's index after them).
        """
        if seq < 2:
            return
        self._infer_from_copy(seq - 2, seq)
        if seq + 2 in self._packets:
            self._infer_from_copy(seq, seq + 2)
        if self._copy_differs(seq - 2, seq):
            return  # its copy is not the frame of `seq - 2`: `seq - 1` held a frame (arrival
            #         times would call it a SIGNAL whenever `seq - 2` came late: a busy sender)
        if self._spread > FRAME / 2 or seq - 1 in self._times or self._is_signal(seq - 1):
            return
        missing: list[int] = []  # latest first
        before = seq - 1
        while before >= max(0, seq - 2 - _MAX_INFERRED) and before not in self._times:
            if not self._is_signal(before):
                missing.append(before)
            before -= 1
        arrived = self._times.get(before)
        if arrived is None or not missing:
            return
        elapsed = (now - arrived) / FRAME
        if len(missing) == 1:
            count = int(elapsed <= 1.5)
        else:
            frames = round(elapsed)  # frame times between the two arrivals
            if frames < 1 or abs(elapsed - frames) > 0.25:
                return
            count = len(missing) + 1 - frames
        for gap in missing[:max(0, count)]:
            self._add_inferred(gap)

    def _infer_from_copy(self, before: int, seq: int) -> None:
        gap = seq - 1
        if gap in self._packets or gap in self._times or self._is_signal(gap):
            return
        prev = self._payload(before)
        payload = self._packets.get(seq)
        if prev is not None and payload is not None and carries(payload, prev):
            self._add_inferred(gap)

    def _copy_differs(self, before: int, seq: int) -> bool:
        """True when packet `seq` carries a copy that is not the last frame of `before`:
        proof that `seq - 1` held a frame (equal bytes prove nothing, see `carries`)."""
        prev, payload = self._payload(before), self._packets.get(seq)
        if prev is None or payload is None or frame_count(payload) != 2:
            return False
        got, known = split(payload), split(prev)
        return known is not None and (got[0] != known[0] or got[1][0] != known[1][-1])

    def _payload(self, seq: int) -> bytes | None:
        """A packet held, or the last one played."""
        payload = self._packets.get(seq)
        if payload is None and self._last_played is not None and self._last_played[0] == seq:
            payload = self._last_played[1]
        return payload

    def _add_inferred(self, gap: int) -> None:
        if (self._next is not None and gap < self._next) or self._is_signal(gap):
            return
        bisect.insort(self._signals, gap)
        self.signals_inferred += 1

    def _is_signal(self, seq: int) -> bool:
        i = bisect.bisect_left(self._signals, seq)
        return i < len(self._signals) and self._signals[i] == seq

    def signal_received(self, now: float, seq: int | None = None) -> None:
        """A SIGNAL packet of this stream arrived: its sequence number is not a frame."""
        if seq is None:
            if self._highest is None:
                return
            if self._spread > FRAME / 2:
                self._pending.append(now)  # resolved at playout, see `_resolve`
                return
            seq = self._highest + 1
        if not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ or seq in self._packets:
            return
        if self._next is not None and seq < self._next:
            return
        if not self._is_signal(seq):
            bisect.insort(self._signals, seq)
            self.signal_slots += 1
            if len(self._signals) > self.settings.capacity:
                self._signals_below += 1
                del self._signals[0]

    # -- output -----------------------------------------------------------------------------------

    def pull(self, now: float) -> Playout:
        """What to play for the 20 ms that start at `now`."""
        if self._next is None:
            if not self._packets:
                return _SILENCE
            first = min(self._packets)
            if self._due(now) < self._index(first):
                return _SILENCE  # filling up to the target delay
            self._next = first
        self._skip_signals()
        while self._pending and self._next not in self._packets and self._resolve():
            pass
        position = self._position(now)  # the media index due now, with its fraction
        due = math.floor(position)
        nxt = self._index(self._next)
        behind = due - nxt
        if behind >= 1 and self._next not in self._packets:
            # Behind schedule at a gap: skip missing frames for free, up to the due one or the
            # first frame that is here.
            here = min(self._packets) if self._packets else None
            stop = due if here is None else min(due, self._index(here))
            if stop > nxt:
                self.skipped += stop - nxt
                self._advance_to_index(stop)
                nxt = self._index(self._next)
                behind = due - nxt
        if behind >= 2 and self._next in self._packets:
            self._packets.pop(self._next)
            self.dropped += 1
            self._advance()
            nxt = self._index(self._next)
            behind = due - nxt
        if self._accelerate(position - nxt, now):
            nxt = self._index(self._next)
        early = nxt - position  # frames until the next frame is due (<= 0: it is due)
        if early > 1 or (self._next not in self._packets and (
                early > self.settings.stretch_tolerance
                or (early > self.settings.wait_tolerance
                    and self._following(self._next) not in self._packets))):
            # ahead of schedule: wait (a concealed frame) for the frame, or for the packet
            # that rebuilds it; one that is here already is used now (see `stretch_tolerance`)
            self.stretched += 1
            return self._conceal(None)
        seq = self._next
        payload = self._packets.pop(seq, None)
        self._advance()
        self._count_loss(payload is None)
        if payload is not None:
            self._run = 0
            self.played += 1
            self._size += (len(payload) - self._size) / 32
            self._last_played = (seq, payload)
            return Playout(PLAY, seq, payload)
        following = self._packets.get(self._next)
        if following is not None:
            self._run = 0
            self.fec += 1
            return Playout(FEC, seq, following)
        self.concealed += 1
        return self._conceal(seq)

    def _accelerate(self, over: float, now: float) -> bool:
        """Cut one frame when the buffer has held more than `accelerate_at` frames over the
        target for `accelerate_after` seconds; True when it did.

        A stretch (or a target that shrank) leaves the delay up to a frame over the target,
        and the cuts above (`behind`) only take a whole frame back: a call could play a frame
        later than its target for good (issue 16: 52 ms instead of 32 at 10 % loss). The cut
        prefers a frame that costs least: one that would be concealed anyway (missing, and no
        copy in the next packet) or a quiet one (a small packet); after twice the wait any
        missing frame, after four times any frame."""
        s = self.settings
        if over < s.accelerate_at or self._next is None:
            self._over_since = None
            return False
        if self._over_since is None:
            self._over_since = now
        held = (now - self._over_since) / s.accelerate_after
        if held < 1:
            return False
        payload = self._packets.get(self._next)
        if payload is None:
            if self._following(self._next) in self._packets and held < 2:
                return False
            self.skipped += 1
        else:
            if len(payload) > s.quiet * self._size and held < 4:
                return False
            del self._packets[self._next]
            self.dropped += 1
        self.accelerated += 1
        self._over_since = None
        self._advance()
        return True

    # -- queries ----------------------------------------------------------------------------------

    @property
    def target_delay(self) -> float:
        """Seconds a frame waits behind the fastest recent packet (bounded by the settings)."""
        return self._target

    def due_time(self) -> float | None:
        """When the next frame to play (before playout starts: the first one held) is due:
        the time a pull plays it on schedule. None while nothing is held and nothing played."""
        if self._next is not None:
            seq = self._next
        elif self._packets:
            seq = min(self._packets)
        else:
            return None
        return self._base + self._target + self._index(seq) * FRAME

    @property
    def buffered(self) -> int:
        return len(self._packets)

    @property
    def next_seq(self) -> int | None:
        return self._next

    def stats(self) -> dict[str, float]:
        return {
            "received": self.received, "played": self.played, "late": self.late,
            "duplicate": self.duplicate, "overflow": self.overflow, "skipped": self.skipped,
            "dropped": self.dropped, "expired": self.expired, "stretched": self.stretched,
            "concealed": self.concealed,
            "accelerated": self.accelerated, "fec": self.fec, "signal_slots": self.signal_slots,
            "signals_inferred": self.signals_inferred, "target_delay": self._target,
            "fec_wait": int(self._waiting),
        }

    # -- internals --------------------------------------------------------------------------------

    def _index(self, seq: int) -> int:
        return seq - self._signals_below - bisect.bisect_left(self._signals, seq)

    def _due(self, now: float) -> int:
        return math.floor(self._position(now))

    def _position(self, now: float) -> float:
        return (now - self._base - self._target) / FRAME

    def _following(self, seq: int) -> int:
        """The sequence number of the frame after `seq` (past known SIGNAL slots)."""
        seq += 1
        while self._is_signal(seq):
            seq += 1
        return seq

    def _advance(self) -> None:
        self._next += 1
        self._skip_signals()

    def _skip_signals(self) -> None:
        while self._is_signal(self._next):
            self._next += 1

    def _advance_to_index(self, index: int) -> None:
        """Jump to the frame with media index `index` (in O(SIGNAL slots), however far)."""
        signals = self._signals
        seq = index + self._signals_below
        for signal in signals:  # each SIGNAL slot at or below the frame pushes it one further
            if signal > seq:
                break
            seq += 1
        self._next = min(seq, MAX_SEQ + 1)
        self._skip_signals()
        # frames jumped over are gone: anything still held below is late by now
        for old in [s for s in self._packets if s < self._next]:
            del self._packets[old]
            self.expired += 1

    def _count_loss(self, missing: bool) -> None:
        self._loss += (missing - self._loss) / 32
        s = self.settings
        waiting = self._loss > s.fec_loss or (self._waiting and self._loss > s.fec_loss / 4)
        if waiting != self._waiting and s.fec_wait:
            self._waiting = waiting
            self._set_target(self._spread)

    def _resolve(self) -> bool:
        """Give the oldest SIGNAL notice to the missing next frame if their times match."""
        expected = (self._pending[0] - self._base - self._target / 2) / FRAME  # its index
        index = self._index(self._next)
        tolerance = self._target / FRAME + 1.5
        if expected < index - tolerance:
            self._pending.popleft()
            self.signals_missed += 1
            return True
        if expected > index + tolerance:
            return False
        self._pending.popleft()
        bisect.insort(self._signals, self._next)
        self.signal_slots += 1
        self._skip_signals()
        return True

    def _conceal(self, seq: int | None) -> Playout:
        self._run += 1
        if self._run > self.settings.max_conceal:
            return Playout(SILENCE, seq)
        return Playout(CONCEAL, seq)

    def _update_target(self) -> None:
        self._sorted_at = 0
        window = self._window
        # forget SIGNAL slots below both the window and the next frame (keep the index right)
        floor = min(seq for seq, _ in window)
        if self._next is not None:
            floor = min(floor, self._next)
        cut = bisect.bisect_left(self._signals, floor)
        if cut:
            self._signals_below += cut
            del self._signals[:cut]
        index = self._index
        ds = sorted(t - index(seq) * FRAME for seq, t in window)
        self._base = ds[0]
        self._set_target(ds[min(len(ds) - 1, int(self.settings.quantile * len(ds)))] - ds[0])

    def _set_target(self, spread: float) -> None:
        s = self.settings
        self._spread = spread
        wait = FRAME if self._waiting else 0.0
        self._target = min(s.max_delay, max(s.min_delay, spread + s.margin + wait))
