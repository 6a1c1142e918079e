"""SimNetwork: latency, loss, and the routing hook (drop / delay / duplicate)."""

from random import Random

import pytest
import simpy

from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork


def make(hook=None, loss=0.0, seed=1, latency=0.05):
    env = simpy.Environment()
    net = SimNetwork(env, ConstantLatency(latency), Random(seed), loss=loss, hook=hook)
    arrivals = []
    net.receiver = lambda dst, payload, src: arrivals.append((env.now, src, dst, payload))
    return env, net, arrivals


def test_delivery_after_latency():
    env, net, arrivals = make()
    net.send(0, 1, b"x")
    env.run(until=0.049)
    assert arrivals == []
    env.run()
    assert arrivals == [(0.05, 0, 1, b"x")]
    assert (net.sent, net.lost) == (1, 0)


def test_hook_sees_each_datagram_and_can_drop_delay_duplicate():
    seen = []

    def hook(src, dst, payload, delay):
        seen.append((src, dst, payload, delay))
        if dst == 9:
            return []
        if payload == "dup":
            return [delay, delay + 0.01]
        if payload == "slow":
            return [delay + 1.0]
        return [delay]

    env, net, arrivals = make(hook)
    for payload, dst in (("drop", 9), ("dup", 1), ("slow", 2), ("plain", 3)):
        net.send(0, dst, payload)
    env.run()
    assert seen == [(0, 9, "drop", 0.05), (0, 1, "dup", 0.05), (0, 2, "slow", 0.05), (0, 3, "plain", 0.05)]
    # same-time arrivals come in the order they were sent
    assert [(round(t, 9), dst, p) for t, _, dst, p in arrivals] == [
        (0.05, 1, "dup"),
        (0.05, 3, "plain"),
        (0.06, 1, "dup"),
        (1.05, 2, "slow"),
    ]
    assert (net.sent, net.lost) == (4, 1)


def test_loss_is_random_and_seeded():
    def run(seed):
        env, net, arrivals = make(loss=0.3, seed=seed)
        for i in range(4000):
            net.send(0, 1, i)
        env.run()
        return net, [p for *_, p in arrivals]

    net, got = run(5)
    assert net.sent == 4000
    assert net.lost + len(got) == 4000
    assert 0.26 * 4000 < net.lost < 0.34 * 4000
    assert run(5)[1] == got
    assert run(6)[1] != got


@pytest.mark.parametrize("loss", [-0.1, 1.0, 2.0])
def test_loss_must_be_a_probability_below_one(loss):
    with pytest.raises(ValueError):
        make(loss=loss)


def test_lost_datagrams_never_reach_the_hook():
    calls = []
    env, net, arrivals = make(hook=lambda *a: calls.append(a) or [a[3]], loss=0.5, seed=3)
    for i in range(200):
        net.send(0, 1, i)
    env.run()
    assert len(calls) == len(arrivals) == 200 - net.lost
