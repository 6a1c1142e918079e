"""The routing layer through `Node`, with real bytes, a ContactRegistry and explicit `now`."""

from dataclasses import replace
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings, TooManyLookups
from kadtalk.node.routing.lookup import Mode
from kadtalk.node.routing.messages import (
    MAX_REQUEST_SIZE,
    ROUTE_REQ,
    ROUTE_RES,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
    id_to_bytes,
)
from kadtalk.node.routing.route6 import ROUTE6_RES
from kadtalk.node.routing.route6 import decode as decode_any
from kadtalk.node.stack import Node
from kadtalk.transport.memory import MemoryNet, Packet

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire
QUIET = RoutingSettings(refresh_on_join=False)

A_ID = 0xA000000000000000000000000000000000000001
B_ID = 0x2B00000000000000000000000000000000000002  # bucket 0 from A
C_ID = 0x3C00000000000000000000000000000000000003
D_ID = 0xD400000000000000000000000000000000000004
A_ADDR, B_ADDR, C_ADDR, D_ADDR = (("10.0.0.%d" % i, 5004) for i in (1, 2, 3, 4))


def node(node_id, settings=QUIET, now=0.0, seed=None):
    return Node(node_id, ContactRegistry(), Random(seed if seed is not None else node_id), settings, now)


def request(origin, target, padding=0):
    return encode_request(RouteRequest(origin, target), padding)


def response(responder, target, contacts=()):
    return encode_response(RouteResponse(responder, target, tuple(contacts)), TO_WIRE)


def events(n):
    out = []
    event = n.next_event()
    while event is not None:
        out.append(event)
        event = n.next_event()
    return out


class HandNet(MemoryNet):
    """Nodes by address on the in-memory network at zero delay, logging every datagram sent;
    `run(now)` takes what every node has to send and delivers until quiet (MemoryNet.settle:
    timers due by `now` fire too). The network collects the nodes' events: `take(addr)`."""

    def __init__(self, nodes_by_addr):
        super().__init__(self._route)
        self.log: list[Packet] = []
        for addr, n in nodes_by_addr.items():
            self.attach(addr, n)

    def _route(self, packet: Packet, now: float) -> tuple:
        self.log.append(packet)
        return ((0.0, packet),)

    def run(self, now):
        self.settle(now)

    def take(self, addr) -> list:
        """The events the node at `addr` reported since the last take."""
        out, self.events[addr] = self.events[addr], []
        return out


def pending(n):
    return dict(n.routing._pending or {})


def probe_target(n, addr, node_id, now=0.0):
    """The target of `n`'s stateless address probe of `addr` for `node_id` (a keyed hash)."""
    return n.routing._probe_target(n.routing._probe_secrets(now)[0], addr, node_id)


# -- small networks by hand ------------------------------------------------------------------------


def test_two_nodes_join_by_hand():
    a, b = node(A_ID), node(B_ID)
    a.join([B_ADDR], 0.0)
    [(data, dst)] = a.datagrams_to_send(0.0)
    assert dst == B_ADDR
    assert data[:41] == bytes((ROUTE_REQ,)) + id_to_bytes(A_ID) * 2  # a lookup of our own ID
    assert data[41:] == bytes(146)  # padded to a third of a full answer (anti-amplification)
    assert a.get_timer() == 1.0

    b.receive_datagram(data, A_ADDR, 0.01)
    assert len(b.routing.table) == 0  # a request alone proves nothing about its origin
    [(reply, dst), (probe, dst2)] = b.datagrams_to_send(0.01)
    assert dst == dst2 == A_ADDR
    assert reply == bytes((ROUTE_RES,)) + id_to_bytes(B_ID) + id_to_bytes(A_ID)  # A is not told about A
    # then an address probe: a bare request whose target only B can compute
    assert probe == bytes((ROUTE_REQ,)) + id_to_bytes(B_ID) + id_to_bytes(probe_target(b, A_ADDR, A_ID))

    a.receive_datagram(reply, B_ADDR, 0.02)
    [joined] = events(a)
    assert (joined.finished, joined.table_size, joined.rpcs, joined.timeouts) == (0.02, 1, 1, 0)
    assert joined.success
    assert a.routing.table.find(B_ID) >= 0
    assert a.datagrams_to_send(0.02) == []
    assert pending(a) == {}
    assert a.get_timer() == QUIET.refresh_interval

    a.receive_datagram(probe, B_ADDR, 0.02)  # A answers the probe (B validated it: in full)
    [(answer, dst)] = a.datagrams_to_send(0.02)
    assert dst == B_ADDR and answer[0] == ROUTE_RES
    b.receive_datagram(answer, A_ADDR, 0.03)
    assert b.routing.table.find(A_ID) >= 0  # now A has shown it answers at its address
    assert pending(b) == {}  # and nothing kept per probe
    assert a.drop_counts() == {}
    assert b.drop_counts() == {}


