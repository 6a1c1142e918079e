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


def outbox_run(out: list[tuple[int, int]], batch: bool, inline: bool) -> tuple[list, list, int]:
    """An outbox sent at time 1 through `send_out` (batch) or datagram by datagram as the driver
    did before it (send, or the stray handler for a destination outside 0..5): the arrivals
    (time, src, dst, payload) in order, the strays, and the network's count of datagrams sent."""
    env = CountingEnvironment()
    base = CoordinateLatency()
    rng = Random(3)
    for _ in range(6):
        base.add_node(rng)
    net = SimNetwork(env, JitteredLatency(base, 0.1, Random(4)), Random(5))
    if not inline:
        net._queue = None  # the sends through send and env.call_later
    seen: list[tuple] = []
    strays: list[tuple[int, int, int]] = []
    net.receiver = lambda dst, n, src: seen.append((env.now, src, dst, n))

    def stray(src: int, dst: int, payload: int) -> None:
        strays.append((src, dst, payload))
        env.call_later(0.0, seen.append, (env.now, src, -1, payload))  # an event between sends

    def go() -> None:
        outbox = [(n, dst) for n, dst in enumerate(out)]
        if batch:
            net.send_out(2, outbox, 6, stray)
        else:
            for payload, dst in outbox:
                if 0 <= dst < 6:
                    net.send(2, dst, payload)
                else:
                    stray(2, dst, payload)

    env.call_later(1.0, go)
    env.run(until=100)
    return seen, strays, net.sent


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-2, 8), max_size=20), st.booleans())
def test_an_outbox_sent_at_once_arrives_as_sent_datagram_by_datagram(out, inline):
    batch = outbox_run(out, True, inline)
    assert batch == outbox_run(out, False, inline)
    assert batch[2] == sum(0 <= dst < 6 for dst in out)
    assert [dst for _, dst, _ in batch[1]] == [dst for dst in out if not 0 <= dst < 6]
