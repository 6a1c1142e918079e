"""A plain SimNetwork on a CountingEnvironment queues arrivals on the heap itself (issue 15
item 2): the same events, in the same order, at the same times, as through `call_later`."""

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.sim.environment import CountingEnvironment
from kadtalk.sim.latency import ConstantLatency, CoordinateLatency, JitteredLatency
from kadtalk.sim.network import SimNetwork


def run(sends: list[tuple[float, int, int]], inline: bool, jitter: bool) -> list[tuple]:
    """Datagrams sent at the given times (with timers of the environment's own at the same
    times): every arrival and timer as (time, src, dst, number), in the order the environment
    processed them. Without jitter every datagram takes 0.01 s, so arrivals tie with timers
    and sends: their order is the event numbers'."""
    env = CountingEnvironment()
    base = CoordinateLatency()
    rng = Random(3)
    for _ in range(8):
        base.add_node(rng)
    latency = JitteredLatency(base, 0.1, Random(4)) if jitter else ConstantLatency(0.01)
    net = SimNetwork(env, latency, Random(5))
    if not inline:
        net._queue = None  # every arrival through env.call_later
    assert (net._queue is not None) == inline
    seen: list[tuple[float, int, int, int]] = []
    net.receiver = lambda dst, n, src: seen.append((env.now, src, dst, n))
    for n, (at, src, dst) in enumerate(sends):
        env.call_later(at, net.send, src, dst, n)
        env.call_later(at, seen.append, (env.now + at, -1, -1, n))  # a timer at the same time
    env.run(until=100)
    assert env.processed == 3 * len(sends) + 1  # the stop event too
    return seen


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.01, 0.02, 0.5]), st.integers(0, 7),
                          st.integers(0, 7)), max_size=30), st.booleans())
def test_arrivals_queued_inline_come_as_through_call_later(sends, jitter):
    assert run(sends, True, jitter) == run(sends, False, jitter)


def test_a_plain_simpy_environment_still_works():
    import simpy

    env = simpy.Environment()
    base = CoordinateLatency()
    for _ in range(2):
        base.add_node(Random(1))
    net = SimNetwork(env, base, Random(1))
    assert net._queue is None
    seen = []
    net.receiver = lambda dst, payload, src: seen.append((round(env.now, 9), src, dst, payload))
    net.send(0, 1, b"x")
    env.run()
    assert seen == [(round(base.delay(0, 1), 9), 0, 1, b"x")]