def test_join_without_answer_reports_failure():
    a = node(A_ID)
    a.join([B_ADDR, C_ADDR], 0.0)
    assert {dst for _, dst in a.datagrams_to_send(0.0)} == {B_ADDR, C_ADDR}
    a.handle_timer(0.5)
    assert events(a) == []
    a.handle_timer(a.get_timer())
    [joined] = events(a)
    assert (joined.finished, joined.table_size, joined.rpcs, joined.timeouts) == (1.0, 0, 2, 2)
    assert not joined.success


def test_refresh_on_join_refreshes_buckets_beyond_the_closest_neighbour():
    settings = RoutingSettings(refresh_on_join=True)
    a = node(A_ID, settings)
    far_id = A_ID ^ (1 << 150)  # shares 9 bits with A: buckets 0..8 are farther
    a.join([B_ADDR], 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(response(far_id, A_ID), B_ADDR, 0.1)
    assert type(events(a)[0]) is Joined
    sent = a.datagrams_to_send(0.1)
    targets = [decode(data, FROM_WIRE)[0].target for data, _ in sent]
    assert all(dst == B_ADDR for _, dst in sent)
    assert sorted(a.routing.table.bucket_index(t) for t in targets) == list(range(9))


@pytest.mark.parametrize("keyed", [True, False])
def test_three_nodes_learn_each_other(keyed):
    settings = QUIET if keyed else replace(QUIET, keyed_requests=False)
    a, b, c = node(A_ID, settings), node(B_ID, settings), node(C_ID, settings)
    assert b.add_contact(C_ID, C_ADDR, 0.0)
    net = HandNet({A_ADDR: a, B_ADDR: b, C_ADDR: c})
    a.join([B_ADDR], 0.0)
    net.run(0.0)
    [joined] = net.take(A_ADDR)
    # B (the bootstrap A named) at once; C, named by B: at once with keyed requests (C's answer
    # echoes a target only C could know), else once it answers A's address probe
    assert joined.table_size == (2 if keyed else 1) and joined.rpcs == 2
    # the lookup's requests and answers, each request followed by the answer and then the
    # asked node's address probe of A (41 bytes), which A answers; without keys C's answer to
    # the lookup draws A's probe of C (41 bytes), which C answers (session 10: 2 of 10 gone)
    log = [(s, d, len(data)) for s, d, data in net.log if s == A_ADDR or d == A_ADDR]
    assert log == [
        (A_ADDR, B_ADDR, 187), (B_ADDR, A_ADDR, 41 + 26), (B_ADDR, A_ADDR, 41),
        (A_ADDR, C_ADDR, 187), (A_ADDR, B_ADDR, 41), (C_ADDR, A_ADDR, 41),
        (C_ADDR, A_ADDR, 41),
    ] + ([(A_ADDR, C_ADDR, 41 + 26)] if keyed else [
        (A_ADDR, C_ADDR, 41), (A_ADDR, C_ADDR, 41 + 26), (C_ADDR, A_ADDR, 41)])
    assert a.routing.table.find(C_ID) >= 0 and len(a.routing.table) == 2
    assert c.routing.table.find(A_ID) >= 0  # learned from A's answer to its probe
    assert b.routing.table.find(A_ID) >= 0

    # a peer in the table is found without any traffic
    net.log.clear()
    a.find_peer(C_ID, 1.0)
    net.run(1.0)
    [done] = net.take(A_ADDR)
    assert done.peer == (C_ID, C_ADDR) and done.rpcs == 0 and done.hops == 0
    assert done.success and done.mode is Mode.FIND_PEER and done.latency == 0.0
    assert net.log == []


def test_find_peer_stops_once_the_target_entry_is_learned():
    a, b, c, d = node(A_ID), node(B_ID), node(C_ID), node(D_ID)
    b.add_contact(C_ID, C_ADDR, 0.0)
    b.add_contact(A_ID, A_ADDR, 0.0)
    d.add_contact(B_ID, B_ADDR, 0.0)
    net = HandNet({A_ADDR: a, B_ADDR: b, C_ADDR: c, D_ADDR: d})
    lookup_id = d.find_peer(C_ID, 2.0)
    net.run(2.0)
    [done] = net.take(D_ADDR)
    assert done.lookup_id == lookup_id
    assert done.peer == (C_ID, C_ADDR)
    assert (done.rpcs, done.hops, done.timeouts) == (1, 1, 0)
    assert (done.started, done.finished) == (2.0, 2.0)
    assert all(dst != C_ADDR for _, dst, _ in net.log)  # C itself is never asked
    assert all(dst != A_ADDR for _, dst, _ in net.log)


def test_find_closest_asks_the_k_closest():
    a, b, c = node(A_ID), node(B_ID), node(C_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    b.add_contact(C_ID, C_ADDR, 0.0)
    net = HandNet({A_ADDR: a, B_ADDR: b, C_ADDR: c})
    a.find_closest(C_ID, 0.0)
    net.run(0.0)
    [done] = net.take(A_ADDR)
    assert done.mode is Mode.FIND_CLOSEST
    assert done.closest == ((C_ID, C_ADDR), (B_ID, B_ADDR))
    assert done.peer is None and done.success
    assert done.rpcs == 2 and done.hops == 2


def test_request_padding_pads_requests_only():
    settings = RoutingSettings(refresh_on_join=False, request_padding=100)
    a, b = node(A_ID, settings), node(B_ID, settings)
    a.add_contact(B_ID, B_ADDR, 0.0)
    b.add_contact(C_ID, C_ADDR, 0.0)
    a.find_closest(0x1234, 0.0)
    [(data, _)] = a.datagrams_to_send(0.0)
    assert len(data) == 141
    b.receive_datagram(data, A_ADDR, 0.0)
    [reply] = [d for d, _ in b.datagrams_to_send(0.0) if d[0] == ROUTE_RES]
    assert len(reply) == 41 + 26  # C only: the requester is left out
    assert b.drop_counts() == {}


def test_settings_validation():
    bad_settings = (
        dict(k=0), dict(k=21), dict(alpha=0), dict(request_timeout=0), dict(refresh_interval=-1),
        dict(request_padding=-1), dict(request_padding=MAX_REQUEST_SIZE - 40),
    )
    for bad in bad_settings:
        with pytest.raises(ValueError):
            RoutingSettings(**bad)
    assert RoutingSettings(request_padding=MAX_REQUEST_SIZE - 41).request_padding == 520


def test_small_k_node_accepts_full_answers():
    """A node with k = 4 still reads a peer's 20-contact answer (the wire format's limit)."""
    a = node(A_ID, RoutingSettings(refresh_on_join=False, k=4))
    a.add_contact(B_ID, B_ADDR, 0.0)
    a.find_closest(1, 0.0)
    a.datagrams_to_send(0.0)
    contacts = [(2 + i, ("10.6.0.%d" % (i + 1), 5004)) for i in range(20)]
    a.receive_datagram(response(B_ID, 1, contacts), B_ADDR, 0.1)
    assert a.drop_counts() == {}
    sent = a.datagrams_to_send(0.1)
    assert [dst for _, dst in sent] == [contacts[1][1], contacts[0][1], contacts[3][1]]  # XOR to 1


def test_too_many_lookups():
    settings = RoutingSettings(refresh_on_join=False, max_lookups=2)
    a = node(A_ID, settings)
    a.add_contact(B_ID, B_ADDR, 0.0)
    a.find_peer(1, 0.0)
    a.find_peer(2, 0.0)
    assert a.routing.lookups_running == 2
    with pytest.raises(TooManyLookups):
        a.find_peer(3, 0.0)


def test_add_contact_refuses_own_id():
    a = node(A_ID)
    assert a.add_contact(A_ID, B_ADDR, 0.0) is False
    assert len(a.routing.table) == 0


# -- timers ----------------------------------------------------------------------------------------


def test_request_timeout_fires_at_get_timer_and_marks_contact_failed():
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    hb = a.routing.table.find(B_ID)
    a.find_peer(0x77, 5.0)
    [(data, dst)] = a.datagrams_to_send(5.0)
    assert dst == B_ADDR
    assert a.get_timer() == 6.0
    a.handle_timer(5.999)  # early: nothing is due
    assert events(a) == [] and a.routing.table.failures(hb) == 0
    assert a.get_timer() == 6.0
    a.handle_timer(a.get_timer())
    [done] = events(a)
    assert type(done) is LookupCompleted
    assert done.peer is None and not done.success
    assert (done.rpcs, done.timeouts, done.latency) == (1, 1, 1.0)
    assert a.routing.table.failures(hb) == 1
    assert pending(a) == {}
    assert a.get_timer() == QUIET.refresh_interval
    # a late answer is unsolicited
    a.receive_datagram(response(B_ID, 0x77), B_ADDR, 6.5)
    assert a.drop_counts() == {"unsolicited": 1}
    assert a.routing.table.failures(hb) == 1


def test_timeouts_drop_a_dead_contact_after_max_failures():
    settings = RoutingSettings(refresh_on_join=False, max_failures=3)
    a = node(A_ID, settings)
    a.add_contact(B_ID, B_ADDR, 0.0)
    now = 0.0
    for i in range(3):
        assert len(a.routing.table) == 1
        a.find_peer(100 + i, now)
        assert len(a.datagrams_to_send(now)) == 1
        now = a.get_timer()
        a.handle_timer(now)
    assert len(a.routing.table) == 0


def test_each_timeout_lets_the_next_contact_be_asked():
    settings = RoutingSettings(refresh_on_join=False, alpha=1)
    a = node(A_ID, settings)
    for i, cid in enumerate((B_ID, C_ID, D_ID)):
        a.add_contact(cid, ("10.0.1.%d" % i, 5004), 0.0)
    a.find_peer(0x55, 0.0)
    assert len(a.datagrams_to_send(0.0)) == 1
    a.handle_timer(1.0)
    assert len(a.datagrams_to_send(1.0)) == 1
    assert a.get_timer() == 2.0
    a.handle_timer(2.0)
    assert len(a.datagrams_to_send(2.0)) == 1
    a.handle_timer(3.0)
    [done] = events(a)
    assert (done.rpcs, done.timeouts, done.finished) == (3, 3, 3.0)


def test_two_lookups_for_one_target_share_a_request():
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    first = a.find_closest(0x99, 0.0)
    second = a.find_peer(0x99, 0.0)
    sent = a.datagrams_to_send(0.0)
    assert len(sent) == 1
    a.receive_datagram(response(B_ID, 0x99), B_ADDR, 0.1)
    done = {e.lookup_id: e for e in events(a)}
    assert set(done) == {first, second}
    assert done[first].closest == ((B_ID, B_ADDR),)
    assert done[second].peer is None


def test_refresh_of_idle_buckets():
    settings = RoutingSettings(refresh_on_join=False, refresh_interval=100.0,
                               free_slow_slots=False)  # the timer is the requests' timeout
    a = node(A_ID, settings)
    b_id = A_ID ^ (1 << 159) ^ 5  # bucket 0
    c_id = A_ID ^ (1 << 156) ^ 7  # bucket 3
    a.add_contact(b_id, B_ADDR, 0.0)
    a.add_contact(c_id, C_ADDR, 0.0)
    assert a.get_timer() == 100.0
    a.handle_timer(50.0)
    assert a.datagrams_to_send(50.0) == []
    # a lookup into bucket 0 at t=50 keeps that bucket fresh
    target0 = A_ID ^ (1 << 159) ^ 12345
    a.find_closest(target0, 50.0)
    for data, dst in a.datagrams_to_send(50.0):
        responder = b_id if dst == B_ADDR else c_id
        a.receive_datagram(response(responder, target0), dst, 50.0)
    assert len(events(a)) == 1
    assert a.get_timer() == 100.0
    a.handle_timer(99.99)
    assert a.datagrams_to_send(99.99) == []
    a.handle_timer(100.0)
    sent = a.datagrams_to_send(100.0)
    buckets = {a.routing.table.bucket_index(decode(d, FROM_WIRE)[0].target) for d, _ in sent}
    assert buckets == {1, 2, 3}
    assert {dst for _, dst in sent} == {B_ADDR, C_ADDR}
    assert events(a) == []  # refreshes report nothing
    assert a.get_timer() == 101.0  # the refresh requests' timeout
    a.handle_timer(101.0)
    assert a.get_timer() == 150.0  # bucket 0 was last touched at 50


def test_refreshes_beyond_max_lookups_are_counted():
    """Idle buckets 1-3 at the hour, one lookup slot free: bucket 1 is refreshed, buckets 2
    and 3 are refused and counted (a counted drop, not a silent one); at the next hour, with
    all four idle and two slots, the longest idle (2 and 3) go first, not 0 and 1 again."""
    settings = RoutingSettings(refresh_on_join=False, refresh_interval=100.0,
                               free_slow_slots=False, max_lookups=2)
    a = node(A_ID, settings)
    a.add_contact(A_ID ^ (1 << 159) ^ 5, B_ADDR, 0.0)  # bucket 0
    a.add_contact(A_ID ^ (1 << 156) ^ 7, C_ADDR, 0.0)  # bucket 3
    a.find_peer(A_ID ^ (1 << 159) ^ 12345, 99.5)  # a user's lookup holds one slot at the hour
    a.datagrams_to_send(99.5)
    a.handle_timer(100.0)
    sent = a.datagrams_to_send(100.0)
    targets = {a.routing.table.bucket_index(decode(d, FROM_WIRE)[0].target) for d, _ in sent}
    assert 1 in targets and not targets & {2, 3}
    assert a.drop_counts() == {"refresh_refused": 2}
    while a.get_timer() < 200.0:  # the user's lookup and the refresh time out
        a.handle_timer(a.get_timer())
        a.datagrams_to_send(a.get_timer())
    assert a.routing.lookups_running == 0 and a.get_timer() == 200.0
    a.handle_timer(200.0)
    sent = a.datagrams_to_send(200.0)
    targets = {a.routing.table.bucket_index(decode(d, FROM_WIRE)[0].target) for d, _ in sent}
    assert targets == {2, 3}
    assert a.drop_counts() == {"refresh_refused": 4}


# -- bad input -------------------------------------------------------------------------------------

TARGET = 0x0F0F
OTHER_ID = 0x7777


def _asking_node():
    """A with B in its table and a request to B for TARGET in flight."""
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    a.find_peer(TARGET, 0.0)
    assert len(a.datagrams_to_send(0.0)) == 1
    return a


def _state(a):
    return (
        len(a.routing.table),
        sorted(map(repr, pending(a))),
        len(a.routing.registry),
        a.routing.lookups_running,
        a.get_timer(),
    )


BAD = {
    "empty": (b"", C_ADDR),
    "truncated": (request(OTHER_ID, TARGET)[:40], C_ADDR),
    "oversized": (request(OTHER_ID, TARGET) + bytes(MAX_REQUEST_SIZE - 40), C_ADDR),
    "unknown_type": (b"\x07" + bytes(40), C_ADDR),
    "bad_length": (response(B_ID, TARGET) + bytes(25), B_ADDR),
    "unsolicited": (response(C_ID, TARGET), C_ADDR),
    "unsolicited/other-target": (response(B_ID, TARGET + 1), B_ADDR),
    "wrong_responder": (response(OTHER_ID, TARGET, [(TARGET, D_ADDR)]), B_ADDR),
    "own_id/responder": (response(A_ID, TARGET, [(TARGET, D_ADDR)]), B_ADDR),
    "own_id/origin": (request(A_ID, TARGET), C_ADDR),
    "oversized/21-contacts": (
        response(B_ID, TARGET, [(i + 1, ("10.9.0.%d" % (i + 1), 5004)) for i in range(21)]),
        B_ADDR,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_whole_datagram_drops_are_counted_without_state_change(case):
    a = _asking_node()
    data, src = BAD[case]
    before = _state(a)
    a.receive_datagram(data, src, 0.5)
    assert a.drop_counts() == {case.split("/")[0]: 1}
    assert _state(a) == before
    assert a.datagrams_to_send(0.5) == []
    assert events(a) == []
    # the request in flight is intact: the genuine answer is still accepted
    a.receive_datagram(response(B_ID, TARGET, [(TARGET, D_ADDR)]), B_ADDR, 0.6)
    [done] = events(a)
    assert done.peer == (TARGET, D_ADDR)


def test_wrong_responder_lets_the_request_time_out():
    a = _asking_node()
    a.receive_datagram(response(OTHER_ID, TARGET), B_ADDR, 0.5)
    hb = a.routing.table.find(B_ID)
    a.handle_timer(1.0)
    [done] = events(a)
    assert done.peer is None and done.timeouts == 1
    assert a.routing.table.failures(hb) == 1
    assert a.routing.table.find(OTHER_ID) == -1


def test_unusable_contacts_are_counted_and_skipped():
    a = _asking_node()
    good = ("10.0.0.7", 5004)
    bad_addrs = [("0.0.0.0", 5004), ("10.0.0.8", 0), ("255.255.255.255", 5004), ("224.0.0.1", 5004),
                 ("239.1.1.1", 5004)]
    contacts = [(0x100 + i, addr) for i, addr in enumerate(bad_addrs)] + [(0x200, good)]
    a.receive_datagram(response(B_ID, TARGET, contacts), B_ADDR, 0.5)
    assert a.drop_counts() == {"bad_contact": 5}
    sent = a.datagrams_to_send(0.5)
    assert [dst for _, dst in sent] == [good]
    registry = a.routing.registry
    assert all(addr not in bad_addrs for addr in registry.addrs if addr is not None)


def test_own_id_in_a_contact_list_is_skipped():
    a = _asking_node()
    a.receive_datagram(response(B_ID, TARGET, [(A_ID, ("10.0.0.9", 5004))]), B_ADDR, 0.5)
    assert a.datagrams_to_send(0.5) == []
    [done] = events(a)
    assert done.peer is None and done.rpcs == 1


def test_requests_from_new_addresses_are_answered_probed_and_learned_once_they_answer():
    a = node(A_ID)
    a.add_contact(D_ID, D_ADDR, 0.0)
    a.receive_datagram(request(B_ID, 0x1), B_ADDR, 0.0)
    a.receive_datagram(request(C_ID, 0x1), C_ADDR, 0.0)
    out = [(decode(data, FROM_WIRE)[0], dst) for data, dst in a.datagrams_to_send(0.0)]
    assert out == [
        (RouteResponse(A_ID, 0x1, ((D_ID, D_ADDR),)), B_ADDR),  # B is not in the table yet
        (RouteRequest(A_ID, probe_target(a, B_ADDR, B_ID)), B_ADDR),  # the address probe
        (RouteResponse(A_ID, 0x1, ((D_ID, D_ADDR),)), C_ADDR),
        (RouteRequest(A_ID, probe_target(a, C_ADDR, C_ID)), C_ADDR),
    ]
    assert len(a.routing.table) == 1
    a.receive_datagram(response(B_ID, out[1][0].target), B_ADDR, 0.1)  # B answers; C stays silent
    assert a.routing.table.find(B_ID) >= 0
    a.handle_timer(1.5)
    assert a.routing.table.find(C_ID) < 0 and len(a.routing.table) == 2
    assert pending(a) == {}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=600),
                st.builds(lambda t, b: bytes((t,)) + b, st.sampled_from([0, 1]), st.binary(min_size=40, max_size=600)),
            ),
            st.sampled_from([B_ADDR, C_ADDR, D_ADDR]),
        ),
        max_size=8,
    )
)
def test_garbage_never_raises_and_malformed_input_is_counted(datagrams):
    a = _asking_node()
    now = 0.1
    for data, src in datagrams:
        before = a.drop_counts()
        a.receive_datagram(data, src, now)
        after = a.drop_counts()
        if not data:
            expected = "empty"
        elif data[0] not in (ROUTE_REQ, ROUTE_RES, ROUTE6_RES):
            expected = "unknown_type"
        else:
            try:
                decode_any(data, FROM_WIRE, 20)  # ROUTE6_RES too (route6.py)
                expected = None
            except MalformedMessage as error:
                expected = error.reason
        if expected is not None:
            assert after - before == {expected: 1}
            assert sum(after.values()) == sum(before.values()) + 1
        a.datagrams_to_send(now)
        a.handle_timer(now)
        now += 0.3
    for _ in range(50):
        if not a.routing.lookups_running:
            break
        a.handle_timer(a.get_timer())
    assert a.routing.lookups_running == 0
    assert len(a.routing.table) <= 20 * 160


