"""Proximity neighbour selection with a floor (RoutingSettings.rtt_floor), explicit `now`:
round trips below the floor count as the floor, so a newcomer displaces only an entry slower
than it, and a bucket whose displaceable entries answered within it keeps them against any
newcomer, an attacker answering in 1 ms included (docs/design-decisions.md, "Lookup latency:
PNS with a floor")."""

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node

OWN = 0x0F00000000000000000000000000000000000001
FAR = 0x8000000000000000000000000000000000000000  # every contact below sits in bucket 0


def bucket_with(rtts: list[float | None], **settings) -> Node:
    """A node whose bucket 0 is full with entries 1..len(rtts), oldest first, measured at
    `rtts` (None: never measured); the node's own round trip 0.1 s."""
    n = Node(OWN, ContactRegistry(), Random(1),
             RoutingSettings(k=len(rtts), replacement_cache=8, refresh_on_join=False,
                             proximity=True, **settings), 0.0)
    n.routing.observe_round_trip(0.1)
    for i, rtt in enumerate(rtts, 1):
        assert n.add_contact(FAR + i, ("10.0.%d.1" % i, 1), 0.0)
        if rtt is not None:
            n.routing.observe_contact_rtt(("10.0.%d.1" % i, 1), rtt)
    return n


def meet(n: Node, newcomer: int, rtt: float, now: float) -> None:
    """`newcomer` answered a lookup request after `rtt`, then our probe (the node's own path:
    measured_answer, then admit_probed, as `--near` tables and _on_response run it)."""
    routing = n.routing
    handle = routing.registry.intern(FAR + newcomer, ("10.1.%d.%d" % divmod(newcomer, 250), 1))
    if routing.measured_answer(handle, rtt, now):
        routing.admit_probed(handle, now)


def srtt(n: Node, addr) -> float:
    """What the rule expects of `addr`: its srtt, or the node's when never measured."""
    measured = n.routing.rtts.srtt(addr) if n.routing.rtts is not None else None
    return n.routing._srtt if measured is None else measured


def entries(n: Node) -> list[int]:
    ids = n.routing.registry.ids
    return [ids[h] - FAR for h in n.routing.table.bucket(0)]


def test_an_entry_within_the_floor_stays_against_a_faster_newcomer():
    for floor, displaced in ((0.0, True), (0.08, False)):
        n = bucket_with([0.05, 0.07], rtt_floor=floor)
        meet(n, 100, 0.001, 10.0)  # 1 ms: next to us
        assert (100 in entries(n)) is displaced
        assert len(entries(n)) == 2


def test_an_entry_slower_than_the_floor_goes_to_a_newcomer_within_it():
    n = bucket_with([0.05, 0.2], rtt_floor=0.08)
    meet(n, 100, 0.001, 10.0)
    assert entries(n) == [1, 100]
    assert [n.routing.registry.ids[h] - FAR for h in n.routing.table.replacements(0)] == [2]
    # above the floor the nearest still wins: 0.15 beats 0.2, not 0.25
    n = bucket_with([0.05, 0.2], rtt_floor=0.08)
    meet(n, 101, 0.25, 10.0)
    assert entries(n) == [1, 2]
    meet(n, 102, 0.15, 10.5)
    assert entries(n) == [1, 102]


def test_an_unmeasured_entry_counts_as_the_nodes_round_trip_against_the_floor():
    # never measured: the node's 0.1 s, above a 0.08 floor (displaced), within a 0.12 one (kept)
    for floor, displaced in ((0.08, True), (0.12, False)):
        n = bucket_with([0.05, None], rtt_floor=floor)
        meet(n, 100, 0.001, 10.0)
        assert (100 in entries(n)) is displaced


def test_a_negative_floor_is_refused():
    with pytest.raises(ValueError):
        RoutingSettings(rtt_floor=-0.01)


@settings(max_examples=60, deadline=None)
@given(
    start=st.lists(st.one_of(st.none(), st.floats(0.001, 0.4)), min_size=4, max_size=4),
    met=st.lists(st.floats(0.0005, 0.4), min_size=1, max_size=40),
    floor=st.sampled_from([0.0, 0.05, 0.1]),
    keep=st.integers(0, 4),
)
def test_the_rule_never_displaces_a_kept_entry_or_one_within_the_floor(start, met, floor, keep):
    """Whatever newcomers a full bucket meets, in any order and at any round trip: its
    `proximity_keep` oldest entries and every entry measured within the floor stay; a newcomer
    enters only in place of an entry slower than both it and the floor; the bucket stays full."""
    n = bucket_with(start, rtt_floor=floor, proximity_keep=keep)
    routing = n.routing
    addrs = routing.registry.addrs
    kept = entries(n)[:keep]
    for i, rtt in enumerate(met, 100):
        before = entries(n)
        expected = {e: srtt(n, addrs[h]) for e, h in zip(before, routing.table.bucket(0))}
        protected = {e for e, r in expected.items() if r <= floor} | set(kept)
        meet(n, i, rtt, 10.0 + i)
        after = entries(n)
        assert len(after) == 4
        assert protected <= set(after)
        gone = set(before) - set(after)
        if gone:
            [e] = gone
            assert after[-1] == i  # the newcomer, as the youngest entry
            assert expected[e] > max(rtt, floor)


