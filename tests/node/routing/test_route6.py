"""The IPv6 routing extension (route6.py, docs/protocol.md section 23): a marked ROUTE_REQ draws
ROUTE6_RES with IPv6 contacts; an unmarked one (nanotalk's) draws ROUTE_RES with IPv4 only; the
3x amplification limit holds for the bigger entries; garbage is a counted drop."""

from __future__ import annotations

import ipaddress
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    ROUTE_REQ,
    ROUTE_RES,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
)
from kadtalk.node.routing.route6 import (
    MARKER,
    MAX_ROUTE6_SIZE,
    ROUTE6_REQUEST_SIZE,
    ROUTE6_RES,
    decode_response,
)
from kadtalk.node.routing.route6 import decode as decode_any
from kadtalk.node.routing.route6 import encode_request as encode_request6
from kadtalk.node.routing.route6 import encode_response as encode_response6
from kadtalk.node.stack import Node

SERVER_ID = 0x5 << 156
ASKER = ("2001:db8:66::1", 4444)
V6 = [(str(ipaddress.IPv6Address("2001:db8:%x::%x" % (i, i + 1))), 5004) for i in range(40)]
V4 = [("10.1.0.%d" % (i + 1), 5004) for i in range(40)]


def server(ipv6: bool = False) -> Node:
    node = Node(SERVER_ID, ContactRegistry(), Random(1),
                RoutingSettings(refresh_on_join=False, ipv6=ipv6), 0.0)
    rng = Random(2)
    for addr in [a for pair in zip(V6, V4) for a in pair]:
        node.add_contact(rng.getrandbits(160), addr, 0.0)
    return node


def answer(node: Node, data: bytes, addr=ASKER, now: float = 0.0) -> tuple[bytes, list[bytes]]:
    node.receive_datagram(data, addr, now)
    out = node.datagrams_to_send(now)
    assert all(dst == addr for _, dst in out)
    [reply] = [d for d, _ in out if d[0] in (ROUTE_RES, ROUTE6_RES)]
    return reply, [d for d, _ in out if d[0] == ROUTE_REQ]


def test_sizes_a_full_ipv6_answer_fits_three_times_a_route6_request_and_a_probe():
    assert MAX_ROUTE6_SIZE == 41 + 20 * 39 == 821
    assert ROUTE6_REQUEST_SIZE == 288 and 3 * ROUTE6_REQUEST_SIZE - REQUEST_SIZE >= MAX_ROUTE6_SIZE


def test_a_marked_request_draws_route6_res_with_both_families_in_full():
    node = server()
    request = encode_request6(RouteRequest(123, 456, 187))
    assert len(request) == ROUTE6_REQUEST_SIZE and request[41:45] == MARKER == b"IPv6"
    reply, probes = answer(node, request)
    assert reply[0] == ROUTE6_RES and len(reply) + sum(map(len, probes)) <= 3 * len(request)
    msg, skipped = decode_response(reply)
    assert skipped == 0 and len(msg.contacts) == 20  # the full answer, even unvalidated
    families = {":" in addr[0] for _, addr in msg.contacts}
    assert families == {True, False}
    table = node.routing.table.closest(456, 20)
    regs = node.routing.registry
    assert list(msg.contacts) == [(regs.ids[h], regs.addrs[h]) for h in table]


def test_an_unmarked_request_draws_nanotalks_route_res_with_ipv6_contacts_left_out():
    node = server()
    reply, _ = answer(node, encode_request(RouteRequest(123, 456, 187)), ("192.0.2.9", 4000))
    assert reply[0] == ROUTE_RES and (len(reply) - 41) % 26 == 0
    msg, skipped = decode(reply, ContactRegistry.addr_from_wire)
    assert skipped == 0 and msg.contacts and all(":" not in a[0] for _, a in msg.contacts)


def test_a_small_marked_request_from_an_unvalidated_address_is_held_to_three_times_its_size():
    node = server()
    request = encode_request(RouteRequest(123, 456), 0) + MARKER  # 45 bytes, marked
    reply, probes = answer(node, request)
    assert reply[0] == ROUTE6_RES
    assert len(reply) + sum(map(len, probes)) <= 3 * len(request)
    assert node.routing.limited_answers == 1


def test_a_node_with_ipv6_marks_its_lookup_requests_and_leaves_probes_bare():
    node = Node(1, ContactRegistry(), Random(3), RoutingSettings(ipv6=True), 0.0)
    node.join([("2001:db8::5", 5004)], 0.0)
    [(request, dst)] = node.datagrams_to_send(0.0)
    assert dst == ("2001:db8::5", 5004)
    assert len(request) == ROUTE6_REQUEST_SIZE and request[41:45] == MARKER
    assert decode_any(request, ContactRegistry.addr_from_wire)[0].ipv6
    # a ROUTE_REQ from a stranger draws an address probe: 41 bytes, no marker
    node.receive_datagram(encode_request(RouteRequest(77, 78, 187)), ("2001:db8::9", 1), 0.1)
    probes = [d for d, _ in node.datagrams_to_send(0.1) if d[0] == ROUTE_REQ]
    assert [len(p) for p in probes] == [REQUEST_SIZE]


