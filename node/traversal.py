"""NAT traversal, sans-I/O: observed addresses, NAT keep-alives and hole punching (issue 7).

One extension type byte, 0x06 (TRAVERSAL), beside routing (0x00-0x01, nanotalk's format,
unchanged) and the session (0x02-0x05). The second byte is the operation
(docs/protocol.md, "NAT traversal"):

| op | name | layout after type and op | sent by |
| --- | --- | --- | --- |
| 0x01 | ADDR_REQ | nonce (8), zero padding (6): 16 bytes | anyone, to a peer |
| 0x02 | ADDR_RES | nonce (8), observed IPv4 (4), port (2): 16 bytes | the peer: where the request came from |
| 0x03 | PUNCH_REQ | requester ID (20), target ID (20): 42 bytes | a caller, to rendezvous peers |
| 0x04 | PUNCH_FWD | requester ID (20), requester's IPv4 (4), port (2): 28 bytes | a rendezvous that has the target in its table, to the target |
| 0x05 | PUNCH | sender ID (20): 22 bytes | the target, to the requester's observed address |

No answer is larger than the request that causes it, a rendezvous forwards only to a node of
its own routing table, and every answer is metered per source and in all, so none of these
can be used to amplify or aim traffic at a victim.

A node asks a few peers (`probe`) where they see it: their answers give its public address
(`observed`), and whether the mapping is the same towards different peers (endpoint-independent:
hole punching works) or not (symmetric NAT). The periodic probes to the same few peers (the
daemon sends them every 20 s) also keep the NAT's mappings towards them open, so that they can
act as rendezvous for callers. A caller whose lookup found the callee sends PUNCH_REQ to the
rendezvous peers nearest the callee while its KEY_REQs go to the callee; the callee's PUNCH to
the caller opens its NAT for the caller's next KEY_REQ (retransmitted after 0.5 s), and the
caller's own KEY_REQ has already opened the caller's NAT for the PUNCH and the KEY_RES.

Only nodes with an identity that asked for traversal allocate this (see `Node`); the routing
layer and routing-only simulated nodes never see it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from random import Random
from typing import Any

from .layer import Event
from .ratelimit import FloodGuard, TokenBucket
from .routing.contacts import ipv4_from_wire, ipv4_to_wire, usable_ipv4

TRAVERSAL = 0x06
ADDR_REQ, ADDR_RES, PUNCH_REQ, PUNCH_FWD, PUNCH = 0x01, 0x02, 0x03, 0x04, 0x05
SIZES = {ADDR_REQ: 16, ADDR_RES: 16, PUNCH_REQ: 42, PUNCH_FWD: 28, PUNCH: 22}
PUNCH_COPIES = 2  # PUNCHes a target sends per PUNCH_FWD (a lost one costs the call)
MAX_OBSERVERS = 16  # peers whose view of our address is remembered


# `stats` reasons that are dropped datagrams (the others count what was sent or received)
DROPS = frozenset({"malformed", "unusable_source", "unsolicited", "punch_unknown_target",
                   "punch_refused", "rate_limited", "rate_limited_source"})


class TraversalEvent(Event):
    """Base of the traversal layer's events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AddressObserved(TraversalEvent):
    """A peer told us where it sees us; `public` is the address most peers agree on."""

    observer: Any
    observed: tuple[str, int]
    public: tuple[str, int]
    symmetric: bool  # peers see different ports: endpoint-dependent mapping
    at: float


