"""A SimPy environment that counts the events it schedules and processes.

Studies report how many simulation events their measured phase cost and how many were pending
when it began (benchmarks/sim_scale.py compares the rate with a bare heap). SimPy numbers its
events privately; counting in `schedule` and `step` gives the same figures through a public
surface, at the cost of one Python call per event.
"""

from __future__ import annotations

import simpy


class CountingEnvironment(simpy.Environment):
    """`scheduled`: events scheduled so far; `pending`: scheduled, not yet processed."""

    def __init__(self, initial_time: float = 0) -> None:
        super().__init__(initial_time)
        self.scheduled = 0
        self.processed = 0

    def schedule(self, event, priority=simpy.core.NORMAL, delay=0) -> None:  # type: ignore[override]
        self.scheduled += 1
        super().schedule(event, priority, delay)

    def step(self) -> None:
        try:
            super().step()
        except simpy.core.EmptySchedule:
            raise  # nothing was processed
        except BaseException:
            self.processed += 1  # the event was taken (StopSimulation comes from its callback)
            raise
        self.processed += 1

    @property
    def pending(self) -> int:
        return self.scheduled - self.processed
