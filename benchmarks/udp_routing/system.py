"""The interface every compared system provides: one adapter module per system, named
`<name>_adapter` (`adapter(name)` imports it), so that the parts of the benchmark, the load
generator and the report never name a system's classes.

A module satisfies `System` with module-level functions. A server or a swarm runs in a child
process (`processes`) and returns a `Running`; a lookup client runs in the benchmark's process.
Adapters import their system lazily, inside the functions, so that a missing baseline is
reported by `check()` with a message rather than by an ImportError at start.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from benchmarks.udp_routing.load import LoadSpec

Address = tuple[str, int]
Contacts = list[tuple[int, Address]]  # (node ID, address)


@dataclass
class Running:
    """A server or swarm started in a child process: what it reports when ready, and how to end
    it (`stop` closes it and returns its final report)."""

    info: dict[str, Any]
    stop: Callable[[], dict[str, Any]]


@runtime_checkable
class Client(Protocol):
    """A fresh node in the benchmark's process that joins a swarm, then looks up its nodes."""

    table: int  # contacts in its table once joined

    async def join(self, bootstrap: Address) -> None:
        """Join through `bootstrap`; raise RuntimeError if the table stays empty."""

    async def lookup(self, target: int, mode: str) -> tuple[int, bool, int]:
        """One lookup of `target`: (find-node requests sent, success, timeouts)."""

    def close(self) -> None: ...


@runtime_checkable
class System(Protocol):
    """What an adapter module provides (k, α and the host come from `config`); `isinstance`
    checks that every member is there."""

    LOOKUP_MODES: dict[str, int]  # lookup mode -> clients per repetition in part (b)

    def check(self) -> None:
        """Exit with a message if the system is not installed as the benchmark expects."""

    def version(self) -> str: ...

    async def start_server(self, port: int, contacts: Contacts, limits: bool) -> Running:
        """One node on `port` with `contacts` in its table; info: {"table": contacts held}.
        `limits` False: flood and amplification limits lifted, where the system has them."""

    def limits_allow(self, sources: int) -> float:
        """Requests a second the default limits answer from `sources` busy sources (inf:
        no limits)."""

    async def start_swarm(self, port_base: int, nodes: int) -> Running:
        """`nodes` joined nodes on consecutive ports from `port_base`; info: {"members":
        [(node ID, address)], "table_mean": mean contacts per table}."""

    def load_spec(self, rng: random.Random, origins: list[int]) -> LoadSpec:
        """The find-node requests of the load generator, from the sender IDs `origins`."""

    async def start_client(self) -> Client:
        """A client node, bound but not joined."""


def adapter(name: str) -> System:
    """The adapter module of system `name`."""
    module: Any = importlib.import_module(f"benchmarks.udp_routing.{name}_adapter")
    return module
