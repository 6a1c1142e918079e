"""Events the routing layer reports through `next_event()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..layer import Event
from .lookup import Mode


class RoutingEvent(Event):
    """Base of the routing layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class LookupCompleted(RoutingEvent):
    """A lookup asked for with `find_peer` or `find_closest` ended."""

    lookup_id: int
    target: int
    mode: Mode
    peer: tuple[int, Any] | None  # FIND_PEER: the target's (id, address) when found
    # FIND_CLOSEST: the k closest that answered. FIND_PEER: the k nearest the target (itself
    # left out) not known dead, answered or only learned: the target's neighbours, which a
    # call asks to forward its hole punch (kadtalk.node.traversal)
    closest: tuple[tuple[int, Any], ...]
    started: float
    finished: float
    rpcs: int
    timeouts: int
    hops: int
    rejected: int = 0  # fake target entries the lookup's `verify` turned down

    @property
    def success(self) -> bool:
        return self.peer is not None if self.mode is Mode.FIND_PEER else bool(self.closest)

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True, slots=True)
class Joined(RoutingEvent):
    """The join lookup (of our own ID through the bootstrap contacts) ended."""

    finished: float
    table_size: int
    rpcs: int
    timeouts: int
    lookup_id: int = -1  # the id `join` returned, so that concurrent joins each get their result

    @property
    def success(self) -> bool:
        return self.table_size > 0
