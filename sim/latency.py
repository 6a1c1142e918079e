"""Latency models for the simulated network: one-way delay in seconds between two addresses."""

from __future__ import annotations

import math
from array import array
from random import Random


class ConstantLatency:
    """Every datagram takes the same time (the model of unit tests)."""

    def __init__(self, one_way: float = 0.05):
        self.one_way = one_way

    def add_node(self, rng: Random) -> None:  # nothing per node
        pass

    def delay(self, src: int, dst: int) -> float:
        return self.one_way


class CoordinateLatency:
    """Nodes on a unit square, each with an access-link delay.

    one-way delay = access[src] + access[dst] + distance * span. Defaults give a median RTT of
    about 100 ms between random pairs (median distance ~0.51, mean access delay 5 ms).
    Coordinates live in flat arrays: 24 bytes a node.
    """

    def __init__(self, span: float = 0.080, access_mean: float = 0.005):
        self.span = span
        self.access_mean = access_mean
        self._x = array("d")
        self._y = array("d")
        self._access = array("d")

    def add_node(self, rng: Random) -> None:
        self._x.append(rng.random())
        self._y.append(rng.random())
        self._access.append(rng.expovariate(1.0 / self.access_mean))

    def delay(self, src: int, dst: int) -> float:
        x, y = self._x, self._y
        return (
            self._access[src]
            + self._access[dst]
            + math.hypot(x[src] - x[dst], y[src] - y[dst]) * self.span
        )


MODELS = {"constant": ConstantLatency, "coordinate": CoordinateLatency}
