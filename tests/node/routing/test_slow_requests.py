"""Slow lookup requests give their slot away (libtorrent's short timeout), driven by explicit `now`.

Under churn half a routing table may be dead; a lookup whose `alpha` slots all hold dead
contacts would otherwise wait a whole `request_timeout` before asking anyone else.
"""

from random import Random

import pytest

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import IN_FLIGHT, Lookup, Mode
from kadtalk.node.routing.messages import RouteResponse, decode, encode_response
from kadtalk.node.stack import Node

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire
TARGET = 0xF000000000000000000000000000000000000000
OWN = 0x0F00000000000000000000000000000000000001
# contacts 1..6, nearer the target the higher the number
IDS = {i: TARGET ^ (0x1000 >> i) for i in range(1, 7)}
ADDRS = {i: ("10.0.0.%d" % i, 5004) for i in IDS}


def node(**settings) -> Node:
    n = Node(OWN, ContactRegistry(), Random(1), RoutingSettings(refresh_on_join=False, alpha=2,
                                                               **settings), 0.0)
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


def completed(n: Node) -> list[LookupCompleted]:
    out = []
    while (event := n.next_event()) is not None:
        if type(event) is LookupCompleted:
            out.append(event)
    return out


def test_without_a_measured_round_trip_a_request_holds_its_slot_until_the_timeout():
    n = node()
    n.find_closest(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]
    assert n.get_timer() == 1.0  # nothing measured yet: no earlier wake-up
    n.handle_timer(0.9)
    assert asked(n, 0.9) == []


def test_a_slow_request_frees_its_slot_and_its_late_answer_still_counts():
    n = node()
    n.routing.observe_round_trip(0.1)  # srtt 0.1, rttvar 0.05: slow after 0.2 s
    n.find_closest(TARGET, 10.0)
    assert asked(n, 10.0) == [6, 5]
    assert n.get_timer() == pytest.approx(10.2)
    answer(n, 5, 10.05)  # 5 answers in time; its slot goes to 4
    assert asked(n, 10.05) == [4]
    slow_at = n.get_timer()
    assert slow_at == pytest.approx(10.2)
    n.handle_timer(slow_at)  # 6 is slow: its slot goes to 3, 6 is still waited for
    assert asked(n, slow_at) == [3]
    [lookup] = n.routing._lookups.values()
    six = n.routing.table.find(IDS[6])
    assert lookup.in_flight == 2 and lookup.is_waiting_for(six)
    answer(n, 6, 10.4)  # late, but before the timeout: it counts, and frees no second slot
    assert lookup.in_flight == 2 and not lookup.is_waiting_for(six)
    assert asked(n, 10.4) == []
    for i in (4, 3):
        answer(n, i, 10.45)
    assert asked(n, 10.45) == [2, 1]
    for i in (2, 1):
        answer(n, i, 10.5)
    [done] = completed(n)
    assert (done.rpcs, done.timeouts) == (6, 0)
    assert n.routing.table.find(IDS[6]) >= 0


def test_a_slow_request_that_never_answers_counts_one_timeout():
    n = node()
    n.routing.observe_round_trip(0.1)
    n.find_closest(TARGET, 0.0)
    asked(n, 0.0)
    answer(n, 5, 0.05)
    asked(n, 0.05)
    n.handle_timer(n.get_timer())
    assert asked(n, n.get_timer()) == [3]
    [lookup] = n.routing._lookups.values()
    n.handle_timer(1.0)  # 4 and 3 went slow (asking 2 and 1), and 6 timed out: one timeout,
    assert asked(n, 1.0) == [2, 1]  # no slot freed twice
    assert lookup.timeouts == 1 and lookup.in_flight == 2


def test_the_paper_lookup_never_frees_a_slot_early():
    n = node(free_slow_slots=False)
    n.routing.observe_round_trip(0.1)
    n.find_closest(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]
    assert n.get_timer() == 1.0
    n.handle_timer(0.9)
    assert asked(n, 0.9) == []


def test_answered_requests_cause_no_wake_up():
    n = node()
    n.routing.observe_round_trip(0.1)
    n.find_peer(TARGET, 0.0)
    asked(n, 0.0)
    answer(n, 6, 0.05)
    answer(n, 5, 0.05)
    timer = n.get_timer()
    assert timer != pytest.approx(0.2)  # the answered ones' slow times are gone


@pytest.mark.parametrize("rtts, expected", [
    ([0.1], 0.2),  # srtt 0.1 + 2 x 0.05
    ([0.01] * 50, 0.1),  # a LAN: never below slow_floor
    ([0.9, 1.5], 1.0),  # a slow path: never beyond request_timeout
])
def test_slow_time_follows_rfc_6298(rtts, expected):
    n = node()
    for rtt in rtts:
        n.routing.observe_round_trip(rtt)
    n.find_closest(TARGET, 0.0)
    assert n.get_timer() == pytest.approx(expected, abs=1e-3)


def test_lookup_slow_is_idempotent_and_ignores_handles_not_in_flight():
    lookup = Lookup(0, 0, Mode.FIND_CLOSEST, 0.0, 4, 2)
    for h in range(4):
        lookup.add(h, h + 1, 1)
    assert lookup.next_requests() == [0, 1]
    lookup.slow(3)  # never asked
    lookup.slow(0)
    lookup.slow(0)
    assert lookup.in_flight == 1
    assert lookup.next_requests() == [2]
    assert lookup._status[0] & 3 == IN_FLIGHT
    lookup.failed(0)
    assert (lookup.in_flight, lookup.timeouts) == (2, 1)


def test_settings_reject_a_zero_slow_floor_and_negative_rttvars():
    with pytest.raises(ValueError):
        RoutingSettings(slow_floor=0.0)
    with pytest.raises(ValueError):
        RoutingSettings(slow_rttvars=-1.0)
