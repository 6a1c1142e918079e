"""When to pull the jitter buffer: one pull per 20 ms frame, phased to packet arrival, sans-I/O.

A driver that pulls on its capture clock makes every frame wait for that clock's next tick:
when both ends' 20 ms clocks run in step (a call's two tickers start within a round trip of
each other), a frame arrives just after the receiver's tick and waits about 19 ms for the next
one. This clock instead starts playout at the moment the first frame is due (the jitter
buffer's `due_time`: the fastest packet's transit plus the target delay) and then pulls every
20 ms from there, so each frame is played as soon as the buffer's own target lets it.

The phase is chosen once, when playout starts: a playback device is started by its first
write and then runs on its own clock, so a later phase change could only be made by inserting
or dropping samples. Changes of the target delay afterwards move playout by whole frames, as
the jitter buffer already does (stretch, skip). The driver writes nothing before the first
pull, so the device starts in that phase.

A driver held up for more than `max_late` pulls (a stalled event loop) starts a new grid at
`now` rather than bursting out the pulls it missed (`regrids` counts it). The pulls it does
catch up are made at their own slot times (`slot`): pulled at the late `now`, the jitter
buffer would find itself frames behind and drop frames that are here to cut a delay that is
only the driver's (issue 16: frames dropped around this host's ~100 ms freezes on a clean
path, benchmarks/first_second.py).
"""

from __future__ import annotations

from .jitter import FRAME, JitterBuffer

GUARD = 0.0005  # seconds after the due time: the pull must not land a rounding error before it


class PlayoutClock:
    """The times of one call's playout pulls."""

    __slots__ = ("guard", "max_late", "_next_at", "started_at", "pulls", "regrids")

    def __init__(self, guard: float = GUARD, max_late: int = 5):
        self.guard = guard
        self.max_late = max_late
        self._next_at: float | None = None
        self.started_at: float | None = None  # the first pull's time
        self.pulls = 0
        self.regrids = 0

    def next_pull(self, buffer: JitterBuffer, now: float) -> float | None:
        """The time of the next pull (maybe <= now: pull at once); None while the buffer has
        nothing to play yet (no pull, no device write)."""
        if self._next_at is None:
            due = buffer.due_time()
            if due is None:
                return None
            return max(due + self.guard, now)
        return self._next_at

    def slot(self, now: float) -> float:
        """The time a pull made at `now` stands for: its slot on the grid when the driver is
        late for it (up to `max_late` frames), else `now`."""
        at = self._next_at
        if at is None or not at <= now <= at + self.max_late * FRAME:
            return now
        return at

    def pulled(self, now: float) -> None:
        """A pull happened at `now`; the next one is a frame after its slot."""
        if self._next_at is None:
            self.started_at = now
            self._next_at = now
        self.pulls += 1
        self._next_at += FRAME
        if self._next_at < now - self.max_late * FRAME:
            self.regrids += 1
            self._next_at = now + FRAME

    def stats(self) -> dict[str, float]:
        return {"playout_pulls": self.pulls, "playout_regrids": self.regrids}
