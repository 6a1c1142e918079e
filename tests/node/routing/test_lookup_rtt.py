"""Round trips per contact (rtt.py) and what a lookup does with them, driven by explicit `now`:
RTT-aware choice among equally near contacts and per-contact slow times (RoutingSettings'
rtt_choice_bits, rtt_bit_cost, contact_slow)."""

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import Lookup, Mode
from kadtalk.node.routing.messages import RouteResponse, decode, encode_response
from kadtalk.node.routing.rtt import RttEstimates, smoothed
from kadtalk.node.stack import Node

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire
TARGET = 0xF000000000000000000000000000000000000000
OWN = 0x0F00000000000000000000000000000000000001
# contacts 1..6 all share the target's first bit and are 2^12 .. 2^7 from it: one bit apart each
IDS = {i: TARGET ^ (0x1000 >> i) for i in range(1, 7)}
ADDRS = {i: ("10.0.0.%d" % i, 5004) for i in IDS}


def test_smoothed_follows_rfc_6298():
    assert smoothed(None, 0.2) == (0.2, 0.1)
    srtt, rttvar = smoothed((0.2, 0.1), 0.1)
    assert srtt == pytest.approx(0.2 - 0.0125) and rttvar == pytest.approx(0.075 + 0.025)


def test_estimates_are_bounded_and_forget_the_one_measured_longest_ago():
    rtts = RttEstimates(limit=2)
    rtts.observe("a", 0.1)
    rtts.observe("b", 0.2)
    rtts.observe("a", 0.1)  # a measured again: b is now the oldest
    rtts.observe("c", 0.3)
    assert "b" not in rtts and len(rtts) == 2
    assert rtts.srtt("a") == pytest.approx(0.1) and rtts.get("c") == (0.3, 0.15)
    assert rtts.srtt("b") is None
    with pytest.raises(ValueError):
        RttEstimates(limit=0)


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0.001, 5.0)), max_size=300))
def test_estimates_never_exceed_the_limit_and_stay_within_the_samples(samples):
    rtts = RttEstimates(limit=16)
    seen: dict[int, list[float]] = {}
    for addr, rtt in samples:
        rtts.observe(addr, rtt)
        seen.setdefault(addr, []).append(rtt)
        assert len(rtts) <= 16
    for addr, values in seen.items():
        if addr in rtts:
            srtt, rttvar = rtts.get(addr)
            assert min(values) - 1e-9 <= srtt <= max(values) + 1e-9 and rttvar >= 0


def node(**settings) -> Node:
    n = Node(OWN, ContactRegistry(), Random(1),
             RoutingSettings(refresh_on_join=False, alpha=2, **settings), 0.0)
    for i in IDS:
        assert n.add_contact(IDS[i], ADDRS[i], 0.0)
    return n


def asked(n: Node, now: float) -> list[int]:
    out = []
    for data, addr in n.datagrams_to_send(now):
        msg, _ = decode(data, FROM_WIRE)
        if msg.target == TARGET:
            out.append(next(i for i in ADDRS if ADDRS[i] == addr))
    return out


def answer(n: Node, i: int, now: float, contacts=()) -> None:
    n.receive_datagram(encode_response(RouteResponse(IDS[i], TARGET, tuple(contacts)), TO_WIRE),
                       ADDRS[i], now)


def test_answers_feed_the_contact_round_trips_only_when_a_setting_uses_them():
    n = node()
    n.find_closest(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]
    answer(n, 5, 0.04)
    assert n.routing.rtts is None  # the paper's lookup: nothing kept per contact
    n = node(contact_slow=True)
    n.find_closest(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]
    answer(n, 5, 0.04)
    assert n.routing.rtts.srtt(ADDRS[5]) == pytest.approx(0.04)
    assert n.routing.rtts.srtt(ADDRS[6]) is None


def test_a_lookup_asks_the_fastest_known_contacts_among_the_equally_near():
    def measured(**settings):
        n = node(**settings)
        for i, rtt in ((6, 0.30), (5, 0.25), (4, 0.02), (3, 0.05), (2, 0.01)):
            n.routing.observe_contact_rtt(ADDRS[i], rtt)
        return n

    n = measured()  # off by default: XOR order
    n.find_peer(TARGET, 10.0)
    assert asked(n, 10.0) == [6, 5]
    n = measured(rtt_choice_bits=2)  # 6, 5, 4 within two bits of 6: 4 is fastest, then 5
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [4, 5]
    n = measured(rtt_choice_bits=4, rtt_bit_cost=0.1)  # 6: 0.30, 4: 0.02 + 0.2, 5: 0.25 + 0.1
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [4, 6]
    n = measured(rtt_choice_bits=4, rtt_bit_cost=0.5)  # a bit farther costs 500 ms: 6, 5 win
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [5, 6]


