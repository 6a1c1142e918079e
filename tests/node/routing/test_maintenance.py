"""Cheaper joins and refreshes (issue 15 item 2): the RoutingSettings rules `refresh_fill`,
`join_fill`, `refresh_join_full`, `cache_probes` and `refresh_heard`, each against the paper's
rule it replaces (docs/design-decisions.md "Cheaper joins and refreshes")."""

from random import Random

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import Lookup, Mode
from kadtalk.node.routing.messages import (
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

TO_WIRE, FROM_WIRE = ContactRegistry.addr_to_wire, ContactRegistry.addr_from_wire
A_ID = 0xA000000000000000000000000000000000000001
BITS = 20  # a fill lookup's range in the unit tests: distances below 2**20


def fill_lookup(wanted, k=20, alpha=3):
    lookup = Lookup(1, 0, Mode.FIND_CLOSEST, 0.0, k, alpha)
    lookup.fill(BITS, wanted)
    return lookup


def intern(node_id, addr):
    return node_id  # handles are the IDs themselves here


# -- the lookup's fill rule ----------------------------------------------------------------------


def test_a_fill_lookup_asks_only_in_range_once_it_knows_a_contact_there():
    lookup = fill_lookup(wanted=5)
    outside = [(1 << 30) + i for i in range(5)]
    for handle in outside:
        lookup.add(handle, handle, 1)  # distance = handle (target 0)
    assert lookup.next_requests() == outside[:3]  # nothing in range known: the nearest
    lookup.answered(outside[0])
    lookup.add_contacts([(7, None), (1 << 25, None)], 2, intern, own_id=-1)
    assert lookup.next_requests() == [7]  # in range now: 1 << 25 and outside[3:] are left out
    lookup.answered(7)
    lookup.answered(outside[1])
    lookup.answered(outside[2])
    assert lookup.next_requests() == []
    assert lookup.done  # nothing left in range to ask


def test_a_fill_lookup_ends_once_the_bucket_has_what_it_lacked():
    lookup = fill_lookup(wanted=2)
    lookup.add(1 << 30, 1 << 30, 1)
    assert lookup.next_requests() == [1 << 30]
    lookup.answered(1 << 30)
    lookup.add_contacts([(i, None) for i in range(1, 10)], 2, intern, own_id=-1)
    assert lookup.next_requests() == [1, 2, 3]
    lookup.answered(1)
    lookup.add_contacts([(i, None) for i in range(10, 12)], 3, intern, own_id=-1)
    assert lookup.next_requests() == [4]  # one new contact in range answered of two wanted
    lookup.answered(2)
    assert lookup.next_requests() == [] and lookup.done
    # the paper's rule would go on to the k closest: 9 more contacts known in range
    assert lookup.rpcs == 5


def test_a_fill_lookup_ends_when_alpha_answers_in_a_row_bring_nothing_new_in_range():
    lookup = fill_lookup(wanted=20, alpha=2)
    for handle in (1 << 30, (1 << 30) + 1, (1 << 30) + 2):
        lookup.add(handle, handle, 1)
    assert lookup.next_requests() == [1 << 30, (1 << 30) + 1]
    for asked in (1 << 30, (1 << 30) + 1):
        lookup.answered(asked)
        lookup.add_contacts([(1 << 31, None)], 2, intern, own_id=-1)  # out of range only
    assert lookup.next_requests() == [] and lookup.done  # an empty range: one round
    paper = Lookup(1, 0, Mode.FIND_CLOSEST, 0.0, 20, 2)
    for handle in (1 << 30, (1 << 30) + 1, (1 << 30) + 2):
        paper.add(handle, handle, 1)
    paper.next_requests()
    for asked in (1 << 30, (1 << 30) + 1):
        paper.answered(asked)
        paper.add_contacts([(1 << 31, None)], 2, intern, own_id=-1)
    assert paper.next_requests() and not paper.done


def test_a_full_bucket_refresh_asks_one_round():
    lookup = fill_lookup(wanted=0)
    for handle in range(1, 8):
        lookup.add(handle, handle, 1)
    assert lookup.next_requests() == [1, 2, 3]  # its entries: dead ones show up
    lookup.answered(1)
    assert lookup.next_requests() == [] and lookup.done


# -- the layer: refresh after a join, probes for the cache, activity -----------------------------


def node(settings, node_id=A_ID):
    return Node(node_id, ContactRegistry(), Random(node_id), settings, 0.0)


def joined_far_neighbour(settings):
    """A joined through B, whose answer names a contact 9 bits from A: the paper refreshes
    buckets 0..8. Returns the refresh requests' targets' buckets."""
    a = node(settings)
    b_addr = ("10.0.0.2", 5004)
    a.join([b_addr], 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(encode_response(RouteResponse(A_ID ^ (1 << 150), A_ID, ()), TO_WIRE),
                       b_addr, 0.1)
    sent = [decode(data, FROM_WIRE)[0] for data, _ in a.datagrams_to_send(0.1)]
    return a, sorted(a.routing.table.bucket_index(m.target) for m in sent
                     if type(m) is RouteRequest and m.size > 41)


def test_join_fill_skips_buckets_already_holding_what_it_aims_at():
    settings = RoutingSettings(refresh_fill=True, join_fill=1)
    a, buckets = joined_far_neighbour(settings)
    assert buckets == list(range(9))  # nothing held yet: all of them, as the paper
    a = node(settings)
    b_addr = ("10.0.0.2", 5004)
    a.join([b_addr], 0.0)
    a.datagrams_to_send(0.0)
    a.routing.table.observe(a.routing.registry.intern(A_ID ^ (1 << 159) ^ 3, ("10.0.0.9", 1)),
                            0.05, answered=True)  # one entry in bucket 0 (a probe's answer)
    a.receive_datagram(encode_response(RouteResponse(A_ID ^ (1 << 150), A_ID, ()), TO_WIRE),
                       b_addr, 0.1)
    targets = [decode(d, FROM_WIRE)[0].target for d, _ in a.datagrams_to_send(0.1)]
    refreshed = {a.routing.table.bucket_index(t) for t in targets if t != A_ID}
    assert 0 not in refreshed and set(range(1, 9)) <= refreshed


def fill_bucket_zero(a, count, first=100):
    """`count` entries (and cached contacts beyond k) in A's bucket 0, as probe answers."""
    registry, table = a.routing.registry, a.routing.table
    for i in range(count):
        addr = ("10.1.%d.%d" % (i // 200, i % 200 + 1), 7)
        handle = registry.intern(A_ID ^ (1 << 159) ^ (first + i), addr)
        table.observe(handle, 0.0, answered=True)


def probes_for_requester(settings, held):
    a = node(settings)
    fill_bucket_zero(a, held)
    newcomer = A_ID ^ (1 << 159) ^ 0xFFFF
    a.receive_datagram(encode_request(RouteRequest(newcomer, 5), 146), ("10.9.9.9", 9), 1.0)
    return [m for m in (decode(d, FROM_WIRE)[0] for d, _ in a.datagrams_to_send(1.0))
            if type(m) is RouteRequest]


def test_cache_probes_stops_probing_for_a_cache_that_holds_enough():
    paper = RoutingSettings(refresh_on_join=False, cache_probes=20)  # the default before session 10
    assert len(probes_for_requester(paper, 20 + 5)) == 1
    few = RoutingSettings(refresh_on_join=False, cache_probes=5)
    assert len(probes_for_requester(few, 20 + 4)) == 1  # 4 cached: one more is worth a probe
    assert probes_for_requester(few, 20 + 5) == []  # 5 cached: no probe
    assert len(probes_for_requester(few, 19)) == 1  # room in the bucket: always


def test_refresh_heard_counts_an_answering_entry_as_activity():
    for heard, refreshed in ((False, True), (True, False)):
        settings = RoutingSettings(refresh_on_join=False, refresh_interval=100.0,
                                   refresh_heard=heard)
        a = node(settings)
        b_id, b_addr = A_ID ^ (1 << 159) ^ 5, ("10.0.0.2", 5004)  # bucket 0
        a.add_contact(b_id, b_addr, 0.0)
        a.datagrams_to_send(0.0)
        # B asks us something at 60 s (its own lookup), from the entry's address
        a.receive_datagram(encode_request(RouteRequest(b_id, 77), 146), b_addr, 60.0)
        a.datagrams_to_send(60.0)
        a.handle_timer(100.0)
        sent = [decode(d, FROM_WIRE)[0] for d, _ in a.datagrams_to_send(100.0)]
        buckets = {a.routing.table.bucket_index(m.target) for m in sent if type(m) is RouteRequest}
        assert (0 in buckets) is refreshed
        if heard:
            assert a.get_timer() == 160.0  # bucket 0 is next due a refresh interval after B


def test_refresh_heard_ignores_requests_from_a_failing_entry():
    settings = RoutingSettings(refresh_on_join=False, refresh_interval=100.0, refresh_heard=True)
    a = node(settings)
    b_id, b_addr = A_ID ^ (1 << 159) ^ 5, ("10.0.0.2", 5004)
    a.add_contact(b_id, b_addr, 0.0)
    table = a.routing.table
    table.failed(table.find(b_id))  # it stopped answering: its address's requests prove nothing
    a.receive_datagram(encode_request(RouteRequest(b_id, 77), 146), b_addr, 60.0)
    a.datagrams_to_send(60.0)
    a.handle_timer(100.0)
    sent = [decode(d, FROM_WIRE)[0] for d, _ in a.datagrams_to_send(100.0)]
    assert 0 in {table.bucket_index(m.target) for m in sent if type(m) is RouteRequest}


def test_settings_validation():
    import pytest

    for bad in (dict(cache_probes=-1), dict(join_fill=0)):
        with pytest.raises(ValueError):
            RoutingSettings(**bad)
