"""Sybil defences in the routing layer: verified lookup ends, disjoint paths, a per-/24 limit."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import FAILED, DisjointLookup, Lookup, Mode
from kadtalk.node.routing.contacts import ipv4_from_wire, ipv4_to_wire
from kadtalk.node.routing.messages import (
    ROUTE_REQ,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

TARGET = 0xABC << 148


class Intern:
    """(id, addr) -> handle, as a registry does."""

    def __init__(self):
        self.ids, self.addrs, self.index = [], [], {}

    def __call__(self, node_id, addr):
        key = (node_id, addr)
        if key not in self.index:
            self.index[key] = len(self.ids)
            self.ids.append(node_id)
            self.addrs.append(addr)
        return self.index[key]


def test_verify_skips_a_fake_target_entry_and_the_lookup_goes_on():
    reg = Intern()
    lookup = Lookup(0, TARGET, Mode.FIND_PEER, 0.0, 4, 2)
    lookup.verify = lambda h: reg.addrs[h] == "true"
    helper = reg(TARGET ^ 5, "h")
    lookup.add(helper, 5, 1)
    assert lookup.next_requests() == [helper]
    lookup.answered(helper)
    lookup.add_contacts([(TARGET, "fake"), (TARGET ^ 9, "x")], 2, reg, own_id=1)
    assert lookup.found == -1 and not lookup.done and lookup.rejected == 1
    fake = reg.index[(TARGET, "fake")]
    assert fake not in lookup.next_requests()  # a fake is never asked
    lookup.add_contacts([(TARGET, "true")], 3, reg, own_id=1)
    assert lookup.done and reg.addrs[lookup.found] == "true" and lookup.hops == 2


def test_without_verify_the_first_target_entry_ends_the_lookup():
    reg = Intern()
    lookup = Lookup(0, TARGET, Mode.FIND_PEER, 0.0, 4, 2)
    lookup.add_contacts([(TARGET, "fake")], 2, reg, own_id=1)
    assert lookup.done and reg.addrs[lookup.found] == "fake" and lookup.rejected == 0


@settings(max_examples=150, deadline=None)
@given(
    paths=st.integers(1, 4),
    seeds=st.integers(1, 12),
    script=st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(1, 60), max_size=6)), max_size=40
    ),
)
def test_disjoint_paths_never_ask_one_node_twice(paths, seeds, script):
    reg = Intern()
    lookup = DisjointLookup(0, TARGET, Mode.FIND_PEER, 0.0, 5, 2, 0, paths)
    for i in range(seeds):
        lookup.add(reg(TARGET ^ (1000 + i), i), 1000 + i, 1)
    asked_by: dict[int, int] = {}
    in_flight: list[int] = []
    for answer, learned in script:
        for handle in lookup.next_requests():
            assert handle not in asked_by  # nobody is asked twice, by any path
            asked_by[handle] = lookup._owner[handle]
            in_flight.append(handle)
        if not in_flight or lookup.done:
            break
        handle = in_flight.pop(0)
        if answer:
            lookup.answered(handle)
            lookup.add_contacts([(TARGET ^ d, d) for d in learned], 2, reg, own_id=1)
        else:
            lookup.failed(handle)
        path = lookup.paths[asked_by[handle]]
        # what a path learned is that path's alone
        assert all(lookup._owner[h] == asked_by[handle] for h in path.handles())
    assert sorted(h for p in lookup.paths for h in p.handles()) == sorted(lookup.handles())
    assert lookup.rpcs == len(asked_by)


def test_disjoint_lookup_ends_when_one_path_finds_the_target():
    reg = Intern()
    lookup = DisjointLookup(
        0, TARGET, Mode.FIND_PEER, 0.0, 5, 1, 0, 2, verify=lambda h: reg.addrs[h] == "true"
    )
    a, b = reg(TARGET ^ 1, "a"), reg(TARGET ^ 2, "b")
    lookup.add(a, 1, 1)
    lookup.add(b, 2, 1)
    assert sorted(lookup.next_requests()) == sorted([a, b])
    lookup.answered(a)
    lookup.add_contacts([(TARGET, "fake")], 2, reg, own_id=1)  # path 0 meets a liar
    assert not lookup.done and lookup.rejected == 1
    lookup.answered(b)
    lookup.add_contacts([(TARGET, "true")], 2, reg, own_id=1)
    assert lookup.done and reg.addrs[lookup.found] == "true"
    assert lookup.paths[0]._status[reg.index[(TARGET, "fake")]] & 3 == FAILED


def test_disjoint_paths_need_find_peer():
    with pytest.raises(ValueError):
        DisjointLookup(0, TARGET, Mode.FIND_CLOSEST, 0.0, 5, 1, 0, 2)


# -- the per-/24 limit -----------------------------------------------------------------------------


def in_bucket(own: int, c: int, low: int) -> int:
    bits = 159 - c
    return own ^ (1 << bits) ^ (low & ((1 << bits) - 1))


def test_per_subnet_limit_keeps_at_most_n_entries_of_one_24_in_a_bucket():
    own = 1 << 159
    node = Node(own, ContactRegistry(), Random(1), RoutingSettings(max_per_subnet=2), 0.0)
    for i in range(6):  # six IDs of bucket 0 from one /24, then two from another
        sender, addr = in_bucket(own, 0, i), ("192.0.2.%d" % (i + 1), 5004)
        node.receive_datagram(encode_request(RouteRequest(sender, 1), 146), addr, float(i))
        out = node.datagrams_to_send(float(i))
        assert out  # every request is still answered
        for data, _ in out:  # and each address probe answered (only answers enter the table)
            if data[0] == ROUTE_REQ:
                probe = decode(data, ipv4_from_wire)[0]
                reply = RouteResponse(sender, probe.target, ())
                node.receive_datagram(encode_response(reply, ipv4_to_wire), addr, i + 0.1)
    for i in range(2):
        node.add_contact(in_bucket(own, 0, 100 + i), ("198.51.100.%d" % (i + 1), 5004), 9.0)
    addrs = [node.routing.registry.addrs[h] for h in node.routing.table.bucket(0)]
    assert [a[0].rpartition(".")[0] for a in addrs] == ["192.0.2"] * 2 + ["198.51.100"] * 2
    assert addrs[:2] == [("192.0.2.1", 5004), ("192.0.2.2", 5004)]  # the oldest stay
    # another bucket has its own allowance
    assert node.add_contact(in_bucket(own, 3, 1), ("192.0.2.77", 5004), 10.0)


def test_per_subnet_limit_is_off_by_default():
    own = 1 << 159
    node = Node(own, ContactRegistry(), Random(1), RoutingSettings(), 0.0)
    for i in range(6):
        node.add_contact(in_bucket(own, 0, i), ("192.0.2.%d" % (i + 1), 5004), 0.0)
    assert len(node.routing.table.bucket(0)) == 6
    assert node.routing.apply_subnet_limit() == 0


def test_apply_subnet_limit_trims_a_loaded_table_youngest_first():
    own = 1 << 159
    node = Node(own, ContactRegistry(), Random(1), RoutingSettings(max_per_subnet=1), 0.0)
    for i in range(4):
        node.routing.table.observe(
            node.routing.registry.intern(in_bucket(own, 0, i), ("192.0.2.%d" % (i + 1), 5004)), 0.0
        )
    assert node.routing.apply_subnet_limit() == 3
    [kept] = node.routing.table.bucket(0)
    assert node.routing.registry.addrs[kept] == ("192.0.2.1", 5004)


def test_settings_refuse_a_negative_subnet_limit():
    with pytest.raises(ValueError):
        RoutingSettings(max_per_subnet=-1)
