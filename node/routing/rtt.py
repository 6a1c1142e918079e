"""Round-trip estimates per contact address: RFC 6298's smoothed RTT and its variation.

Why per address: a round trip is a property of the path to a socket, not of the ID claimed
there, and an address survives the registry's recycling of handles. Why: a lookup may prefer,
among contacts equally near its target, the one that answers soonest, and give a request's slot
away once that contact is late by its own measure rather than by the node's average (Jimenez,
Osmani and Knutsson, "Sub-second lookups on a large-scale Kademlia-based overlay", 2011).

Bounded: at most `limit` addresses, the one measured longest ago forgotten first, so answers
from ever new addresses cannot grow it. Made by the routing layer on its first sample.
"""

from __future__ import annotations

from typing import Any

LIMIT = 2048  # addresses remembered: a table's ~330 entries at 10^6 peers, and its lookups'


def smoothed(estimate: tuple[float, float] | None, rtt: float) -> tuple[float, float]:
    """RFC 6298 (section 2): (srtt, rttvar) after one more sample `rtt`."""
    if estimate is None:
        return rtt, rtt / 2
    srtt, rttvar = estimate
    return srtt + 0.125 * (rtt - srtt), 0.75 * rttvar + 0.25 * abs(srtt - rtt)


class RttEstimates:
    """(srtt, rttvar) by address, the most recently measured last."""

    __slots__ = ("limit", "_by_addr")

    def __init__(self, limit: int = LIMIT):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._by_addr: dict[Any, tuple[float, float]] = {}

    def observe(self, addr: Any, rtt: float) -> None:
        """`addr` answered after `rtt` seconds."""
        by_addr = self._by_addr
        estimate = by_addr.pop(addr, None)  # re-inserted below: measured last
        if estimate is None and len(by_addr) >= self.limit:
            del by_addr[next(iter(by_addr))]
        by_addr[addr] = smoothed(estimate, rtt)

    def get(self, addr: Any) -> tuple[float, float] | None:
        """(srtt, rttvar) of `addr`, None if it never answered (or was forgotten)."""
        return self._by_addr.get(addr)

    def srtt(self, addr: Any) -> float | None:
        estimate = self._by_addr.get(addr)
        return None if estimate is None else estimate[0]

    def __len__(self) -> int:
        return len(self._by_addr)

    def __contains__(self, addr: Any) -> bool:
        return addr in self._by_addr
