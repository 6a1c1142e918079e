"""Churn: session-time distributions, the single-heap schedule, and the online set."""

import math
import statistics
from random import Random

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.sim.churn import KAD_LIKE, Churn, Exponential, IndexedSet, Weibull, distribution
from kadtalk.sim.environment import CountingEnvironment

# -- distributions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dist", [Exponential(30.0), Weibull(0.7, 40.0), Weibull(1.5, 10.0)])
def test_sample_mean_and_median(dist):
    rng = Random(1)
    draws = [dist.sample(rng) for _ in range(40000)]
    assert min(draws) >= 0
    assert statistics.fmean(draws) == pytest.approx(dist.mean, rel=0.04)
    assert statistics.median(draws) == pytest.approx(dist.median(), rel=0.04)


@pytest.mark.parametrize("dist", [Exponential(30.0), Weibull(0.7, 40.0), Weibull(2.0, 10.0)])
def test_residual_is_the_forward_recurrence_time(dist):
    """Renewal theory: the time left in the period seen at a random instant has mean
    E[T^2] / (2 E[T])."""
    rng = Random(2)
    draws = [dist.residual(rng) for _ in range(60000)]
    if isinstance(dist, Weibull):
        second = dist.scale ** 2 * math.gamma(1 + 2 / dist.shape)
    else:
        second = 2 * dist.mean ** 2
    assert statistics.fmean(draws) == pytest.approx(second / (2 * dist.mean), rel=0.05)


def test_weibull_shape_one_is_exponential():
    assert Weibull(1.0, 25.0).mean == pytest.approx(Exponential(25.0).mean)
    assert Weibull(1.0, 25.0).median() == pytest.approx(Exponential(25.0).median())


def test_kad_like_is_heavy_tailed():
    """Stutzbach & Rejaie's fit: most sessions short, the mean far above the median."""
    assert KAD_LIKE.shape < 1
    assert KAD_LIKE.mean > 3 * KAD_LIKE.median()


def test_distribution_factory_and_validation():
    assert isinstance(distribution("exponential", 5.0), Exponential)
    weibull = distribution("weibull", 5.0, 0.5)
    assert (weibull.shape, weibull.scale) == (0.5, 5.0)
    for bad in (lambda: distribution("pareto", 1.0), lambda: Exponential(0), lambda: Weibull(0, 1),
                lambda: Weibull(1, -1)):
        with pytest.raises(ValueError):
            bad()


# -- the schedule ----------------------------------------------------------------------------------


def run_churn(nodes, session, offline, seed, until, start=0.0):
    env = simpy.Environment()
    log = []
    churn = None

    def leave(addr):
        log.append((env.now, addr, "leave", churn.pending() if churn else None))

    def back(addr):
        log.append((env.now, addr, "return", churn.pending()))

    churn = Churn(env, nodes, session, offline, Random(seed), leave, back, start=start)
    env.run(until=until)
    return churn, log


dists = st.one_of(
    st.builds(Exponential, st.floats(0.5, 20.0)),
    st.builds(Weibull, st.floats(0.3, 2.0), st.floats(0.5, 20.0)),
)


@settings(max_examples=40, deadline=None)
@given(
    nodes=st.integers(1, 40), session=dists, offline=dists, seed=st.integers(0, 2**32),
    start=st.floats(0.0, 5.0),
)
def test_schedule_properties(nodes, session, offline, seed, start):
    until = start + 30.0
    churn, log = run_churn(nodes, session, offline, seed, until, start)
    # nothing happens before the start; time never runs backwards
    assert all(t >= start for t, *_ in log)
    assert [t for t, *_ in log] == sorted(t for t, *_ in log)
    # each node alternates leave / return, starting with a leave (everyone starts online or
    # leaves at the start)
    state = {}
    for t, addr, what, _ in log:
        assert what == ("leave" if state.get(addr, "return") == "return" else "return")
        state[addr] = what
    for addr in range(nodes):
        assert churn.online[addr] == (state.get(addr, "return") == "return")
    # exactly one pending transition per node, always in the future
    assert churn.pending() == nodes
    assert all(churn.next_at[a] >= until - 1e-9 for a in range(nodes))
    # once running, the heap holds one entry per node when a transition is reported
    assert all(p == nodes for t, _, _, p in log if p is not None and t > start)
    assert churn.departures == sum(1 for e in log if e[2] == "leave")
    assert churn.returns == sum(1 for e in log if e[2] == "return")
    assert churn.departures - churn.returns == nodes - sum(churn.online)


def test_schedule_is_deterministic_under_the_seed():
    a = run_churn(30, Weibull(0.5, 5.0), Exponential(5.0), 11, 60.0)[1]
    b = run_churn(30, Weibull(0.5, 5.0), Exponential(5.0), 11, 60.0)[1]
    c = run_churn(30, Weibull(0.5, 5.0), Exponential(5.0), 12, 60.0)[1]
    assert a == b and a != c


@pytest.mark.parametrize("session,offline", [(Exponential(10.0), Exponential(30.0)),
                                              (Weibull(0.5, 5.0), Weibull(0.8, 10.0))])
def test_starts_and_stays_in_equilibrium(session, offline):
    """The share of nodes online is the availability at the start and stays there."""
    env = simpy.Environment()
    churn = Churn(env, 4000, session, offline, Random(3), lambda a: None, lambda a: None)
    p = churn.availability
    assert p == pytest.approx(session.mean / (session.mean + offline.mean))
    for when in (0.001, 20.0, 80.0):
        env.run(until=when)
        assert sum(churn.online) / 4000 == pytest.approx(p, abs=0.035)


def test_only_the_given_addresses_churn():
    env = simpy.Environment()
    left = []
    churn = Churn(env, 10, Exponential(1.0), Exponential(1.0), Random(1), left.append, lambda a: None,
                  addrs=[2, 5])
    env.run(until=20)
    assert set(left) == {2, 5} and churn.pending() == 2
    assert all(churn.online[a] for a in range(10) if a not in (2, 5))


def test_one_simpy_event_at_a_time():
    """The whole schedule is one process: SimPy's queue never holds an event per node."""
    env = CountingEnvironment()
    Churn(env, 5000, Exponential(100.0), Exponential(100.0), Random(1), lambda a: None, lambda a: None)
    env.run(until=50)
    assert env.pending <= 2 and env.processed > 100  # many transitions, one event at a time


# -- the online set --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 19)), max_size=80), st.integers(0, 1000))
def test_indexed_set_behaves_like_a_set(ops, seed):
    members = IndexedSet(20)
    model = set()
    rng = Random(seed)
    for add, addr in ops:
        if add:
            members.add(addr)
            model.add(addr)
        else:
            members.discard(addr)
            model.discard(addr)
        assert len(members) == len(model) and set(members) == model
        assert all((a in members) == (a in model) for a in range(20))
        pick = members.choice(rng)
        assert pick in model if model else pick == -1
        pick = members.choice(rng, exclude=addr)
        rest = model - {addr}
        assert pick in rest if rest else pick == -1


def test_indexed_set_choice_is_uniform_without_the_excluded():
    members = IndexedSet(10, range(5))
    rng = Random(4)
    counts = [0] * 5
    for _ in range(20000):
        counts[members.choice(rng, exclude=2)] += 1
    assert counts[2] == 0
    for i in (0, 1, 3, 4):
        assert counts[i] == pytest.approx(5000, rel=0.06)