def test_a_lookup_asks_contacts_within_the_floor_in_xor_order():
    """The RTT-aware choice with the same floor: among the contacts within two bits of the
    nearest (6, 5, 4), 4 answering in 10 ms is asked first without a floor; under a 100 ms
    floor all three count 100 ms and the lookup asks the XOR-nearest (6, 5), as the paper's."""
    from tests.node.routing.test_lookup_rtt import ADDRS, TARGET, asked, node

    def measured(**settings):
        n = node(rtt_choice_bits=2, **settings)
        for i, rtt in ((6, 0.08), (5, 0.05), (4, 0.01), (3, 0.3), (2, 0.3)):
            n.routing.observe_contact_rtt(ADDRS[i], rtt)
        return n

    n = measured()
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [4, 5]  # the fastest two
    n = measured(rtt_floor=0.1)
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [5, 6]  # equally fast: XOR order
    n = measured(rtt_floor=0.06)  # 4 and 5 count 60 ms, 6 its 80: 4 and 5 again
    n.find_peer(TARGET, 10.0)
    assert sorted(asked(n, 10.0)) == [4, 5]


def test_a_lookup_floors_never_measured_contacts_too():
    """A never-measured contact (what a sybil's fresh name looks like) is expected at the
    node's srtt, or at the round trip of the answer that named it (rtt_hints): both floored
    too. With the node's srtt (30 ms) below a 100 ms floor, the two never-measured contacts
    one bit farther must not rank ahead of the measured ones within the floor (review 9,
    finding 3): the lookup asks the three XOR-nearest, as without the RTT-aware choice."""
    from kadtalk.node.routing.layer import RoutingLayer

    target = (1 << 159) | 12345

    def first_asked(floor: float, hints: bool) -> list[str]:
        layer = RoutingLayer(1 << 100, ContactRegistry(), Random(1),
                             RoutingSettings(rtt_floor=floor, rtt_choice_bits=2, alpha=3,
                                             limits=False, rtt_hints=hints), 0.0)
        names = {}
        for i in range(4):  # measured, answering in 5 ms, nearest the target (< 2**20)
            addr = ("198.51.100.%d" % (i + 1), 4000)
            layer.add_contact(target ^ ((1 << 19) + i), addr, 0.0)
            names[addr] = "measured%d" % i
            layer.observe_contact_rtt(addr, 0.005)
        for i in range(2):  # never measured, one bit farther (< 2**21)
            addr = ("203.0.113.%d" % (i + 1), 4000)
            layer.add_contact(target ^ ((1 << 20) + i), addr, 0.0)
            names[addr] = "never_measured%d" % i
        layer.observe_round_trip(0.03)
        layer.datagrams_to_send(0.0)
        layer.find_closest(target, 1.0)
        return [names[addr] for _, addr in layer.datagrams_to_send(1.0)]

    xor = ["measured0", "measured1", "measured2"]
    for hints in (False, True):
        assert first_asked(0.0, hints) == xor  # 5 ms beat the node's 30 ms
        assert first_asked(0.1, hints) == xor  # all count 100 ms: XOR order


def test_a_hint_below_the_floor_counts_as_the_floor():
    """rtt_hints: a contact named by an answer that came back in 40 ms is expected at the
    floor (100 ms), not ahead of the measured contacts within it; above the floor, its 40."""
    from tests.node.routing.test_lookup_rtt import IDS, TARGET, answer, asked, node

    for floor, hint in ((0.0, 0.04), (0.1, 0.1)):
        n = node(rtt_choice_bits=2, rtt_hints=True, rtt_floor=floor)
        n.find_peer(TARGET, 0.0)
        assert asked(n, 0.0) == [6, 5]
        answer(n, 6, 0.04, [(IDS[1] ^ 0xFF00, ("10.0.2.1", 1))])
        [lookup] = n.routing._lookups.values()
        assert lookup._hints == {n.routing.registry.handles_at(("10.0.2.1", 1))[0]: hint}