class Traversal:
    __slots__ = ("node_id", "rng", "outbox", "events", "stats", "observed", "_nonces", "_guard",
                 "_punches")

    def __init__(self, node_id: int, rng: Random, now: float = 0.0):
        self.node_id = node_id
        self.rng = rng
        self.outbox: list[tuple[bytes, Any]] = []
        self.events: collections.deque = collections.deque()
        self.stats: collections.Counter[str] = collections.Counter()
        self.observed: dict[Any, tuple[str, int]] = {}  # observer address -> where it sees us
        self._nonces: dict[bytes, Any] = {}  # outstanding ADDR_REQ nonce -> peer asked
        # answers (ADDR_RES, PUNCH_FWD) metered per source host and in all; PUNCHes in all
        self._guard = FloodGuard(50.0, 100.0, 5.0, 10.0, now, max_sources=1024, always=True)
        self._punches = TokenBucket(10.0, 20.0, now)

    # -- commands -------------------------------------------------------------------------------

    def probe(self, peers: list[Any], now: float) -> None:
        """Ask each peer where it sees us (and refresh the NAT mapping towards it)."""
        for addr in peers:
            nonce = self.rng.getrandbits(64).to_bytes(8, "big")
            if len(self._nonces) >= 4 * MAX_OBSERVERS:
                del self._nonces[next(iter(self._nonces))]
            self._nonces[nonce] = addr
            self.outbox.append((bytes((TRAVERSAL, ADDR_REQ)) + nonce + bytes(6), addr))
            self.stats["addr_req_sent"] += 1

    def punch(self, target_id: int, rendezvous: list[Any], now: float) -> None:
        """Ask the rendezvous peers to have `target_id` send us a PUNCH."""
        body = (bytes((TRAVERSAL, PUNCH_REQ)) + self.node_id.to_bytes(20, "big")
                + target_id.to_bytes(20, "big"))
        for addr in rendezvous:
            self.outbox.append((body, addr))
            self.stats["punch_req_sent"] += 1

    @property
    def public(self) -> tuple[str, int] | None:
        """The address most peers see us at (ties: the latest), or None before any answer."""
        if not self.observed:
            return None
        counts = collections.Counter(self.observed.values())
        best = max(counts.values())
        for addr in reversed(self.observed.values()):
            if counts[addr] == best:
                return addr
        return None

    @property
    def symmetric(self) -> bool:
        """Whether peers see us at different ports (or addresses): a symmetric NAT."""
        return len(set(self.observed.values())) > 1

    # -- input ----------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float, find: Any) -> None:
        """`find(node_id)` -> the address of that node in our routing table, or None."""
        op = data[1] if len(data) > 1 else -1
        if SIZES.get(op) != len(data):
            self.stats["malformed"] += 1
            return
        if op == ADDR_RES:
            self._on_addr_res(data, addr, now)
            return
        if op == PUNCH:
            self.stats["punch_received"] += 1  # it opened our NAT for the peer: nothing to do
            return
        if type(addr) is not tuple or not usable_ipv4(addr):
            self.stats["unusable_source"] += 1
            return
        refused = self._guard.check(addr[0], now)
        if refused is not None:
            self.stats[refused] += 1
            return
        if op == ADDR_REQ:
            self.outbox.append((bytes((TRAVERSAL, ADDR_RES)) + data[2:10] + ipv4_to_wire(addr), addr))
            self.stats["addr_res_sent"] += 1
        elif op == PUNCH_REQ:
            requester, target = data[2:22], int.from_bytes(data[22:42], "big")
            where = find(target) if target != self.node_id else None
            if where is None:
                self.stats["punch_unknown_target"] += 1
                return
            self.outbox.append((bytes((TRAVERSAL, PUNCH_FWD)) + requester + ipv4_to_wire(addr),
                                where))
            self.stats["punch_forwarded"] += 1
        elif op == PUNCH_FWD:
            requester = ipv4_from_wire(data[22:28])
            if requester is None or not self._punches.take(now):
                self.stats["punch_refused"] += 1
                return
            body = bytes((TRAVERSAL, PUNCH)) + self.node_id.to_bytes(20, "big")
            for _ in range(PUNCH_COPIES):
                self.outbox.append((body, requester))
            self.stats["punch_sent"] += 1

    def _on_addr_res(self, data: bytes, addr: Any, now: float) -> None:
        asked = self._nonces.get(data[2:10])
        if asked is None or asked != addr:
            self.stats["unsolicited"] += 1  # only the peer asked may tell us our address
            return
        del self._nonces[data[2:10]]
        seen = ipv4_from_wire(data[10:16])
        if seen is None:
            self.stats["malformed"] += 1
            return
        self.observed.pop(addr, None)
        if len(self.observed) >= MAX_OBSERVERS:
            del self.observed[next(iter(self.observed))]
        self.observed[addr] = seen
        self.events.append(AddressObserved(addr, seen, self.public, self.symmetric, now))

    def drop_counts(self) -> collections.Counter[str]:
        """The datagrams dropped, by reason (`stats` also counts what was sent)."""
        return collections.Counter({k: v for k, v in self.stats.items() if k in DROPS})

    def datagrams_to_send(self) -> list[tuple[bytes, Any]]:
        out = self.outbox
        if out:
            self.outbox = []
        return out
