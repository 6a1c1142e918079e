"""Anti-amplification: toward an address that has not shown it receives our datagrams, an answer
is at most 3× the request (QUIC's rule); our own padded requests still draw full answers."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings, strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import FULL_ANSWER_PADDING, RoutingSettings
from kadtalk.node.routing.messages import (
    MAX_REQUEST_SIZE,
    REQUEST_SIZE,
    RouteRequest,
    RouteResponse,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False)
SERVER_ID = 0x5 << 156
ATTACKER = ("192.0.2.66", 4444)


def server_with_full_table() -> Node:
    server = Node(SERVER_ID, ContactRegistry(), Random(1), SETTINGS, 0.0)
    rng = Random(2)
    for i in range(200):
        server.add_contact(rng.getrandbits(160), ("10.1.%d.%d" % (i // 250, i % 250 + 1), 5004), 0.0)
    return server


def answer_to(server: Node, data: bytes, addr=ATTACKER, now: float = 0.0) -> bytes:
    server.receive_datagram(data, addr, now)
    [(reply, dst)] = server.datagrams_to_send(now)
    assert dst == addr
    return reply


def test_padding_default_is_a_third_of_a_full_answer():
    assert REQUEST_SIZE + FULL_ANSWER_PADDING == 187
    assert 3 * (REQUEST_SIZE + FULL_ANSWER_PADDING) >= MAX_REQUEST_SIZE


def test_bare_41_byte_request_gets_at_most_three_times_its_size():
    server = server_with_full_table()
    reply = answer_to(server, encode_request(RouteRequest(123, 456), 0))
    assert len(reply) <= 3 * 41
    assert len(reply) == 41 + 3 * 26  # nanotalk's bare request still gets three contacts
    assert server.routing.limited_answers == 1
    assert server.drop_counts() == {}  # limited, not dropped


def test_padded_request_gets_a_full_answer():
    server = server_with_full_table()
    reply = answer_to(server, encode_request(RouteRequest(123, 456), FULL_ANSWER_PADDING))
    assert len(reply) == 41 + 20 * 26
    assert server.routing.limited_answers == 0


@settings(max_examples=200, deadline=None)
@given(padding=st.integers(0, MAX_REQUEST_SIZE - REQUEST_SIZE), target=st.integers(0, 2**160 - 1))
def test_answer_to_an_unvalidated_address_never_exceeds_three_times_the_request(padding, target):
    server = server_with_full_table()
    request = encode_request(RouteRequest(99, target), padding)
    assert len(answer_to(server, request)) <= 3 * len(request)


def test_an_address_that_answered_us_gets_full_answers():
    server = server_with_full_table()
    peer_id = SERVER_ID ^ (1 << 100)  # a deep, empty bucket: it enters the table
    peer_addr = ("10.9.9.9", 5004)
    small = encode_request(RouteRequest(peer_id, 456), 0)
    assert len(answer_to(server, small, peer_addr)) == 41 + 3 * 26
    # The server asks the peer something, and the peer answers from that address: validated.
    server.add_contact(peer_id, peer_addr, 0.0)
    server.find_closest(peer_id ^ 1, 0.0)
    sent = server.datagrams_to_send(0.0)
    asked = [RouteRequest(SERVER_ID, peer_id ^ 1) for _, dst in sent if dst == peer_addr]
    assert asked
    reply = encode_response(RouteResponse(peer_id, peer_id ^ 1, ()), ContactRegistry.addr_to_wire)
    server.receive_datagram(reply, peer_addr, 0.1)
    server.datagrams_to_send(0.1)
    assert len(answer_to(server, small, peer_addr)) == 41 + 20 * 26
    assert len(answer_to(server, small)) == 41 + 3 * 26  # others are still limited


def test_remembered_small_senders_are_bounded():
    from kadtalk.node.routing.layer import VALIDATED_LIMIT

    server = server_with_full_table()
    for i in range(VALIDATED_LIMIT + 500):
        source = ("198.51.100.%d" % (i % 250), 1024 + i)
        answer_to(server, encode_request(RouteRequest(99, i), 0), source, now=i * 0.01)
    assert len(server.routing._validated) == VALIDATED_LIMIT
