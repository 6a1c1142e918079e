"""Churn: nodes leave without notice and come back later, on measured session-time distributions.

Each churning node alternates between an online session and an offline period, whose lengths are
drawn from distributions:

- `Exponential(mean)`: the memoryless model of early DHT simulations (constant leave rate).
- `Weibull(shape, scale)`: what measurements of deployed systems found. Stutzbach & Rejaie,
  "Understanding Churn in Peer-to-Peer Networks", ACM IMC 2006, measured Gnutella, BitTorrent
  and Kad: session lengths are not exponential but heavy-tailed, fitted by Weibull laws with
  shape well below 1 (most sessions last minutes, a few last days), and the three systems'
  dynamics are "surprisingly similar". Their BitTorrent fits (scale in minutes): Debian
  shape 0.38 / scale 42.4, Red Hat 0.34 / 21.3, FlatOut 0.59 / 41.9. Steiner, En-Najjary and
  Biersack, "A Global View of KAD", ACM IMC 2007, report similarly heavy-tailed sessions in Kad.
  `KAD_LIKE` is the Debian fit (0.38, 42.4 min), the default of the lookup study's Weibull churn.

Scheduling: one heap for all churning nodes and one SimPy process walking it (no process or
event per node). A node has exactly one pending transition at any time. Heap entries are plain
ints, (time in microseconds << 24) | address, 36 bytes or so each; exact times live in a flat
array (8 bytes a node). All of it exists only when churn is switched on.

The start is in equilibrium (no warm-up transient of everyone arriving at once): a node is online
with probability E[session] / (E[session] + E[offline]); its first transition comes after the
*residual* time of its current period, i.e. a length-biased draw times a uniform (the
forward-recurrence time of a renewal process). For a Weibull(k, lam) period the length-biased
law is lam * G^(1/k) with G ~ Gamma(1 + 1/k); for the exponential it is the exponential itself.

What leaving and coming back mean is up to the caller (`on_leave`, `on_return`): the lookup
study takes the node off its address silently (`SimDriver.place(addr, None)`) and brings back a
fresh node with the same ID at the same address, which rejoins by protocol.
"""

from __future__ import annotations

import heapq
import math
from array import array
from random import Random
from typing import Callable, Iterable

import simpy

_ADDR_BITS = 24
_ADDR_MASK = (1 << _ADDR_BITS) - 1
_TICKS = 1_000_000  # heap keys order times to the microsecond


class Exponential:
    """Period lengths with mean `mean` seconds and a constant leave rate."""

    __slots__ = ("mean_s",)

    def __init__(self, mean: float):
        if mean <= 0:
            raise ValueError("the mean period must be positive")
        self.mean_s = mean

    @property
    def mean(self) -> float:
        return self.mean_s

    def median(self) -> float:
        return self.mean_s * math.log(2)

    def sample(self, rng: Random) -> float:
        return rng.expovariate(1.0 / self.mean_s)

    def residual(self, rng: Random) -> float:
        return rng.expovariate(1.0 / self.mean_s)  # memoryless

    def __repr__(self) -> str:
        return f"Exponential(mean={self.mean_s:g})"


class Weibull:
    """Period lengths with P(T > t) = exp(-(t / scale) ** shape); shape < 1 is heavy-tailed,
    shape 1 is the exponential with mean `scale`."""

    __slots__ = ("shape", "scale")

    def __init__(self, shape: float, scale: float):
        if shape <= 0 or scale <= 0:
            raise ValueError("Weibull shape and scale must be positive")
        self.shape = shape
        self.scale = scale

    @property
    def mean(self) -> float:
        return self.scale * math.gamma(1.0 + 1.0 / self.shape)

    def median(self) -> float:
        return self.scale * math.log(2) ** (1.0 / self.shape)

    def sample(self, rng: Random) -> float:
        return rng.weibullvariate(self.scale, self.shape)

    def residual(self, rng: Random) -> float:
        inverse = 1.0 / self.shape
        return self.scale * rng.gammavariate(1.0 + inverse, 1.0) ** inverse * rng.random()

    def __repr__(self) -> str:
        return f"Weibull(shape={self.shape:g}, scale={self.scale:g})"


KAD_LIKE = Weibull(0.38, 42.4 * 60)  # Stutzbach & Rejaie 2006, BitTorrent (Debian) session fit


def distribution(kind: str, scale: float, shape: float = 1.0) -> Exponential | Weibull:
    """'exponential' (scale = mean) or 'weibull' (shape, scale)."""
    if kind == "exponential":
        return Exponential(scale)
    if kind == "weibull":
        return Weibull(shape, scale)
    raise ValueError("churn distribution must be 'exponential' or 'weibull'")


