"""The experiment harness: one world builder, its random-number order, workloads, counting."""

from random import Random

import simpy

from kadtalk.experiments.harness.workload import poisson_pairs, poisson_pairs_until
from kadtalk.experiments.harness.world import Plan, SimWorld
from kadtalk.experiments.lookup import LookupStudy
from kadtalk.sim.environment import CountingEnvironment
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import ObservedNetwork, SimNetwork, make_network


def test_plan_draws_what_the_world_draws_so_workloads_replay_without_a_simulation():
    study = LookupStudy(nodes=60, lookups=10, seed=9, bootstrap="fast", latency="constant")
    plan = Plan(study.seed, study.nodes, ConstantLatency(), fast_bootstrap=True)
    world = SimWorld(study)
    world.converge()
    assert world.ids == plan.ids
    # after convergence, both generators stand at the same place: the workloads agree
    assert poisson_pairs(world.rng, 60, 10, 1.0, 5.0) == poisson_pairs(plan.rng, 60, 10, 1.0, 5.0)


def test_poisson_pairs_are_distinct_ordered_and_the_until_form_draws_the_same():
    arrivals = poisson_pairs(Random(3), 5, 400, 2.0, 10.0)
    assert all(a.source != a.target and 0 <= a.source < 5 and 0 <= a.target < 5 for a in arrivals)
    assert arrivals[0].when == 2.0 and all(x.when < y.when for x, y in zip(arrivals, arrivals[1:]))
    assert 30 < arrivals[-1].when - 2.0 < 50  # 399 gaps of mean 0.1 s
    until = poisson_pairs_until(Random(3), 5, 2.0, arrivals[200].when, 10.0)
    assert until == arrivals[:200]


def test_counting_environment_counts_scheduled_and_pending_events():
    env = CountingEnvironment()
    for delay in range(5):
        simpy.Timeout(env, delay)
    assert (env.scheduled, env.pending) == (5, 5)
    env.run(until=2.5)  # three timeouts done; the two at 3 and 4 wait (and SimPy's own events)
    assert env.pending >= 2 and env.processed >= 3
    env.run()
    assert env.pending == 0 and env.scheduled == env.processed


def test_observers_need_an_observed_network_built_explicitly():
    env = CountingEnvironment()
    assert type(make_network(env, ConstantLatency(), Random(1))) is SimNetwork
    assert type(make_network(env, ConstantLatency(), Random(1), tap=lambda *a: None)) is ObservedNetwork
