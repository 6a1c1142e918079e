"""`call_later` refuses a negative delay, as simpy.Timeout does: queued at `now + delay`, such
a call would run in the past and move simulated time backwards (a reviewer's replay: at
now = 10, call_later(-5) ran at now = 5)."""

import pytest
import simpy

from kadtalk.sim.environment import CountingEnvironment, call_later


def test_a_negative_delay_is_refused_and_nothing_is_queued():
    env = CountingEnvironment()
    env.run(until=10)
    seen: list[float] = []
    pending = env.pending
    with pytest.raises(ValueError, match="Negative delay"):
        env.call_later(-5.0, seen.append, "never")
    assert env.pending == pending
    env.call_later(1.0, lambda: seen.append(env.now))
    env.run(until=20)
    assert seen == [11.0]  # time only moved forwards


@pytest.mark.parametrize("make", [CountingEnvironment, simpy.Environment])
def test_the_helper_refuses_it_on_either_environment(make):
    """The network and the driver schedule through `call_later(env, ...)`: both kinds of
    environment refuse the same delays."""
    env = make()
    with pytest.raises(ValueError):
        call_later(env, -1e-9, print)
    times: list[float] = []
    call_later(env, 0.0, lambda: times.append(env.now))  # zero is fine: now
    env.run()
    assert times == [0.0]
