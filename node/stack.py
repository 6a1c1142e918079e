"""The `Node`: the protocol layers stacked behind one UDP socket, demultiplexed on the first byte.

Today the stack is the routing layer (0x00, 0x01); the session (0x02-0x05) plugs in beside it.
The surface is the design's: datagrams and time in, datagrams and events out, one timer.
"""

from __future__ import annotations

import collections
from random import Random
from typing import Any, Iterable

from .routing.layer import RoutingLayer, RoutingSettings
from .routing.messages import ROUTE_RES


class Node:
    __slots__ = ("node_id", "routing", "stats")

    def __init__(
        self,
        node_id: int,
        registry: Any,
        rng: Random,
        settings: RoutingSettings | None = None,
        now: float = 0.0,
    ):
        self.node_id = node_id
        self.routing = RoutingLayer(node_id, registry, rng, settings, now)
        self.stats: collections.Counter[str] | None = None

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if data and data[0] <= ROUTE_RES:
            self.routing.receive_datagram(data, addr, now)
        else:
            if self.stats is None:
                self.stats = collections.Counter()
            self.stats["unknown_type" if data else "empty"] += 1

    def receive_message(self, msg: Any, addr: Any, now: float) -> None:
        """Simulator fast path: a decoded message object instead of bytes."""
        self.routing.receive_message(msg, addr, now)

    def handle_timer(self, now: float) -> None:
        self.routing.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.routing.get_timer()

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        return self.routing.datagrams_to_send(now)

    def messages_to_send(self, now: float) -> list[tuple[Any, Any]]:
        return self.routing.messages_to_send(now)

    def next_event(self) -> Any:
        return self.routing.next_event()

    # commands
    def find_peer(self, target: int, now: float) -> int:
        return self.routing.find_peer(target, now)

    def find_closest(self, target: int, now: float) -> int:
        return self.routing.find_closest(target, now)

    def join(self, bootstrap: Iterable[Any], now: float) -> int:
        return self.routing.join(bootstrap, now)

    def add_contact(self, node_id: int, addr: Any, now: float) -> bool:
        return self.routing.add_contact(node_id, addr, now)

    def drop_counts(self) -> collections.Counter[str]:
        """Every datagram dropped so far, by reason."""
        total = collections.Counter(self.stats or {})
        total.update(self.routing.stats or {})
        return total
