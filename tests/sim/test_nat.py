"""NAT: who reaches whom, the network dropping what a NAT filters, and no cost when off."""

from random import Random

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.nat import FILTERING, FULL_CONE, OPEN, SYMMETRIC, NatTable
from kadtalk.sim.network import ObservedNetwork, SimNetwork, make_network

TIMEOUT = 10.0


def table(*kinds):
    nat = NatTable(TIMEOUT)
    nat.kinds.extend(kinds)
    return nat


# -- the rules, against a model ----------------------------------------------------------------


def model_admits(kinds, history, dst, src, now):
    """Reference rules: history is [(time, sender, receiver)] of datagrams sent so far."""
    kind = kinds[dst]
    if kind == OPEN:
        return True
    sent = [t for t, s, r in history if s == dst and (kind == FULL_CONE or r == src)]
    return bool(sent) and now - max(sent) <= TIMEOUT


@settings(max_examples=80, deadline=None)
@given(
    kinds=st.lists(st.sampled_from([OPEN, FULL_CONE, FILTERING]), min_size=2, max_size=6),
    steps=st.lists(st.tuples(st.floats(0, 8), st.integers(0, 5), st.integers(0, 5)), max_size=60),
)
def test_rules_match_the_reference(kinds, steps):
    n = len(kinds)
    nat = table(*kinds)
    history = []
    now = 0.0
    for gap, a, b in steps:
        now += gap
        src, dst = a % n, b % n
        # every pair's reachability agrees with the reference before this datagram leaves
        for x in range(n):
            for y in range(n):
                assert nat.admits(x, y, now) == model_admits(kinds, history, x, y, now)
        nat.outbound(src, dst, now)
        history.append((now, src, dst))


def test_open_nodes_are_always_reachable():
    nat = table(OPEN, OPEN)
    assert nat.admits(0, 1, 0.0) and nat.admits(1, 0, 1e9)
    nat.outbound(0, 1, 0.0)
    assert nat.mapped() == 0  # no state for open nodes


def test_full_cone_opens_to_everyone_after_sending_and_closes_after_the_timeout():
    nat = table(FULL_CONE, OPEN, OPEN)
    assert not nat.admits(0, 1, 0.0)
    nat.outbound(0, 2, 1.0)
    assert nat.admits(0, 1, 1.0 + TIMEOUT) and nat.admits(0, 2, 5.0)
    assert not nat.admits(0, 1, 1.0 + TIMEOUT + 0.01)


def test_filtering_admits_only_those_it_sent_to():
    nat = table(FILTERING, OPEN, OPEN)
    nat.outbound(0, 1, 0.0)
    assert nat.admits(0, 1, 3.0) and not nat.admits(0, 2, 3.0)
    assert not nat.admits(0, 1, TIMEOUT + 0.5)
    nat.outbound(0, 1, 9.0)  # refreshed
    assert nat.admits(0, 1, TIMEOUT + 0.5)


def test_forget_closes_the_mappings_of_a_node_that_left():
    nat = table(FULL_CONE, FILTERING, OPEN)
    nat.outbound(0, 2, 0.0)
    nat.outbound(1, 2, 0.0)
    nat.forget(0)
    nat.forget(1)
    assert not nat.admits(0, 2, 1.0) and not nat.admits(1, 2, 1.0)


def test_filtering_state_is_pruned_as_it_grows():
    nat = NatTable(TIMEOUT)
    nat.kinds.extend([FILTERING] + [OPEN] * 2000)
    for peer in range(1, 2001):
        nat.outbound(0, peer, float(peer))  # one new peer a second
    assert len(nat._peers[0]) < 300  # the old ones (> TIMEOUT ago) went
    assert nat.admits(0, 2000, 2000.0) and not nat.admits(0, 1, 2000.0)


def test_shares_of_kinds():
    nat = NatTable()
    rng = Random(1)
    kinds = [nat.add_node(rng, 0.3, 0.2) for _ in range(20000)]
    assert kinds == list(nat.kinds)
    assert kinds.count(FULL_CONE) / 20000 == pytest.approx(0.3, abs=0.015)
    assert kinds.count(FILTERING) / 20000 == pytest.approx(0.2, abs=0.015)
    with pytest.raises(ValueError):
        NatTable(0)


