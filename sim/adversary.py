"""Adversaries for the simulator: peers that lie, driven by the same SimDriver as honest nodes.

Each adversary has the driver's node surface (`receive_datagram` / `receive_message`,
`datagrams_to_send` / `messages_to_send`, `next_event`, `get_timer`, `handle_timer`) and speaks
the real wire format, so honest `Node`s meet it exactly as they would on UDP.

- `Adversary`: that surface (an outbox, no timers); subclass it and define `on_message`;
- `Impostor`: one peer at its own address claiming another node's ID (address spoofing);
- `SybilNode` with a shared `Collusion`: many attacker nodes that answer every ROUTE_REQ with
  the attacker's own contacts closest to the target, never an honest one, and (optionally) with
  a fake entry for the target itself at an attacker address (lookup interception, eclipse);
- `sybil_ids`: where the attacker's IDs land, freely chosen or paid for by key generation.
"""

from __future__ import annotations

import heapq
import math
from random import Random
from typing import Any

from kadtalk.node.routing.messages import (
    ID_BITS,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)


class Adversary:
    """The driver surface shared by the adversaries: an outbox, no timers, no events."""

    __slots__ = ("registry", "_out", "received")

    def __init__(self, registry: Any):
        self.registry = registry
        self._out: list[tuple[Any, Any]] = []
        self.received = 0  # datagrams that reached this peer

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        self.received += 1
        try:
            msg, _ = decode(data, self.registry.addr_from_wire)
        except MalformedMessage:
            return
        self.on_message(msg, addr, now)

    def receive_message(self, msg: Any, addr: Any, now: float) -> None:
        if type(msg) is bytes:
            self.receive_datagram(msg, addr, now)
            return
        self.received += 1
        self.on_message(msg, addr, now)

    def on_message(self, msg: Any, addr: Any, now: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def messages_to_send(self, now: float) -> list[tuple[Any, Any]]:
        out, self._out = self._out, []
        return out

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        to_wire = self.registry.addr_to_wire
        return [
            (encode_request(m) if type(m) is RouteRequest else encode_response(m, to_wire), addr)
            for m, addr in self.messages_to_send(now)
        ]

    def next_event(self) -> None:
        return None

    def get_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


class Impostor(Adversary):
    """A peer that claims `claimed_id` from its own address.

    `claim(dst)` sends a (padded) ROUTE_REQ with the claimed ID as origin; with `answers`, every
    ROUTE_REQ it receives is answered as the claimed ID (it can: routing carries no proof of
    identity), without contacts. `requests_seen` counts the requests that reached it.
    """

    __slots__ = ("claimed_id", "answers", "requests_seen")

    def __init__(self, claimed_id: int, registry: Any, answers: bool = True):
        super().__init__(registry)
        self.claimed_id = claimed_id
        self.answers = answers
        self.requests_seen = 0

    def claim(self, dst: Any, target: int = 0, size: int = 187) -> None:
        self._out.append((RouteRequest(self.claimed_id, target, size), dst))

    def on_message(self, msg: Any, addr: Any, now: float) -> None:
        if type(msg) is RouteRequest:
            self.requests_seen += 1
            if self.answers:
                self._out.append((RouteResponse(self.claimed_id, msg.target, ()), addr))


class Collusion:
    """What the attacker's nodes share: their IDs and addresses, and the lie they tell.

    `answer(target)` is the response body every Sybil gives: the k attacker contacts closest to
    `target` (computed once per target), headed by a fake entry for `target` itself at an
    attacker address when `impersonate` is set and the target is an honest ID.
    """

    __slots__ = ("ids", "addrs", "k", "impersonate", "_cache", "_own", "requests")

    def __init__(self, ids: list[int], addrs: list[Any], k: int, impersonate: bool = True):
        self.ids = ids
        self.addrs = addrs
        self.k = k
        self.impersonate = impersonate
        self._cache: dict[int, tuple[tuple[int, Any], ...]] = {}
        self._own = set(ids)
        self.requests = 0  # ROUTE_REQs the attacker's nodes received

    def answer(self, target: int) -> tuple[tuple[int, Any], ...]:
        cached = self._cache.get(target)
        if cached is not None:
            return cached
        pairs = zip(self.ids, self.addrs)
        closest = heapq.nsmallest(self.k, pairs, key=lambda p: p[0] ^ target)
        if self.impersonate and target not in self._own and self.addrs:
            # the Sybil closest to the target poses as the target itself
            fake = (target, closest[0][1])
            closest = [fake] + closest[: self.k - 1]
        result = tuple(closest)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[target] = result
        return result


class SybilNode(Adversary):
    """One attacker node: it answers every ROUTE_REQ with the collusion's contacts, never an
    honest one, and asks nothing itself."""

    __slots__ = ("node_id", "collusion")

    def __init__(self, node_id: int, collusion: Collusion, registry: Any):
        super().__init__(registry)
        self.node_id = node_id
        self.collusion = collusion

    def on_message(self, msg: Any, addr: Any, now: float) -> None:
        if type(msg) is RouteRequest:
            self.collusion.requests += 1
            contacts = tuple(c for c in self.collusion.answer(msg.target) if c[0] != self.node_id)
            self._out.append((RouteResponse(self.node_id, msg.target, contacts), addr))


# -- where Sybil IDs land --------------------------------------------------------------------------

ID_CHOICES = ("random", "free", "keygen")
_FREE_SHIFT = ID_BITS - 64  # "free" IDs differ from the target in the top 64 bits only


def sybil_ids(
    count: int,
    target: int,
    rng: Random,
    choice: str = "random",
    keys_per_id: float = 1.0,
    taken: set[int] | None = None,
) -> list[int]:
    """`count` attacker IDs.

    - "random": one fresh key each (no targeting);
    - "free": the attacker picks its IDs (a protocol without ID = SHA-1 of the key): next to
      `target`, sharing about 60 leading bits with it (closer than any honest node of a network
      below 2^50 peers; the fast bootstrap tells IDs apart by 64 bits below their common prefix,
      so the IDs differ there);
    - "keygen": ID = SHA-1(key) binds the ID to a key, so closeness costs key generation: the
      attacker generates `keys_per_id * count` keys and keeps the `count` IDs closest to the
      target. The order statistics of that many uniform distances are drawn directly (the j-th
      closest of B uniform points is about 2^160 * Gamma(j) / B), so no keys are made here.
    """
    taken = taken if taken is not None else set()
    ids: list[int] = []
    if choice == "random":
        while len(ids) < count:
            node_id = rng.getrandbits(ID_BITS)
            if node_id not in taken and node_id != target:
                taken.add(node_id)
                ids.append(node_id)
    elif choice == "free":
        low = 1
        while len(ids) < count:
            node_id = target ^ (low << _FREE_SHIFT)
            low += 1
            if node_id not in taken:
                taken.add(node_id)
                ids.append(node_id)
    elif choice == "keygen":
        budget = max(float(count), keys_per_id * count)
        space = float(1 << ID_BITS)
        gamma = 0.0
        while len(ids) < count:
            gamma += rng.expovariate(1.0)
            distance = int(space * gamma / budget)
            if distance >> ID_BITS:  # past the far end (the budget barely covers `count`)
                distance = rng.getrandbits(ID_BITS)
            distance = max((len(ids) + 1) << _FREE_SHIFT, min(distance, (1 << ID_BITS) - 1))
            node_id = target ^ distance
            if node_id not in taken:
                taken.add(node_id)
                ids.append(node_id)
    else:
        raise ValueError(f"choice must be one of {', '.join(ID_CHOICES)}")
    return ids


def shared_prefix_bits(a: int, b: int) -> int:
    return ID_BITS - (a ^ b).bit_length()


def expected_keys_for_prefix(bits: int) -> float:
    """Key generations to expect before one ID shares `bits` leading bits with a given target."""
    return math.ldexp(1.0, bits)
