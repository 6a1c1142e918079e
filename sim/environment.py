"""A SimPy environment that counts the events it processes, with a light event for callbacks.

Studies report how many simulation events their measured phase cost and how many were pending
when it began (benchmarks/sim_scale.py compares the rate with a bare heap). SimPy numbers its
events privately; `processed` is counted in `step`, and `scheduled` is derived (an event is
either processed or still queued: SimPy cannot cancel one).

Most events of a simulation are a datagram's arrival or a node's timer: a function to call at
a time. `call_later` queues such a call under the key SimPy gives a Timeout (time, NORMAL
priority, the next event number), so the order of events, and so every result, is the one
SimPy's Timeouts give, for about a third of the cost (issue 15 item 2). Every entry of the heap
is one tuple `(time, priority, event number, fn, args)`: a call is `fn(*args)`, and a SimPy
event (`schedule`) is queued as `(..., self._fire, (event,))`, so the loop has one path and a
call costs one tuple for its arguments, no object of its own (session 14: there was a `Call`).
`step` is simpy 4's `Environment.step`, inlined.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Callable

import simpy
from simpy.core import NORMAL, URGENT, EmptySchedule, StopSimulation


class CountingEnvironment(simpy.Environment):
    """`scheduled`: events scheduled so far; `processed`; `pending`: scheduled, not processed."""

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.processed = 0

    @property
    def scheduled(self) -> int:
        return self.processed + len(self._queue)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` after `delay` (ordered exactly as `simpy.Timeout(self, delay)`)."""
        if delay < 0:  # as simpy.Timeout: time never runs backwards
            raise ValueError(f"Negative delay {delay}")
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), fn, args))

    def schedule(self, event: simpy.Event, priority: Any = NORMAL, delay: Any = 0) -> None:
        """simpy's `schedule`, the event queued as a call of `_fire` (one kind of entry)."""
        heappush(self._queue, (self._now + delay, priority, next(self._eid), self._fire, (event,)))

    def step(self) -> None:
        try:
            self._now, _, _, fn, args = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self.processed += 1  # the event was taken (StopSimulation comes from its callback)
        fn(*args)

    def _fire(self, event: simpy.Event) -> None:
        """The rest of `step` for a SimPy event, taken from the queue and counted already."""
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1:]
            self.schedule(event, simpy.core.EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc

    def run(self, until: Any = None) -> Any:
        """simpy's `Environment.run` (same `until` rules and results), its loop inlined: an
        entry is popped and called in place (issue 15 item 2: a join phase is one event per
        datagram)."""
        if until is None or isinstance(until, simpy.Event):
            return super().run(until)
        at = until if isinstance(until, int) else float(until)
        if at <= self._now:
            raise ValueError(f"until ({at}) must be greater than the current simulation time")
        stop = simpy.Event(self)
        stop._ok = True
        stop._value = None
        self.schedule(stop, URGENT, at - self._now)
        stop.callbacks.append(StopSimulation.callback)
        queue = self._queue
        try:
            while True:
                try:
                    self._now, _, _, fn, args = heappop(queue)  # step(), inline
                except IndexError:
                    raise RuntimeError(f'No scheduled events left but "until" event was not '
                                       f"triggered: {stop}") from None
                self.processed += 1
                fn(*args)  # a call, or a SimPy event's `_fire` (the stop above among them)
        except StopSimulation as exc:
            return exc.args[0]

    def run_while(self, going: Callable[[], bool]) -> None:
        """Step while `going()` and something is queued."""
        queue, step = self._queue, self.step
        while queue and going():
            step()


def call_later(env: simpy.Environment, delay: float, fn: Callable[..., Any], *args: Any) -> None:
    """`env.call_later` where `env` has it (a CountingEnvironment), else a SimPy Timeout: the
    network and the driver run on any SimPy environment."""
    light = getattr(env, "call_later", None)
    if light is not None:
        light(delay, fn, *args)
    else:
        simpy.Timeout(env, delay).callbacks.append(lambda _event: fn(*args))