# -- in the network ------------------------------------------------------------------------------


def net_with(nat=None, tap=None):
    env = simpy.Environment()
    net = make_network(env, ConstantLatency(0.05), Random(1), nat=nat, tap=tap)
    arrivals = []
    net.receiver = lambda dst, payload, src: arrivals.append((round(env.now, 9), src, dst, payload))
    return env, net, arrivals


def test_a_plain_network_keeps_its_fast_send():
    _, net, _ = net_with()
    assert type(net) is SimNetwork
    assert type(net).send is SimNetwork.send and type(net)._arrive is SimNetwork._arrive


def test_network_drops_and_counts_what_the_nat_filters():
    nat = table(FILTERING, OPEN, OPEN)
    env, net, arrivals = net_with(nat)
    assert isinstance(net, ObservedNetwork)
    net.send(1, 0, "unsolicited")  # 0 never sent to 1: dropped
    env.run()
    net.send(0, 1, "request")  # opens 0's mapping towards 1
    net.send(1, 0, "reply")  # leaves before the request arrives, arrives after it left 0's NAT
    net.send(2, 0, "stranger")
    env.run()
    assert [(p, dst) for _, _, dst, p in arrivals] == [("request", 1), ("reply", 0)]
    assert nat.filtered == 2 and net.sent == 4 and net.lost == 0


def test_the_filter_applies_on_arrival():
    """A datagram sent just before the mapping opens still gets in if it arrives after."""
    nat = table(FULL_CONE, OPEN)
    env, net, arrivals = net_with(nat)
    net.send(1, 0, "early")  # arrives at 0.05
    env.run(until=0.01)
    net.send(0, 1, "opens")  # at 0.01 0's mapping opens
    env.run()
    assert ("early", 0) in [(p, dst) for _, _, dst, p in arrivals] and nat.filtered == 0


def test_tap_sees_every_datagram_sent_even_lost_ones():
    seen = []
    env = simpy.Environment()
    net = make_network(env, ConstantLatency(0.05), Random(1), loss=0.5,
                       tap=lambda s, d, p: seen.append((s, d, p)))
    net.receiver = lambda *a: None
    for i in range(100):
        net.send(0, 1, i)
    env.run()
    assert len(seen) == 100 and net.lost > 0


def test_a_plain_network_refuses_observers_it_would_ignore():
    with pytest.raises(ValueError, match="ObservedNetwork"):
        SimNetwork(simpy.Environment(), ConstantLatency(), Random(1), nat=table(OPEN))


KEY_REQ, ROUTING = bytes((0x02,)) + bytes(8), bytes((0x00,)) + bytes(8)


def test_symmetric_nat_admits_replies_but_not_session_datagrams_it_did_not_start():
    """docs/testbed.md's table: a symmetric host can call out, cannot be called."""
    nat = table(SYMMETRIC, OPEN)
    nat.outbound(0, 1, 0.0, ROUTING)  # a routing request opens a flow: its answer gets in
    assert nat.admits(0, 1, 0.1, ROUTING)
    assert not nat.admits(0, 1, 0.1, KEY_REQ)  # a caller's KEY_REQ to the callee's DHT address
    nat.outbound(0, 1, 0.2, KEY_REQ)  # the symmetric host calls: the answers come back
    assert nat.admits(0, 1, 0.3, KEY_REQ)
    assert not nat.admits(0, 1, 0.2 + TIMEOUT + 1, KEY_REQ)  # the mapping expires
    assert nat.flow_port(0, 1) != nat.flow_port(0, 2) and nat.flow_port(1, 0) is None


def test_shares_draw_one_number_a_node_and_symmetric_zero_changes_nothing():
    kinds = {}
    for symmetric in (0.0, 0.2):
        nat, rng = NatTable(), Random(5)
        for _ in range(2000):
            nat.add_node(rng, 0.3, 0.2, symmetric)
        kinds[symmetric] = bytes(nat.kinds)
    assert kinds[0.0].count(SYMMETRIC) == 0 and 300 < kinds[0.2].count(SYMMETRIC) < 500
    # the same draws: a node is open without symmetric NATs iff it is open or symmetric with them
    assert all((a == OPEN) == (b in (OPEN, SYMMETRIC)) for a, b in zip(kinds[0.0], kinds[0.2]))