def test_a_request_is_slow_after_its_own_contacts_round_trip():
    n = node(contact_slow=True)
    n.routing.observe_round_trip(0.3)  # the node's: srtt 0.3, rttvar 0.15 -> slow after 0.6 s
    n.routing.observe_contact_rtt(ADDRS[6], 0.04)  # 6's: 0.04 + 2 x 0.02 -> the 0.1 s floor
    n.find_closest(TARGET, 10.0)
    assert asked(n, 10.0) == [6, 5]
    assert n.get_timer() == pytest.approx(10.1)
    n.handle_timer(10.1)  # 6 is late by its own measure: its slot goes to 4, 5 still holds one
    assert asked(n, 10.1) == [4]
    assert n.get_timer() == pytest.approx(10.6)
    [lookup] = n.routing._lookups.values()
    six = n.routing.table.find(IDS[6])
    assert lookup.is_waiting_for(six) and lookup.in_flight == 2
    answer(n, 6, 10.2)  # a late answer still counts (its slot was given away already)
    assert not lookup.is_waiting_for(six) and lookup.in_flight == 2
    n = node()  # the node's slow time for every contact
    n.routing.observe_round_trip(0.3)
    n.routing.observe_contact_rtt(ADDRS[6], 0.04)
    n.find_closest(TARGET, 10.0)
    assert asked(n, 10.0) == [6, 5]
    assert n.get_timer() == pytest.approx(10.6)


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError):
        RoutingSettings(rtt_choice_bits=-2)
    with pytest.raises(ValueError):
        RoutingSettings(rtt_bit_cost=-0.1)


def test_an_unmeasured_contact_is_expected_as_fast_as_the_answer_that_named_it():
    # 1 and 2 were never measured and are within two bits of each other; 1 is nearer the
    # target, named by an answer that took 300 ms, 2 by one that took 10 ms
    def first_asked(hints: bool) -> int:
        lookup = Lookup(0, TARGET, Mode.FIND_PEER, 0.0, k=20, alpha=1)
        lookup.prefer_fast(lambda handle: None, 2, 0.0, lambda: 0.1)
        handle = {IDS[i]: i for i in IDS}.__getitem__
        lookup.add_contacts([(IDS[1], ADDRS[1])], 2, lambda i, a: handle(i), OWN,
                            0.30 if hints else None)
        lookup.add_contacts([(IDS[2], ADDRS[2])], 2, lambda i, a: handle(i), OWN,
                            0.01 if hints else None)
        return lookup.next_requests()[0]

    assert first_asked(hints=False) == 2  # both at the node's 100 ms: XOR order (2 is nearer)
    assert first_asked(hints=True) == 2
    # and the other way round: the nearer one named by the slow answer
    lookup = Lookup(0, TARGET, Mode.FIND_PEER, 0.0, k=20, alpha=1)
    lookup.prefer_fast(lambda handle: None, 2, 0.0, lambda: 0.1)
    handle = {IDS[i]: i for i in IDS}.__getitem__
    lookup.add_contacts([(IDS[2], ADDRS[2])], 2, lambda i, a: handle(i), OWN, 0.30)
    lookup.add_contacts([(IDS[1], ADDRS[1])], 2, lambda i, a: handle(i), OWN, 0.01)
    assert lookup.next_requests() == [1]


def test_the_routing_layer_gives_the_answers_round_trip_as_the_hint():
    for hints in (False, True):
        n = node(rtt_choice_bits=2, rtt_hints=hints)
        n.find_peer(TARGET, 0.0)
        assert asked(n, 0.0) == [6, 5]
        answer(n, 6, 0.04, [(IDS[1] ^ 0xFF00, ("10.0.2.1", 1))])
        [lookup] = n.routing._lookups.values()
        assert lookup._hints == ({n.routing.registry.handles_at(("10.0.2.1", 1))[0]: 0.04}
                                 if hints else None)


K2 = dict(k=2, replacement_cache=4, proximity=True)
A, B, C = (0x8000000000000000000000000000000000000000 + i for i in (1, 2, 3))
ADDR = {A: ("10.0.1.1", 1), B: ("10.0.1.2", 1), C: ("10.0.1.3", 1)}