# -- flood -----------------------------------------------------------------------------------------


def test_flood_of_fake_ids_keeps_registry_and_table_bounded():
    settings = RoutingSettings(refresh_on_join=False)
    a = node(A_ID, settings)
    rng = Random(2024)
    registry = a.routing.registry
    limit = settings.registry_limit
    biggest = 0
    for i in range(50_000):
        fake = rng.getrandbits(160)
        addr = ("10.%d.%d.%d" % (1 + (i >> 16), (i >> 8) & 255, i & 255), 5004)
        a.receive_datagram(request(fake, rng.getrandbits(160)), addr, i * 0.001)
        if i % 64 == 0:
            a.handle_timer(i * 0.001)  # unanswered probes expire
            a.routing.messages_to_send(i * 0.001)
        size = len(registry)
        if size > biggest:
            biggest = size
    assert biggest > limit // 2  # the flood did fill the registry
    assert biggest <= limit + 1
    assert len(registry.ids) <= limit + 1  # handles were recycled, the lists did not grow
    table = a.routing.table
    for index in range(table.bucket_count()):
        assert len(table.bucket(index)) <= settings.k
        assert len(table.replacements(index)) <= settings.replacement_cache
    # silent addresses never answered a probe: no fake ID entered the table or a cache
    assert len(table) == 0 and list(table.handles()) == []
    assert set(a.drop_counts()) <= {"probe_limit"}  # probes beyond the meter, counted


