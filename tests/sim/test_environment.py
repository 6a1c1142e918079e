"""The counting environment: light calls run in the order SimPy's Timeouts would, and counts."""

import random

import simpy

from kadtalk.sim.environment import CountingEnvironment, call_later


def _order(light: bool, delays: list[float], until: float | None = None,
           ) -> list[tuple[float, int]]:
    env = CountingEnvironment() if light else simpy.Environment()
    seen: list[tuple[float, int]] = []

    def fire(i: int) -> None:
        seen.append((env.now, i))
        if i % 3 == 0:  # a callback that schedules more, at equal times too
            later(0.0 if i % 2 else delays[i], 1000 + i)

    def later(delay: float, i: int) -> None:
        if light:
            env.call_later(delay, fire, i)
        else:
            simpy.Timeout(env, delay).callbacks.append(lambda _e: fire(i))

    for i, d in enumerate(delays):
        later(d, i)
        if i % 7 == 0:  # plain SimPy events among the calls
            simpy.Timeout(env, d).callbacks.append(lambda _e, i=i: seen.append((env.now, -i)))
    if until is None:
        env.run()
    else:  # CountingEnvironment.run's own loop: stops where SimPy's does, calls in its order
        assert env.run(until=until) is None and env.now == until
        seen.append((env.now, -1))
        env.run()
    return seen


def test_light_calls_keep_simpys_order_of_timeouts_with_equal_times():
    rng = random.Random(3)
    delays = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(300)]
    assert _order(True, delays) == _order(False, delays)


def test_run_until_stops_where_simpy_stops_in_simpys_order():
    rng = random.Random(5)
    delays = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(300)]
    for until in (0.5, 0.75, 1.0):  # at equal times the stop comes first (URGENT), as in SimPy
        assert _order(True, delays, until) == _order(False, delays, until)


def test_counts_and_mixed_events():
    env = CountingEnvironment()
    hits: list[str] = []
    env.call_later(1.0, hits.append, "call")
    simpy.Timeout(env, 1.0).callbacks.append(lambda _e: hits.append("timeout"))
    call_later(env, 0.5, hits.append, "helper")
    assert (env.scheduled, env.processed, env.pending) == (3, 0, 3)
    env.run(until=0.75)
    assert hits == ["helper"] and env.now == 0.75
    env.run_while(lambda: len(hits) < 2)
    assert hits == ["helper", "call"] and env.pending == 1
    env.run()
    assert hits == ["helper", "call", "timeout"]
    # run(until)'s stop event counts twice: SimPy queues it again after its StopSimulation
    assert env.processed == env.scheduled == 5


def test_call_later_on_a_plain_simpy_environment():
    env = simpy.Environment()
    hits: list[int] = []
    call_later(env, 2.0, hits.append, 7)
    env.run()
    assert hits == [7] and env.now == 2.0
