"""An in-memory datagram network with explicit time for tests and benchmarks (after trio's FakeNet).

Sans-I/O layers (anything with the surface of kadtalk.node.layer.Layer) are attached at
addresses of any hashable kind. Every datagram a node sends becomes a `Packet` handed to a
*route hook*, `route(packet, now) -> [(delay, packet), ...]`: the deliveries it returns are what
happens to it. None drops it, two duplicate it, a packet with another `dst` redirects it and one
with another `src` rewrites its source (a NAT); each delay may differ (jitter, reordering).
`FilteringNat`, `SymmetricNat` and `Link` are such hooks; hooks compose by calling one another.

Time is explicit and only moves forward: one heap holds deliveries and node timers, ordered by
time and first in, first out among equal times. `run_until(t)` does everything due by `t`,
`run(until, limit)` goes on until a condition holds or the network is idle, `step()` does one
thing. After a delivery or a timer the node is *serviced* as the UDP driver does: its datagrams
are sent, its events collected into `events[addr]`, its timer re-armed (one live timer a node:
a new entry only when the deadline moves earlier, superseded ones are skipped as stale, one that
fires early is harmless because `handle_timer` does only what is due, and a deadline already
past fires at once). A test that acts on a node from outside (`node.call(...)`) then calls
`service(addr)`, or `settle(now)` for every node, so the network takes what it now has to send.
"""

from __future__ import annotations

import itertools
import math
from heapq import heappop, heappush
from random import Random
from typing import Callable, Hashable, Iterable, NamedTuple

from kadtalk.node.layer import Layer


class Packet(NamedTuple):
    """One datagram on the wire (immutable; a NamedTuple, cheap to make by the hundred thousand)."""

    src: Hashable
    dst: Hashable
    payload: bytes


Route = Callable[[Packet, float], Iterable[tuple[float, Packet]]]


def direct(packet: Packet, now: float) -> tuple[tuple[float, Packet]]:
    """The default route: every packet arrives at once, unchanged."""
    return ((0.0, packet),)