# -- several IDs at one address (regressions) ------------------------------------------------------


def test_two_ids_at_one_address_across_lookups_never_raise():
    """Two lookups for one target wait on one request to C under different claimed IDs."""
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    t = 1 << 100
    first = a.find_peer(t, 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(response(B_ID, t, [(t ^ 1, C_ADDR)]), B_ADDR, 0.1)
    assert [dst for _, dst in a.datagrams_to_send(0.1)] == [C_ADDR]
    second = a.find_closest(t, 0.2)
    a.datagrams_to_send(0.2)
    a.receive_datagram(response(B_ID, t, [(t ^ 2, C_ADDR)]), B_ADDR, 0.3)
    assert a.datagrams_to_send(0.3) == []  # the request to C is already in flight
    a.receive_datagram(response(t ^ 1, t), C_ADDR, 0.4)  # C is t^1
    for _ in range(10):
        if not a.routing.lookups_running:
            break
        a.handle_timer(a.get_timer())
    done = {e.lookup_id: e for e in events(a)}
    assert set(done) == {first, second}
    assert done[first].peer is None
    assert done[second].closest == ((B_ID, B_ADDR),)  # t^2 at C was refuted by C's answer
    assert a.drop_counts() == {}


@pytest.mark.parametrize("c_answers_as", [None, 1, 2])
def test_lookup_learning_two_ids_at_one_address_still_ends(c_answers_as):
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    t = 1 << 100
    a.find_closest(t, 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(response(B_ID, t, [(t ^ 1, C_ADDR), (t ^ 2, C_ADDR)]), B_ADDR, 0.1)
    assert [dst for _, dst in a.datagrams_to_send(0.1)] == [C_ADDR]  # one datagram for both
    if c_answers_as is not None:
        a.receive_datagram(response(t ^ c_answers_as, t), C_ADDR, 0.2)
    a.handle_timer(1.1)
    a.handle_timer(100.0)
    assert a.routing.lookups_running == 0
    [done] = events(a)
    assert type(done) is LookupCompleted
    if c_answers_as is None:
        assert done.closest == ((B_ID, B_ADDR),)
        assert done.timeouts == 2
    else:
        assert done.closest == ((t ^ c_answers_as, C_ADDR), (B_ID, B_ADDR))
        assert done.timeouts <= 1  # the refuted claim counts as a failed request, if at all


def test_answer_from_an_unclaimed_id_at_a_shared_address_is_wrong_responder():
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    t = 1 << 100
    a.find_closest(t, 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(response(B_ID, t, [(t ^ 1, C_ADDR), (t ^ 2, C_ADDR)]), B_ADDR, 0.1)
    a.datagrams_to_send(0.1)
    before = _state(a)
    a.receive_datagram(response(t ^ 3, t), C_ADDR, 0.2)
    assert a.drop_counts() == {"wrong_responder": 1}
    assert _state(a) == before


@pytest.mark.parametrize("answered", [True, False])
def test_join_through_a_bootstrap_already_in_the_table_completes(answered):
    a = node(A_ID)
    a.add_contact(B_ID, B_ADDR, 0.0)
    a.join([B_ADDR], 0.0)
    assert len(a.datagrams_to_send(0.0)) == 1  # probe and table request share one datagram
    if answered:
        a.receive_datagram(response(B_ID, A_ID), B_ADDR, 0.1)
        [joined] = events(a)
        assert type(joined) is Joined and joined.finished == 0.1 and joined.success
        assert joined.timeouts == 0
    else:
        a.handle_timer(1.0)
        [joined] = events(a)
        assert type(joined) is Joined and joined.finished == 1.0
        assert joined.timeouts >= 1
    assert a.routing.lookups_running == 0
    assert a.routing.table.find(B_ID) >= 0


def test_registry_collection_never_frees_handles_a_lookup_still_uses():
    """A flood forces collections while a lookup waits on contacts it learned: their handles must
    keep resolving to the same (id, address), and the lookup must end with the right peer."""
    settings = RoutingSettings(refresh_on_join=False, registry_limit=500, alpha=1)
    a = node(A_ID, settings)
    a.add_contact(B_ID, B_ADDR, 0.0)
    t = 1 << 120
    learned = [(t ^ (1 << i), ("10.2.0.%d" % (i + 1), 5004)) for i in range(1, 6)]
    a.find_peer(t, 0.0)
    a.datagrams_to_send(0.0)
    a.receive_datagram(response(B_ID, t, learned), B_ADDR, 0.1)
    [(data, dst)] = a.datagrams_to_send(0.1)
    assert (decode(data, FROM_WIRE)[0].target, dst) == (t, learned[0][1])  # the closest first
    rng = Random(5)
    collected = 0
    for i in range(5000):
        before = len(a.routing.registry)
        a.receive_datagram(request(rng.getrandbits(160), 1), ("10.3.%d.%d" % (i >> 8, i & 255), 5004), 0.2)
        collected += len(a.routing.registry) < before
        a.routing.messages_to_send(0.2)
        assert len(a.routing.registry) <= 501
    assert collected >= 3  # (the request flood guard serves 2,000 of the 5,000 at one instant)
    # the first contact answers with the target; the remaining learned ones are still intact
    a.receive_datagram(response(learned[0][0], t, [(t, ("10.4.0.1", 5004))]), learned[0][1], 0.3)
    [done] = events(a)
    assert done.peer == (t, ("10.4.0.1", 5004))
    assert done.rpcs == 2 and done.hops == 2
    table = a.routing.table
    for h in table.handles():
        assert a.routing.registry.addrs[h] is not None
    assert table.find(B_ID) >= 0
