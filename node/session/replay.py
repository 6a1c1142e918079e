"""A sliding replay window over 32-bit sequence numbers (RFC 4303 style, as a Python int).

Bit i of `bits` is set when sequence `highest - i` has been accepted. `check` never changes
anything, so a packet is checked, then authenticated, then `commit`ted.
"""

from __future__ import annotations

OK = None
DUPLICATE = "duplicate"
TOO_OLD = "too_old"


class ReplayWindow:
    __slots__ = ("size", "highest", "bits", "_mask")

    def __init__(self, size: int = 1024):
        if size < 1:
            raise ValueError("window size must be positive")
        self.size = size
        self.highest = -1  # nothing accepted yet
        self.bits = 0
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> str | None:
        """None if `seq` may be accepted, else DUPLICATE or TOO_OLD."""
        behind = self.highest - seq
        if behind < 0:
            return OK
        if behind >= self.size:
            return TOO_OLD
        return DUPLICATE if (self.bits >> behind) & 1 else OK

    def commit(self, seq: int) -> bool:
        """Mark `seq` accepted (it must have passed `check`); True if it came out of order."""
        behind = self.highest - seq
        if behind < 0:
            shift = -behind  # up to 2^32: never shift by more than the window
            self.bits = 1 if shift >= self.size else ((self.bits << shift) | 1) & self._mask
            self.highest = seq
            return False
        self.bits |= 1 << behind
        return True