class MemoryNet:
    """Nodes at addresses, a route hook, and one clock.

    Counters: `sent` packets given to the route hook, `dropped` those it returned no delivery
    for, `scheduled` deliveries it returned, `delivered` those a node received, `unroutable`
    those to an address with no node; `in_flight` is what remains of `scheduled`.
    """

    def __init__(self, route: Route = direct, now: float = 0.0):
        self.route = route
        self.now = now
        self.nodes: dict[Hashable, Layer] = {}
        self.events: dict[Hashable, list] = {}
        self.sent = self.scheduled = self.delivered = self.dropped = self.unroutable = 0
        self._heap: list = []  # (time, seq, packet, addr): a delivery, or a timer if packet is None
        self._seq = itertools.count()  # ties in time go first in, first out
        self._armed: dict[Hashable, float] = {}  # addr -> deadline of its live timer entry

    def attach(self, addr: Hashable, node: Layer) -> Hashable:
        """Put `node` at `addr` and service it (send what it has, arm its timer)."""
        if addr in self.nodes:
            raise ValueError(f"address {addr!r} is taken")
        self.nodes[addr] = node
        self.events[addr] = []
        self._armed[addr] = math.inf
        self.service(addr)
        return addr

    @property
    def in_flight(self) -> int:
        """Deliveries scheduled and not yet made."""
        return self.scheduled - self.delivered - self.unroutable

    def detach(self, addr: Hashable) -> Layer:
        """Take the node at `addr` off the network: packets to it become unroutable."""
        self._armed.pop(addr, None)  # its timer entries go stale
        return self.nodes.pop(addr)

    def send(self, packet: Packet) -> None:
        """Put `packet` on the wire now, through the route hook (nodes' datagrams come here;
        a test may inject its own, e.g. with a forged source)."""
        if type(packet.payload) is not bytes:
            raise TypeError(f"{packet.src!r} sent {type(packet.payload).__name__}, not bytes")
        self.sent += 1
        now, heap, seq = self.now, self._heap, self._seq
        scheduled = 0
        for delay, out in self.route(packet, now):
            if not delay >= 0:
                raise ValueError(f"route hook returned delay {delay!r}")
            heappush(heap, (now + delay, next(seq), out, None))
            scheduled += 1
        if scheduled:
            self.scheduled += scheduled
        else:
            self.dropped += 1

    def service(self, addr: Hashable | None = None) -> None:
        """Send what the node at `addr` (every node if None) has to send now, collect its
        events and arm its timer."""
        if addr is None:
            for each in list(self.nodes):
                self.service(each)
            return
        node = self.nodes[addr]
        now = self.now
        send, make = self.send, Packet._make
        for data, dst in node.datagrams_to_send(now):
            send(make((addr, dst, data)))
        event = node.next_event()
        if event is not None:
            events = self.events[addr]
            while event is not None:
                events.append(event)
                event = node.next_event()
        deadline = node.get_timer()
        if deadline is not None:
            at = deadline if deadline > now else now  # one already past is due at once
            if at < self._armed.get(addr, math.inf):
                self._armed[addr] = at
                heappush(self._heap, (at, next(self._seq), None, addr))

    def _run(self, limit: float, until: Callable[[], bool] | None = None, idle: bool = False,
             one: bool = False) -> bool:
        """The one loop: deliveries and live timers due by `limit`, in order, until `until()`
        holds or (`idle`) nothing is in flight; with `one`, stop after one. True if it did
        something and stopped for `one`."""
        heap, armed, nodes = self._heap, self._armed, self.nodes
        while True:
            if until is not None:  # asked after the last thing done too
                if until():
                    return False
            elif idle and not self.in_flight:
                return False
            if not heap or heap[0][0] > limit:
                return False
            when, _, packet, addr = heappop(heap)
            if packet is None:  # a timer
                node = nodes.get(addr)
                if node is None or armed.get(addr) != when:
                    continue  # stale: superseded by an earlier one, or the node left
                self.now = when
                armed[addr] = math.inf
                node.handle_timer(when)
                self.service(addr)
            else:
                self.now = when
                dst = packet.dst
                node = nodes.get(dst)
                if node is None:
                    self.unroutable += 1
                else:
                    self.delivered += 1
                    node.receive_datagram(packet.payload, packet.src, when)
                    self.service(dst)
            if one:
                return True

    def next_time(self) -> float | None:
        """When the next delivery or timer is due (a stale timer may make this early)."""
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Make the next delivery or fire the next live timer; False when nothing is left."""
        return self._run(math.inf, one=True)

    def run_until(self, t: float) -> None:
        """Do everything due at or before `t`, then set the clock to `t`."""
        if t < self.now:
            raise ValueError(f"time runs forward: {t} < now {self.now}")
        self._run(t)
        self.now = t

    def settle(self, now: float) -> None:
        """For a test that acts on nodes from outside: advance to `now`, service every node
        (O(nodes)), then do what is due by `now` (so zero-delay exchanges run to the end)."""
        self.run_until(now)
        self.service()
        self.run_until(now)

    def run(self, until: Callable[[], bool] | None = None, limit: float = math.inf) -> None:
        """Process deliveries and timers in order until `until()` holds (asked before each and
        after the last) or, without `until`, until no packet is in flight; never past `limit`.
        The clock stays at the last thing done. With `until` and no limit, periodic timers may
        run forever."""
        self._run(limit, until, idle=until is None)

    def of(self, addr: Hashable, kind: type) -> list:
        """The events of type `kind` the node at `addr` reported."""
        return [e for e in self.events[addr] if type(e) is kind]


class Link:
    """Route hook: a fixed delay plus uniform jitter, and random loss of the packets `lossy`
    selects (all by default); draws from `rng` (loss first, then jitter). Counts `lost`."""

    def __init__(self, delay: float = 0.0, jitter: float = 0.0, loss: float = 0.0,
                 rng: Random | None = None, lossy: Callable[[Packet], bool] | None = None):
        self.delay, self.jitter, self.loss = delay, jitter, loss
        self.rng = rng if rng is not None else Random(0)
        self.lossy = lossy
        self.lost = 0

    def __call__(self, packet: Packet, now: float) -> list[tuple[float, Packet]]:
        rng = self.rng
        if self.loss and (self.lossy is None or self.lossy(packet)) and rng.random() < self.loss:
            self.lost += 1
            return []
        delay = self.delay + rng.uniform(0, self.jitter) if self.jitter else self.delay
        return [(delay, packet)]


class FilteringNat:
    """Route hook: hosts behind NATs with endpoint-independent mapping (a host keeps its address
    and port outside, so the address is both) and address-and-port-dependent filtering (RFC
    4787): a packet reaches a NATed host only from an endpoint the host has sent to within
    `timeout` seconds. Packets then follow `route`. Counts `filtered`.

    The filter decides when a packet is sent, on the mappings as they are then: with delays, a
    mapping the host opens while a packet is in flight does not admit it (a real NAT would).
    sim/nat.py's NatTable models the same for the simulator's node numbers.
    """

    def __init__(self, route: Route = direct, timeout: float = math.inf):
        self.route = route
        self.timeout = timeout
        self.opened: dict[Hashable, dict[Hashable, float]] = {}  # host -> {remote: last sent}
        self.filtered = 0

    def add(self, host: Hashable) -> None:
        """Put `host` behind a NAT of its own (nothing can reach it before it sends)."""
        self.opened.setdefault(host, {})

    def admits(self, packet: Packet, now: float) -> bool:
        opened = self.opened.get(packet.dst)
        if opened is None:
            return True
        last = opened.get(packet.src)
        return last is not None and now - last <= self.timeout

    def __call__(self, packet: Packet, now: float) -> list[tuple[float, Packet]]:
        opened = self.opened.get(packet.src)
        if opened is not None:
            opened[packet.dst] = now
        out = []
        for delay, p in self.route(packet, now):
            if self.admits(p, now):
                out.append((delay, p))
            else:
                self.filtered += 1
        return out


class SymmetricNat:
    """Route hook: hosts behind NATs with endpoint-dependent mapping (a new public port for each
    destination: carrier-grade NAT, RFC 4787 "symmetric") and address-and-port-dependent
    filtering (a mapping admits only the endpoint it was made for). A host has a private
    address (what its node is attached at) and a public IP (`add`); a packet to a private
    address from outside, or to a public port with no mapping, is filtered. Mappings never
    expire. Packets then follow `route`. Counts `filtered`."""

    def __init__(self, route: Route = direct, first_port: int = 40000):
        self.route = route
        self.hosts: dict[Hashable, str] = {}  # private address -> public IP
        self.out: dict[tuple[Hashable, Hashable], tuple[str, int]] = {}  # (host, dst) -> mapped
        self.back: dict[tuple[str, int], tuple[Hashable, Hashable]] = {}  # mapped -> (host, dst)
        self.ports = itertools.count(first_port)
        self.filtered = 0

    def add(self, host: Hashable, public_ip: str) -> None:
        self.hosts[host] = public_ip

    def __call__(self, packet: Packet, now: float) -> list[tuple[float, Packet]]:
        src, dst = packet.src, packet.dst
        if src in self.hosts:
            mapped = self.out.get((src, dst))
            if mapped is None:
                mapped = self.out[(src, dst)] = (self.hosts[src], next(self.ports))
                self.back[mapped] = (src, dst)
            src = mapped
        if dst in self.hosts:  # a private address from outside: not routable
            self.filtered += 1
            return []
        if dst in self.back:
            host, allowed = self.back[dst]
            if src != allowed:
                self.filtered += 1
                return []
            dst = host
        elif type(dst) is tuple and dst and dst[0] in self.hosts.values():
            self.filtered += 1  # a port of a NAT with no mapping
            return []
        return list(self.route(Packet(src, dst, packet.payload), now))
