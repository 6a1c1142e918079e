"""Adaptive bitrate: the sender's encoder settings follow the peer's receiver reports.

A loss-based controller in the manner of WebRTC's (GCC, draft-ietf-rmcat-gcc, section 6):

- loss above `backoff_loss` (10 %): congestion, back off: bitrate *= 1 - loss / 2;
- loss below `increase_loss` (2 %) and jitter below `high_jitter`: probe upwards,
  bitrate *= `increase` (8 % a report, about one a second);
- in between, or with high jitter (queues building up): hold.

Loss also sets the encoder's protection: in-band FEC is on while the smoothed loss is at least
`fec_loss`, and the encoder's expected packet loss (which sizes its FEC) is the smoothed loss in
percent, at least `fec_min_perc`. libopus 1.3 makes FEC data only above a bitrate that grows
with the expected loss (at 20 %: none at 16 kbit/s, some at 20, most at 24), and the FEC data
comes out of the same budget, so while FEC is on the bitrate does not go below `fec_floor`
(32 kbit/s; at 10 % loss benchmarks/media.py measured PESQ 2.06 with a 24 kbit/s floor and
2.23 with 32): random loss is better answered with redundancy than with fewer bits.

Packet-level redundancy (`redundancy`): from `red_loss` (2 %) smoothed loss on, each MEDIA
payload carries the previous frame too (one two-frame Opus packet, see `packet.py`), so a lost
packet costs a frame only when the next one is lost as well (1 % at 10 % random loss instead
of 10 %). The bitrate stays the total budget: the sender gives each frame half of it. While
redundancy is on and the smoothed loss is below `red_max_loss` (15 %) the total does not go
below `red_floor` (64 kbit/s: 32 kbit/s a frame; capped by `max_bitrate`): loss this low is
taken for random loss, which more bits answer; above it the back-off goes on as before (down
to `fec_floor`), in case the loss is congestion. Opus's in-band FEC, a low-bitrate copy of one
frame out of the same budget, is off while redundancy is on (`red_fec`: False); the encoder is
still told the packet loss (`loss_perc`), which makes its frames lean less on the frame before
(at 10 % loss benchmarks/media.py measured PESQ 3.48 that way, 3.35 telling it the frame loss
after redundancy, 1 %, and 2.96 with FEC on as well). Redundancy goes off again when the
smoothed loss falls below `red_off_loss` (1 %).

Before the first report the path is unknown (the first report comes after a second, and at
10 % loss one in ten is lost): with `red_start` the call starts with redundancy on at
`red_floor` in all (each frame at 32 kbit/s, at least the start bitrate), so a call's first
words are protected too; the first report that shows less than `red_off_loss` turns it off
and the bitrate goes on from `start_bitrate` (a clean call spends about one second at twice
the bytes). A report that is lost changes nothing: the sender keeps its last decision.

Decisions use the smoothed loss (`smoothing`: weight of a new report), so one unlucky second
does not halve the bitrate; probing up also needs the newest report below `backoff_loss`.
Everything stays within the user's bounds (`min_bitrate` .. `max_bitrate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .codec import MAX_BITRATE, MIN_BITRATE


@dataclass(frozen=True, slots=True)
class RateSettings:
    min_bitrate: int = 12_000  # bit/s, the user's bounds (within Opus's 6-510 kbit/s)
    max_bitrate: int = 64_000
    start_bitrate: int = 32_000
    backoff_loss: float = 0.10
    increase_loss: float = 0.02
    increase: float = 1.08
    high_jitter: float = 0.030  # seconds
    fec_loss: float = 0.01
    fec_min_perc: int = 10  # expected loss told the encoder while FEC is on (at 5 %: no FEC)
    fec_floor: int = 32_000  # bit/s: the lowest bitrate while FEC is on (capped by max_bitrate)
    max_loss_perc: int = 40  # the encoder's expected loss is capped here
    smoothing: float = 0.5  # weight of a new report in the smoothed loss
    redundancy: bool = True  # previous frame in each packet while the loss is high
    red_loss: float = 0.02  # smoothed loss that turns redundancy on ...
    red_off_loss: float = 0.01  # ... and below which it goes off again
    red_floor: int = 64_000  # bit/s in all (both copies): the lowest total while it is on ...
    red_max_loss: float = 0.15  # ... and the loss stays below this (above: congestion, back off)
    red_fec: bool = False  # in-band FEC as well while redundancy is on
    red_start: bool = True  # redundancy (at its floor) until the first report says otherwise

    def __post_init__(self) -> None:
        bounds = (MIN_BITRATE, self.min_bitrate, self.start_bitrate, self.max_bitrate, MAX_BITRATE)
        if list(bounds) != sorted(bounds):
            raise ValueError(
                f"need {MIN_BITRATE} <= min_bitrate <= start_bitrate <= max_bitrate"
                f" <= {MAX_BITRATE}"
            )
        if not 0 <= self.increase_loss <= self.backoff_loss <= 1 or self.increase < 1:
            raise ValueError("need 0 <= increase_loss <= backoff_loss <= 1 and increase >= 1")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")
        if not 0 <= self.red_off_loss <= self.red_loss <= 1:
            raise ValueError("need 0 <= red_off_loss <= red_loss <= 1")


@dataclass(frozen=True, slots=True)
class RateDecision:
    bitrate: int  # bit/s, in all: with redundancy each frame gets half
    fec: bool
    loss_perc: int  # 0..100, the encoder's expected packet loss
    redundancy: bool = False  # each packet carries the previous frame as well


class RateController:
    __slots__ = ("settings", "bitrate", "loss", "jitter", "reports", "last_report", "redundant")

    def __init__(self, settings: RateSettings | None = None):
        self.settings = settings or RateSettings()
        self.bitrate = float(self.settings.start_bitrate)
        self.loss = 0.0  # smoothed fraction lost
        self.jitter = 0.0
        self.reports = 0
        self.last_report: float | None = None
        self.redundant = self.settings.redundancy and self.settings.red_start

    def decision(self) -> RateDecision:
        s = self.settings
        fec = self.loss >= s.fec_loss and (s.red_fec or not self.redundant)
        perc = min(s.max_loss_perc, round(self.loss * 100))
        if fec:
            perc = max(perc, min(s.max_loss_perc, s.fec_min_perc))
        bitrate = self.bitrate
        if self.redundant and not self.reports:  # the path is not known yet: each frame keeps
            bitrate = max(bitrate, min(s.red_floor, s.max_bitrate))  # its start bitrate or more
        return RateDecision(int(bitrate), fec, perc, self.redundant)

    def on_report(self, fraction_lost: float, jitter: float, now: float) -> RateDecision:
        """One receiver report from the peer; bad values are clamped, never raised."""
        s = self.settings
        loss = _finite(fraction_lost, 0.0, 1.0)
        jitter = _finite(jitter, 0.0, 10.0)
        self.loss = loss if self.reports == 0 else self.loss + s.smoothing * (loss - self.loss)
        self.jitter = jitter
        self.reports += 1
        self.last_report = now
        smoothed = self.loss  # one noisy report does not move the bitrate on its own
        if smoothed > s.backoff_loss:
            self.bitrate *= 1 - smoothed / 2
        elif smoothed < s.increase_loss and loss < s.backoff_loss and jitter < s.high_jitter:
            self.bitrate *= s.increase
        if s.redundancy:
            if self.loss >= s.red_loss:
                self.redundant = True
            elif self.loss < s.red_off_loss:
                self.redundant = False
        floor = s.min_bitrate
        if self.loss >= s.fec_loss:
            floor = max(floor, min(s.fec_floor, s.max_bitrate))
        if self.redundant and self.loss < s.red_max_loss:
            floor = max(floor, min(s.red_floor, s.max_bitrate))
        self.bitrate = min(s.max_bitrate, max(floor, self.bitrate))
        return self.decision()


def _finite(value: float, low: float, high: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return low
    if math.isnan(value):
        return low
    return min(high, max(low, value))
