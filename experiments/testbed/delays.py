"""One-way delays between sites (applied by the relay, see relay.py) and loss at the core.

A delay model has `matrix(sites)`: sites x sites one-way delays in seconds. Loss is an
``iptables -m statistic --mode random`` DROP in the core's FORWARD chain, i.e. per datagram
crossing the core (before the relay).
"""

from __future__ import annotations

from random import Random
from typing import Any, Callable, Sequence


class CoordinateDelays:
    """One-way delays between sites from the simulator's CoordinateLatency model: site i is the
    model's node i, placed with `Random(seed)`; the same seed gives the same delays."""

    def __init__(self, seed: int = 1, **model_args: Any):
        self.seed = seed
        self.model_args = model_args

    def matrix(self, sites: int) -> list[list[float]]:
        from kadtalk.sim.latency import CoordinateLatency

        model = CoordinateLatency(**self.model_args)
        rng = Random(self.seed)
        for _ in range(sites):
            model.add_node(rng)
        return [[0.0 if i == j else model.delay(i, j) for j in range(sites)] for i in range(sites)]


class ConstantDelays:
    def __init__(self, one_way: float):
        self.one_way = one_way

    def matrix(self, sites: int) -> list[list[float]]:
        return [[0.0 if i == j else self.one_way for j in range(sites)] for i in range(sites)]


class MatrixDelays:
    """An explicit sites x sites matrix of one-way delays in seconds (the diagonal is unused)."""

    def __init__(self, matrix: Sequence[Sequence[float]]):
        self._matrix = [list(map(float, row)) for row in matrix]

    def matrix(self, sites: int) -> list[list[float]]:
        if len(self._matrix) < sites or any(len(row) < sites for row in self._matrix):
            raise ValueError(f"the delay matrix is smaller than the testbed's {sites} sites")
        return [row[:sites] for row in self._matrix[:sites]]


def delay_model(spec: Any) -> Any:
    """A delay model from a model, a constant one-way delay in seconds, or None (no delay)."""
    if spec is None or hasattr(spec, "matrix"):
        return spec
    if isinstance(spec, (int, float)):
        return ConstantDelays(float(spec)) if spec > 0 else None
    raise TypeError("delay must be a number (one-way seconds) or a delay model")


def pair_table(delays: list[list[float]],
               addresses: Callable[[int], Sequence[str]]) -> dict[str, float]:
    """The relay's table: {"SRC DST": seconds} for every pair of addresses of one family
    (IPv4 or IPv6) at distinct sites; `addresses(site)` lists a site's addresses."""
    sites = range(len(delays))
    return {f"{a} {b}": delays[i][j] for i in sites for j in sites if i != j
            for a in addresses(i) for b in addresses(j) if (":" in a) == (":" in b)}


def loss_rule(loss: float, tool: str = "iptables", action: str = "-A") -> list[str]:
    """The command line (core namespace; `tool` iptables or ip6tables) that drops each
    forwarded datagram with probability `loss` (`action` "-D" removes that rule, "-I" puts
    it first)."""
    return [tool, action, "FORWARD", *(["1"] if action == "-I" else []),
            "-m", "statistic", "--mode", "random",
            "--probability", f"{loss:.6f}", "-j", "DROP"]