class Churn:
    """Drives the sessions of `addrs` (default: all `nodes` addresses) from `start` on.

    `online[addr]` tells whether a node is in a session now (addresses that do not churn stay 1).
    `on_leave(addr)` and `on_return(addr)` are called at each transition; the initially offline
    nodes' `on_leave` is called at `start`.
    """

    def __init__(
        self,
        env: simpy.Environment,
        nodes: int,
        session: Exponential | Weibull,
        offline: Exponential | Weibull,
        rng: Random,
        on_leave: Callable[[int], None],
        on_return: Callable[[int], None],
        start: float | None = None,
        addrs: Iterable[int] | None = None,
    ):
        if nodes > _ADDR_MASK + 1:
            raise ValueError(f"churn handles at most {_ADDR_MASK + 1} addresses")
        self.env = env
        self.session = session
        self.offline = offline
        self.rng = rng
        self.on_leave = on_leave
        self.on_return = on_return
        self.online = bytearray(b"\x01") * nodes
        self.next_at = array("d", bytes(8 * nodes))  # time of each churning node's next transition
        self.departures = 0
        self.returns = 0
        self._heap: list[int] = []
        self._addrs = range(nodes) if addrs is None else addrs
        self.start = env.now if start is None else start
        env.process(self._run())

    @property
    def availability(self) -> float:
        """Long-run share of time a node is online."""
        up, down = self.session.mean, self.offline.mean
        return up / (up + down)

    def pending(self) -> int:
        """Transitions waiting in the heap: one per churning node."""
        return len(self._heap)

    def _push(self, addr: int, when: float) -> None:
        self.next_at[addr] = when
        heapq.heappush(self._heap, int(when * _TICKS) << _ADDR_BITS | addr)

    def _begin(self) -> None:
        rng = self.rng
        now = self.env.now
        p_online = self.availability
        for addr in self._addrs:
            if rng.random() < p_online:
                self._push(addr, now + self.session.residual(rng))
            else:
                self.online[addr] = 0
                self.departures += 1
                self.on_leave(addr)
                self._push(addr, now + self.offline.residual(rng))

    def _run(self):
        env = self.env
        if self.start > env.now:
            yield env.timeout(self.start - env.now)
        self._begin()
        yield from self._loop(resumed=False)

    def _loop(self, resumed: bool):
        """The transitions, in time order. `resumed`: enter right after the wait for the head's
        time (experiments/checkpoint.py restarts a saved run's churn here: a generator cannot
        be pickled, and everything this loop keeps is in `self`)."""
        env = self.env
        heap = self._heap
        next_at = self.next_at
        online = self.online
        rng = self.rng
        while heap:
            addr = heap[0] & _ADDR_MASK
            if not resumed:
                when = next_at[addr]
                if when > env.now:
                    yield env.timeout(when - env.now)  # only this process pushes: the head stays
            resumed = False
            heapq.heappop(heap)
            now = env.now
            if online[addr]:
                online[addr] = 0
                self.departures += 1
                self._push(addr, now + self.offline.sample(rng))
                self.on_leave(addr)
            else:
                online[addr] = 1
                self.returns += 1
                self._push(addr, now + self.session.sample(rng))
                self.on_return(addr)


class IndexedSet:
    """A set of addresses with O(1) add, remove, membership and uniform random choice
    (two flat int arrays; for choosing lookup sources, targets and bootstraps among the
    nodes online now)."""

    __slots__ = ("_members", "_pos")

    def __init__(self, capacity: int, members: Iterable[int] = ()):
        self._members = array("i")
        self._pos = array("i", [-1]) * capacity
        for addr in members:
            self.add(addr)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, addr: int) -> bool:
        return self._pos[addr] >= 0

    def __iter__(self):
        return iter(self._members)

    def add(self, addr: int) -> None:
        if self._pos[addr] < 0:
            self._pos[addr] = len(self._members)
            self._members.append(addr)

    def discard(self, addr: int) -> None:
        index = self._pos[addr]
        if index < 0:
            return
        last = self._members.pop()
        if last != addr:
            self._members[index] = last
            self._pos[last] = index
        self._pos[addr] = -1

    def choice(self, rng: Random, exclude: int = -1) -> int:
        """A uniformly random member other than `exclude`, or -1 if there is none."""
        members = self._members
        size = len(members) - (exclude >= 0 and self._pos[exclude] >= 0)
        if size <= 0:
            return -1
        pick = members[rng.randrange(size)]
        if pick == exclude:  # then exclude is not last, and the last (never drawn) stands in
            pick = members[-1]
        return pick