def test_a_lookup_follows_ipv6_contacts_from_a_route6_answer():
    node = Node(1, ContactRegistry(), Random(3), RoutingSettings(ipv6=True), 0.0)
    boot = ("192.0.2.1", 5004)
    node.join([boot], 0.0)
    [(request, _)] = node.datagrams_to_send(0.0)
    target = decode_any(request, ContactRegistry.addr_from_wire)[0].target
    named = [(0xAB << 152, ("2001:db8::ab", 5004)), (0xCD << 152, ("198.51.100.7", 5004))]
    node.receive_datagram(encode_response6(RouteResponse(99, target, named)), boot, 0.05)
    asked = {dst for d, dst in node.datagrams_to_send(0.05) if d[0] == ROUTE_REQ}
    assert {addr for _, addr in named} <= asked  # learned over IPv4, asked over IPv6
    assert node.drop_counts() == {}


def test_a_node_without_ipv6_reads_route6_res_it_is_sent_and_skips_its_ipv6_contacts():
    node = Node(1, ContactRegistry(), Random(3), RoutingSettings(), 0.0)
    node.join([("192.0.2.1", 5004)], 0.0)
    [(request, _)] = node.datagrams_to_send(0.0)
    assert len(request) == 187 and request[41:] == bytes(146)  # nanotalk's request, unmarked
    target = decode(request, ContactRegistry.addr_from_wire)[0].target
    named = [(5, ("192.0.2.5", 9)), (6, ("2001:db8::6", 9))]
    node.receive_datagram(encode_response6(RouteResponse(99, target, named)),
                          ("192.0.2.1", 5004), 0.05)
    asked = {dst for d, dst in node.datagrams_to_send(0.05) if d[0] == ROUTE_REQ}
    assert ("192.0.2.5", 9) in asked and ("2001:db8::6", 9) not in asked  # it has no IPv6
    assert node.drop_counts() == {"bad_contact": 1}


def test_max_per_subnet_counts_an_ipv6_48():
    node = Node(SERVER_ID, ContactRegistry(), Random(1),
                RoutingSettings(refresh_on_join=False, max_per_subnet=2), 0.0)
    same_bucket = [(1 << 159) | i for i in range(1, 5)]
    taken = [node.add_contact(nid, ("2001:db8:7:%x::1" % i, 5004), 0.0)
             for i, nid in enumerate(same_bucket[:3])]
    other = node.add_contact(same_bucket[3], ("2001:db8:8::1", 5004), 0.0)
    assert taken == [True, True, False] and other  # three in one /48: the third refused


@pytest.mark.parametrize("data, reason", [
    (b"\x0b" + bytes(39), "truncated"),  # shorter than the header
    (b"\x0b" + bytes(40) + bytes(20), "truncated"),  # an ID without an address
    (b"\x0b" + bytes(40) + bytes(20) + b"\x05" + bytes(6), "bad_family"),
    (b"\x0b" + bytes(40) + bytes(20) + b"\x06" + bytes(10), "truncated"),  # cut address
    (b"\x0b" + bytes(40) + (bytes(20) + b"\x04\x0a\0\0\1\0\1") * 21, "oversized"),  # 21 contacts
    (b"\x0b" + bytes(900), "oversized"),
])
def test_malformed_route6_res_is_a_counted_drop(data, reason):
    with pytest.raises(MalformedMessage) as error:
        decode_response(data)
    assert error.value.reason == reason
    node = Node(1, ContactRegistry(), Random(3), RoutingSettings(ipv6=True), 0.0)
    node.receive_datagram(data, ("2001:db8::1", 5), 0.0)
    assert node.drop_counts() == {reason: 1}


def test_unusable_addresses_in_route6_res_are_skipped_and_counted():
    entries = (bytes(20) + bytes.fromhex("06" + "ff02" + "00" * 12 + "0001" + "138c")  # multicast
               + (1).to_bytes(20, "big") + bytes.fromhex("04c0000201138c"))
    msg, skipped = decode_response(b"\x0b" + bytes(40) + entries)
    assert skipped == 1 and msg.contacts == ((1, ("192.0.2.1", 5004)),)


contact = st.tuples(st.integers(0, 2**160 - 1), st.one_of(
    st.sampled_from(V4 + V6), st.tuples(st.ip_addresses(v=6).map(str), st.integers(1, 65535))))


@given(st.integers(0, 2**160 - 1), st.integers(0, 2**160 - 1), st.lists(contact, max_size=20))
def test_route6_res_round_trips(responder, target, contacts):
    data = encode_response6(RouteResponse(responder, target, contacts))
    msg, skipped = decode_response(data)
    kept = [c for c in contacts if c[1] in V4 + V6 or decode_response(
        encode_response6(RouteResponse(0, 0, [c])))[0].contacts]
    assert (msg.responder, msg.target) == (responder, target) and len(data) <= MAX_ROUTE6_SIZE
    assert list(msg.contacts) == kept and skipped == 0


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=900).map(lambda b: b"\x0b" + b), max_size=6))
def test_garbage_route6_res_never_raises(datagrams):
    node = Node(1, ContactRegistry(), Random(3), RoutingSettings(ipv6=True), 0.0)
    node.join([("2001:db8::1", 5004)], 0.0)
    node.datagrams_to_send(0.0)
    for i, data in enumerate(datagrams):
        node.receive_datagram(data, ("2001:db8::1", 5004), 0.01 * i)
        node.datagrams_to_send(0.01 * i)
    try:
        for data in datagrams:
            decode_response(data)
    except MalformedMessage:
        assert sum(node.drop_counts().values()) >= 1