def met_in_a_lookup(n: Node, newcomer: int, rtt: float) -> None:
    """`newcomer` answers a lookup request of `n` after `rtt`, then `n`'s address probe."""
    routing = n.routing
    target = newcomer  # (find_closest: it is asked, not only learned)
    n.find_closest(target, 10.0)
    n.datagrams_to_send(10.0)  # asks the table's entries, which answer naming the newcomer
    for other in (A, B):
        if routing.table.find(other) >= 0:
            n.receive_datagram(encode_response(RouteResponse(
                other, target, ((newcomer, ADDR[newcomer]),)), TO_WIRE), ADDR[other], 10.0)
    n.datagrams_to_send(10.0)
    # the newcomer is asked: the lookup's request answered after rtt ...
    n.receive_datagram(encode_response(RouteResponse(newcomer, target, ()), TO_WIRE),
                       ADDR[newcomer], 10.0 + rtt)
    probe = [msg for data, addr in n.datagrams_to_send(10.0 + rtt)
             for msg in [decode(data, FROM_WIRE)[0]] if addr == ADDR[newcomer]]
    assert probe, "the newcomer is probed"
    n.receive_datagram(encode_response(RouteResponse(newcomer, probe[-1].target, ()), TO_WIRE),
                       ADDR[newcomer], 10.0 + rtt + 0.001)  # ... and answers the probe


def full_bucket(**settings) -> Node:
    n = Node(OWN, ContactRegistry(), Random(1), RoutingSettings(refresh_on_join=False, alpha=2,
                                                                **settings), 0.0)
    for contact in (A, B):
        assert n.add_contact(contact, ADDR[contact], 0.0)
    n.routing.observe_round_trip(0.1)
    n.routing.observe_contact_rtt(ADDR[A], 0.05)
    n.routing.observe_contact_rtt(ADDR[B], 0.20)
    return n


def test_proximity_a_full_bucket_takes_a_faster_newcomer_in_its_slowest_entrys_place():
    n = full_bucket(**K2)
    met_in_a_lookup(n, C, 0.03)
    table = n.routing.table
    assert [n.routing.registry.ids[h] for h in table.bucket(0)] == [A, C]
    assert [n.routing.registry.ids[h] for h in table.replacements(0)] == [B]  # it may come back
    # the uptime rule alone (the paper's): the newcomer waits in the cache
    n = full_bucket(k=2, replacement_cache=4)
    met_in_a_lookup(n, C, 0.03)
    assert [n.routing.registry.ids[h] for h in n.routing.table.bucket(0)] == [A, B]


def test_proximity_keeps_the_entries_when_the_newcomer_is_slower():
    n = full_bucket(**K2)
    met_in_a_lookup(n, C, 0.25)
    table = n.routing.table
    assert [n.routing.registry.ids[h] for h in table.bucket(0)] == [A, B]
    assert [n.routing.registry.ids[h] for h in table.replacements(0)] == [C]


def test_proximity_counts_an_unmeasured_entry_as_the_nodes_round_trip():
    for rtt, displaced in ((0.09, True), (0.11, False)):
        n = full_bucket(**K2)
        routing, ids = n.routing, n.routing.registry.ids
        routing.rtts = None  # A and B never measured: each counts as the node's 0.1 s
        c = routing.registry.intern(C, ADDR[C])
        assert not routing.table.observe(c, 10.0, answered=True)  # full: cached
        routing.observe_contact_rtt(ADDR[C], rtt)
        routing._prefer_near(c)
        assert (C in [ids[h] for h in routing.table.bucket(0)]) is displaced
        assert len(routing.table.bucket(0)) == 2


def test_proximity_never_displaces_the_kept_oldest_entries():
    for keep, left in ((0, [B, C]), (1, [A, C])):
        n = full_bucket(**K2, proximity_keep=keep)
        n.routing.rtts = RttEstimates()  # A, the oldest, is now the slowest (500 ms)
        n.routing.observe_contact_rtt(ADDR[A], 0.5)
        n.routing.observe_contact_rtt(ADDR[B], 0.2)
        met_in_a_lookup(n, C, 0.03)
        ids = n.routing.registry.ids
        assert [ids[h] for h in n.routing.table.bucket(0)] == left
    with pytest.raises(ValueError):
        RoutingSettings(k=2, proximity_keep=3)
