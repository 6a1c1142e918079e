"""Workloads: random pairs of nodes at Poisson times.

The draws are made in one fixed order from the generator the caller passes (for each arrival:
source, target, then the gap to the next), so a study's seed reproduces its workload, and the
testbed comparison (experiments/testbed_study.py) can draw the very lookups a simulated study
makes without running it.
"""

from __future__ import annotations

from random import Random
from typing import NamedTuple


class Arrival(NamedTuple):
    when: float  # simulated seconds
    source: int  # address of the node that looks up / calls
    target: int  # address of the node looked up / called (never the source)


def poisson_pairs(rng: Random, nodes: int, count: int, start: float, rate: float) -> list[Arrival]:
    """`count` (when, source, target) arrivals from `start` at `rate` a second, with source and
    target distinct and uniform over `nodes` addresses."""
    if nodes < 2:
        raise ValueError("pairs need at least 2 nodes")
    if count and not rate > 0:
        raise ValueError("the arrival rate must be positive")
    arrivals = []
    when = start
    for _ in range(count):
        source = rng.randrange(nodes)
        target = rng.randrange(nodes - 1)
        target += target >= source
        arrivals.append(Arrival(when, source, target))
        when += rng.expovariate(rate)
    return arrivals


def poisson_pairs_until(rng: Random, nodes: int, start: float, end: float,
                        rate: float) -> list[Arrival]:
    """Arrivals as `poisson_pairs` draws them, from `start` while before `end` (a study of a
    time span rather than of a count)."""
    if nodes < 2:
        raise ValueError("pairs need at least 2 nodes")
    if not rate > 0:
        raise ValueError("the arrival rate must be positive")
    arrivals = []
    when = start
    while when < end:
        source = rng.randrange(nodes)
        target = rng.randrange(nodes - 1)
        target += target >= source
        arrivals.append(Arrival(when, source, target))
        when += rng.expovariate(rate)
    return arrivals
