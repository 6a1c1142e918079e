"""Round trips per contact (rtt.py) and what a lookup does with them, driven by explicit `now`:
RTT-aware choice among equally near contacts and per-contact slow times (RoutingSettings'
rtt_choice_bits, rtt_bit_cost, contact_slow)."""

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
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
