"""A SimPy network of integer addresses: latency, random loss and a routing hook.

The hook plays the part of trio's FakeNet router: it sees every datagram with its planned delay
and returns the delays to deliver it with, so it can drop ([]), delay ([d + x]) or duplicate
([d, d2]) it.

Two optional observers cost nothing when absent: a NAT table (sim/nat.py) and a traffic tap
(sim/traffic.py) need an `ObservedNetwork`, whose `send` and arrival do the extra work; a plain
SimNetwork's hot path is unchanged. `make_network` picks the class; building one directly works
too (a SimNetwork refuses observers, so none is silently ignored).
"""

from __future__ import annotations

from heapq import heappush
from random import Random
from typing import Any, Callable, Sequence

import simpy
from simpy.core import NORMAL

from kadtalk.sim.environment import CountingEnvironment, call_later

Hook = Callable[[int, int, Any, float], Sequence[float]]
Receiver = Callable[[int, Any, int], None]
Stray = Callable[[int, int, Any], None]


class SimNetwork:
    __slots__ = ("env", "latency", "rng", "loss", "hook", "receiver", "sent", "lost", "nat", "tap",
                 "_later", "_queue", "_eid")

    def __init__(
        self,
        env: simpy.Environment,
        latency: Any,
        rng: Random,
        loss: float = 0.0,
        hook: Hook | None = None,
        nat: Any = None,
        tap: Callable[[int, int, Any], None] | None = None,
    ):
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.env = env
        self.latency = latency
        self.rng = rng
        self.loss = loss
        self.hook = hook
        self.receiver: Receiver | None = None  # set by the driver: receiver(dst, payload, src)
        self.sent = 0
        self.lost = 0
        self.nat = nat  # a NatTable: filters inbound datagrams of NATed nodes, counts drops
        self.tap = tap  # tap(src, dst, payload) sees every datagram sent (traffic accounting)
        if (nat is not None or tap is not None) and not isinstance(self, ObservedNetwork):
            raise ValueError("a NAT table or a tap needs an ObservedNetwork (see make_network)")
        # arrivals are light events where the environment has them (sim/environment.py)
        self._later = getattr(env, "call_later", None) or (
            lambda delay, fn, *args: call_later(env, delay, fn, *args))
        # a CountingEnvironment's heap and event numbers: `send` queues an arrival as its
        # `call_later` does, inline (one call less for every datagram; issue 15 item 2)
        light = getattr(type(env), "call_later", None) is CountingEnvironment.call_later
        self._queue = env._queue if light else None
        self._eid = env._eid if light else None

    def send(self, src: int, dst: int, payload: Any) -> None:
        self.sent += 1
        if self.loss and self.rng.random() < self.loss:
            self.lost += 1
            return
        delay = self.latency.delay(src, dst)
        # a plain network's arrival is the receiver's call itself (one call less a datagram)
        arrive = self._arrive if self._observed else self.receiver
        if self.hook is None:
            queue = self._queue
            if queue is not None and delay >= 0:  # env.call_later(delay, arrive, ...), inline
                heappush(queue, (self.env._now + delay, NORMAL, next(self._eid), arrive,
                                 (dst, payload, src)))
            else:
                self._later(delay, arrive, dst, payload, src)
            return
        delays = self.hook(src, dst, payload, delay)
        if not delays:
            self.lost += 1
        for d in delays:
            self._later(d, arrive, dst, payload, src)

    def send_out(self, src: int, out: list[tuple[Any, int]], attached: int, stray: Stray) -> None:
        """A node's outbox: `send(src, dst, payload)` for each (payload, dst) with dst in
        range(attached), `stray(src, dst, payload)` for any other (the driver's: flow addresses,
        unroutable ones), in order. One call a delivery instead of one a datagram: on a plain
        network without loss or hook, the sends are inline (the same event numbers and times)."""
        queue = self._queue
        if queue is None or self.loss or self.hook is not None or self._observed:
            send = self.send
            for payload, dst in out:
                if 0 <= dst < attached:
                    send(src, dst, payload)
                else:
                    stray(src, dst, payload)
            return
        delay_of, eid, arrive = self.latency.delay, self._eid, self.receiver
        now = self.env._now  # no event runs in between: every send's
        for payload, dst in out:
            if 0 <= dst < attached:
                self.sent += 1
                delay = delay_of(src, dst)
                if delay >= 0:
                    heappush(queue, (now + delay, NORMAL, next(eid), arrive, (dst, payload, src)))
                else:
                    self._later(delay, arrive, dst, payload, src)  # refused, as call_later does
            else:
                stray(src, dst, payload)

    _observed = False  # arrivals go through `_arrive` (ObservedNetwork's NAT filter)

    def _arrive(self, dst: int, payload: Any, src: int) -> None:
        self.receiver(dst, payload, src)


class ObservedNetwork(SimNetwork):
    """A SimNetwork with a NAT table and/or a traffic tap."""

    __slots__ = ()
    _observed = True

    def send(self, src: int, dst: int, payload: Any) -> None:
        if self.tap is not None:
            self.tap(src, dst, payload)
        if self.nat is not None:
            # the mapping opens as the datagram leaves
            self.nat.outbound(src, dst, self.env.now, payload)
        SimNetwork.send(self, src, dst, payload)

    def _arrive(self, dst: int, payload: Any, src: int) -> None:
        nat = self.nat
        if nat is not None and not nat.admits(dst, src, self.env.now, payload):
            nat.filtered += 1  # the NAT in front of dst drops it (checked on arrival)
            return
        self.receiver(dst, payload, src)


def make_network(
    env: simpy.Environment,
    latency: Any,
    rng: Random,
    loss: float = 0.0,
    hook: Hook | None = None,
    nat: Any = None,
    tap: Callable[[int, int, Any], None] | None = None,
) -> SimNetwork:
    """An ObservedNetwork when a NAT table or a tap is given, else a plain SimNetwork."""
    cls = ObservedNetwork if nat is not None or tap is not None else SimNetwork
    return cls(env, latency, rng, loss=loss, hook=hook, nat=nat, tap=tap)
