"""The relay layer's events (frozen dataclasses on one base, as every layer's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..layer import Event


@dataclass(frozen=True, slots=True)
class RelayPath:
    """A relayed address: the relay's address and an allocation on it. A session sends to it as
    to any peer address; the node wraps the datagram in DATA for the relay."""

    relay: Any
    allocation: bytes

    def __repr__(self) -> str:
        return f"RelayPath({self.relay!r}, {self.allocation.hex()})"


class RelayEvent(Event):
    """Base of the relay layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AllocationGranted(RelayEvent):
    """The relay holds an allocation for us: peers reach us at `path`; the relay sees us at
    `reflexive` (the address our peer must permit to use its own allocation there)."""

    path: RelayPath
    reflexive: Any
    lifetime: int
    at: float


@dataclass(frozen=True, slots=True)
class AllocationFailed(RelayEvent):
    """No allocation: `reason` is an ERROR code's name, or `timeout`."""

    relay: Any
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class AllocationExpired(RelayEvent):
    """An allocation we held is gone: `released`, `refresh_failed` (no answer), `expired`."""

    path: RelayPath
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class PermissionGranted(RelayEvent):
    path: RelayPath
    peer: Any
    at: float


@dataclass(frozen=True, slots=True)
class PermissionRefused(RelayEvent):
    """`reason`: forbidden_peer (the relay refuses the address) or timeout."""

    path: RelayPath
    peer: Any
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Knocked(RelayEvent):
    """Someone asks to be the peer of our allocation `path`: the relay sees it at `peer`."""

    path: RelayPath
    peer: Any
    at: float


@dataclass(frozen=True, slots=True)
class RelayedData(RelayEvent):
    """A payload that came through `path` (when no deliver callback takes it)."""

    path: RelayPath
    payload: bytes
    at: float


@dataclass(frozen=True, slots=True)
class RelayLost(RelayEvent):
    """Call `session_id`, relayed through `path`, heard nothing for a while: its relay is
    probably gone. `recovering`: another relay of ours was offered to the peer; if not (or if
    that fails too) the session ends as peer_vanished."""

    session_id: int
    path: RelayPath
    recovering: bool
    at: float
