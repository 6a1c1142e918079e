"""The surface every protocol layer and the whole `Node` offer, and what a layer may ask of the
contact registry: `typing.Protocol`s, so the simulator's and the daemon's drivers (and tests)
depend on one written contract rather than on one class.

The surface is aioquic's `QuicConnection`: datagrams in with `now`; datagrams and events out;
one timer (`get_timer` -> the earliest deadline, `handle_timer(now)` does what is due). Drivers
first send what `datagrams_to_send` returns and re-arm the timer, then hand out events (see
kadtalk.transport.udp). Events are frozen dataclasses (as h11's) deriving from one base class per
layer (RoutingEvent, SessionEvent, TraversalEvent), all from `Event`, so consumers dispatch on
types. `stats` holds a layer's dropped datagrams by reason (None while nothing was dropped: a
million routing-only simulated nodes allocate no counter).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable


class Event:
    """Base of every event a layer reports through `next_event()`."""

    __slots__ = ()


@runtime_checkable
class Layer(Protocol):
    """A sans-I/O protocol layer (or the stack of them: `Node`)."""

    stats: collections.Counter[str] | None  # datagrams dropped, by reason

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...

    def next_event(self) -> Event | None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@runtime_checkable
class Registry(Protocol):
    """Handles for (node ID, address) pairs, as the routing layer uses them.

    `ids[h]` and `addrs[h]` are the pair behind handle `h` (tables and lookups hold handles only);
    `retain` lets a registry that `recycles` handles forget unreferenced ones; the routing layer
    calls it only then (the simulator's shared registry, where every honest node owns its handle
    for good, never recycles: its `retain` frees nothing). A registry that never recycles is a
    `SharedAnswers` too (it gives `answer_format`). A real node's is node/routing/contacts.py's
    ContactRegistry; the simulator's, sim/registry.py's SharedRegistry (and sim/dualstack.py's).
    """

    ids: Sequence[int]
    addrs: Sequence[Any]
    recycles: bool

    def intern(self, node_id: int, addr: Any) -> int: ...

    def handles_at(self, addr: Any) -> Sequence[int]: ...

    def retain(self, live: Iterable[int]) -> int: ...

    def subnet(self, addr: Any) -> Any: ...

    def addr_to_wire(self, addr: Any) -> bytes | None: ...  # None: no wire form (not sent)

    def addr_from_wire(self, data: bytes) -> Any | None: ...

    def __len__(self) -> int: ...


# An answer's format for messages.encode_handles: the header up to the target (type and
# responder), the entries' address codec, and handle -> that handle's entry bytes, kept.
AnswerFormat = tuple[bytes, Callable[[Any], bytes | None], dict[int, bytes]]


@runtime_checkable
class SharedAnswers(Registry, Protocol):
    """A registry that never recycles handles (`recycles` False: a handle names one contact for
    good), so the answers' entry bytes can be kept once for every routing layer sharing it: the
    routing layer asks it for `answer_format(responder, ipv6)`, the format of `responder`'s
    ROUTE_RES (ROUTE6_RES if `ipv6`), instead of keeping its own per-node cache (which a
    recycling registry needs: its handles change contacts)."""

    def answer_format(self, responder: int, ipv6: bool) -> AnswerFormat: ...


@runtime_checkable
class ContactView(Protocol):
    """What NAT traversal may ask of the routing table (given at construction, not per datagram)."""

    def address_of(self, node_id: int) -> Any | None:
        """Where the table holds `node_id`, or None."""
        ...

    def is_contact(self, addr: Any) -> bool:
        """Whether `addr` is a table entry's address (one that has answered us)."""
        ...

    def rendezvous(self, target: int, count: int = 3) -> list[Any]:
        """The addresses of the `count` table entries nearest `target` (not `target` itself)."""
        ...

    def round_trip(self, addr: Any, rtt: float) -> None:
        """The peer at `addr` answered us after `rtt` seconds (lookups learn their slow time)."""
        ...

    def addr_to_wire(self, addr: Any) -> bytes: ...

    def addr_from_wire(self, data: bytes) -> Any | None: ...


__all__ = ["AnswerFormat", "ContactView", "Event", "Layer", "Registry", "SharedAnswers"]
