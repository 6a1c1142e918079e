"""Anti-amplification: toward an address that has not shown it receives our datagrams, an answer
is at most 3× the request (QUIC's rule); our own padded requests still draw full answers."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings, strategies as st

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import FULL_ANSWER_PADDING, RoutingSettings
from kadtalk.node.routing.messages import (
    MAX_REQUEST_SIZE,
    ROUTE_RES,
    REQUEST_SIZE,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

# cache_probes=20 (the default was, before session 10): these tests play a full table's server
# probing an unknown requester for its replacement cache, which the default (2) skips once the
# cache holds two contacts
SETTINGS = RoutingSettings(refresh_on_join=False, cache_probes=20)
SERVER_ID = 0x5 << 156
ATTACKER = ("192.0.2.66", 4444)


def server_with_full_table() -> Node:
    server = Node(SERVER_ID, ContactRegistry(), Random(1), SETTINGS, 0.0)
    rng = Random(2)
    for i in range(200):
        server.add_contact(rng.getrandbits(160), ("10.1.%d.%d" % (i // 250, i % 250 + 1), 5004), 0.0)
    return server


def exchange(server: Node, data: bytes, addr=ATTACKER, now: float = 0.0) -> tuple[bytes, list]:
    """The server's answer to `data` from `addr`, and the address probe it may send there too (a
    new requester enters the table only by answering one): a bare request."""
    server.receive_datagram(data, addr, now)
    out = server.datagrams_to_send(now)
    assert all(dst == addr for _, dst in out)
    [reply] = [d for d, _ in out if d[0] == ROUTE_RES]
    probes = [d for d, _ in out if d[0] != ROUTE_RES]
    assert len(probes) <= 1 and all(len(p) == REQUEST_SIZE for p in probes)
    return reply, probes


def answer_to(server: Node, data: bytes, addr=ATTACKER, now: float = 0.0) -> bytes:
    return exchange(server, data, addr, now)[0]


def test_padding_default_is_a_third_of_a_full_answer():
    assert REQUEST_SIZE + FULL_ANSWER_PADDING == 187
    assert 3 * (REQUEST_SIZE + FULL_ANSWER_PADDING) >= MAX_REQUEST_SIZE


def test_bare_41_byte_request_gets_at_most_three_times_its_size_probe_included():
    server = server_with_full_table()
    reply, [probe] = exchange(server, encode_request(RouteRequest(123, 456), 0))
    assert len(reply) + len(probe) <= 3 * 41
    assert len(reply) == 41 + 1 * 26  # the probe takes the place of two contacts
    assert server.routing.limited_answers == 1
    assert server.drop_counts() == {}  # limited, not dropped


def test_bare_request_without_a_probe_gets_three_contacts():
    server = server_with_full_table()
    known = server.routing.registry.ids[server.routing.table.bucket(1)[0]]
    addr = server.routing.registry.addrs[server.routing.table.bucket(1)[0]]
    reply, probes = exchange(server, encode_request(RouteRequest(known, 456), 0), addr)
    assert probes == []  # a table entry is not probed
    assert len(reply) == 41 + 3 * 26  # nanotalk's bare request gets three contacts
    # its second gets one and a validation probe, whose echo validates the address (session
    # 11; test_validation_probe.py::test_a_table_entry_never_validated_is_validated_by_its_requests)
    reply, [probe] = exchange(server, encode_request(RouteRequest(known, 457), 0), addr, 0.5)
    assert len(reply) == 41 + 1 * 26 and len(reply) + len(probe) <= 3 * 41


def test_padded_request_gets_a_full_answer_once_known_and_all_but_two_contacts_before():
    server = server_with_full_table()
    reply, [probe] = exchange(server, encode_request(RouteRequest(123, 456), FULL_ANSWER_PADDING))
    assert len(reply) == 41 + 18 * 26 and len(reply) + len(probe) <= 3 * 187
    reply = encode_response(RouteResponse(123, 123, ()), ContactRegistry.addr_to_wire)
    server.receive_datagram(reply, ATTACKER, 0.1)  # the requester answers the probe
    reply, probes = exchange(server, encode_request(RouteRequest(123, 456), FULL_ANSWER_PADDING))
    assert len(reply) == 41 + 20 * 26 and probes == []


def test_no_probe_when_an_empty_answer_uses_the_whole_budget():
    server = Node(SERVER_ID, ContactRegistry(), Random(1), RoutingSettings(amplification=1), 0.0)
    for i in range(30):
        server.add_contact(Random(i).getrandbits(160), ("10.1.0.%d" % (i + 1), 5004), 0.0)
    reply, probes = exchange(server, encode_request(RouteRequest(123, 456), 0))
    assert len(reply) == 41 and probes == []


@settings(max_examples=200, deadline=None)
@given(padding=st.integers(0, MAX_REQUEST_SIZE - REQUEST_SIZE), target=st.integers(0, 2**160 - 1),
       origin=st.integers(0, 2**160 - 1))
def test_what_an_unvalidated_address_gets_never_exceeds_three_times_the_request(
    padding, target, origin
):
    server = server_with_full_table()
    request = encode_request(RouteRequest(origin, target), padding)
    reply, probes = exchange(server, request)
    assert len(reply) + sum(map(len, probes)) <= 3 * len(request)


def test_an_address_that_answered_our_probe_gets_full_answers():
    server = server_with_full_table()
    peer_id = SERVER_ID ^ (1 << 100)  # a deep, empty bucket: it enters the table
    peer_addr = ("10.9.9.9", 5004)
    small = encode_request(RouteRequest(peer_id, 456), 0)
    reply, [probe] = exchange(server, small, peer_addr)
    assert len(reply) == 41 + 1 * 26  # and the 41-byte probe
    # The peer answers the probe (its target echoed, by the claimed ID) from that address.
    target = decode(probe, ContactRegistry.addr_from_wire)[0].target
    server.receive_datagram(encode_response(RouteResponse(peer_id, target, ()),
                                            ContactRegistry.addr_to_wire), peer_addr, 0.1)
    assert server.routing.table.find(peer_id) >= 0
    assert len(answer_to(server, small, peer_addr, 0.2)) == 41 + 20 * 26
    # Others are still limited (this one claims the peer's ID at another address: probed too,
    # which may start a check of the peer's address, protocol.md section 5.1).
    assert len(answer_to(server, small, now=0.2)) == 41 + 1 * 26


def test_an_answer_to_a_lookup_does_not_validate_its_address():
    """Review M2 (/tmp/poc/p9): when any answer validated (issue 15's wish), bare requests
    forged with the source of an honest neighbour that once answered a lookup drew full answers
    at it, 13.7x. A lookup's target is no secret (a third party may forge the answer): only an
    answer to our unguessable probe validates, and only its address."""
    server = server_with_full_table()
    peer_id = SERVER_ID ^ (1 << 100)
    peer_addr = ("10.9.9.8", 5004)
    server.add_contact(peer_id, peer_addr, 0.0)
    server.find_closest(peer_id ^ 1, 0.0)
    assert any(dst == peer_addr for _, dst in server.datagrams_to_send(0.0))
    reply = encode_response(RouteResponse(peer_id, peer_id ^ 1, ()), ContactRegistry.addr_to_wire)
    server.receive_datagram(reply, peer_addr, 0.1)
    server.datagrams_to_send(0.1)
    sent = got = 0
    for i in range(100):  # bare requests forged with the neighbour's address
        small = encode_request(RouteRequest(SERVER_ID ^ (9 << 100) ^ i, 1000 + i), 0)
        server.receive_datagram(small, peer_addr, 1.0 + i * 0.001)
        sent += len(small)
        got += sum(len(d) for d, dst in server.datagrams_to_send(1.0) if dst == peer_addr)
    assert got <= 3 * sent  # was 13.7x
    assert server.routing.limited_answers == 100


def test_remembered_answering_addresses_are_bounded():
    from kadtalk.node.routing.layer import VALIDATED_LIMIT

    server = server_with_full_table()
    for i in range(VALIDATED_LIMIT + 500):
        source = ("198.51.100.%d" % (i % 250), 1024 + i)
        server.routing._answered_from(source)
    validated = server.routing._validated
    assert len(validated) == VALIDATED_LIMIT
    assert ("198.51.100.0", 1024) not in validated  # the oldest forgotten
    # small requests from strangers are no longer remembered at all
    for i in range(100):
        answer_to(server, encode_request(RouteRequest(99, i), 0), ("203.0.113.%d" % i, 9), i * 0.01)
    assert len(validated) == VALIDATED_LIMIT


def test_a_bootstrap_address_that_answered_our_join_gets_full_answers():
    """Issue 15: a nanotalk node we joined through is a table entry no probe of ours ever
    reached, so its bare requests got 3 contacts however often it answered us. The user named
    that address and it answered our join there: it is validated (a lookup's answer from any
    other address still is not, see below)."""
    server = server_with_full_table()
    boot_id, boot = SERVER_ID ^ (1 << 100), ("10.9.9.7", 5004)
    server.join([boot], 1.0)
    [(request, dst)] = [(d, a) for d, a in server.datagrams_to_send(1.0) if a == boot]
    assert not server.routing.is_validated(boot)
    target = decode(request, ContactRegistry.addr_from_wire)[0].target
    server.receive_datagram(encode_response(RouteResponse(boot_id, target, ()),
                                            ContactRegistry.addr_to_wire), boot, 1.1)
    assert server.routing.is_validated(boot) and server.routing.table.find(boot_id) >= 0
    server.datagrams_to_send(1.1)  # the join goes on with the other contacts
    small = encode_request(RouteRequest(boot_id, 456), 0)
    assert len(answer_to(server, small, boot, 1.2)) == 41 + 20 * 26
    assert len(answer_to(server, small, ATTACKER, 1.2)) <= 41 + 3 * 26  # others still limited
    assert server.drop_counts() == {}


def test_reflection_through_a_lookup_still_fails():
    """Issue 15 asked that an answer to our request validate its sender's address; the attack
    that made the previous session withdraw that rule (13.7x), played whole: a malicious
    contact M names a victim V (no kadtalk there) in its answer to our lookup, forges V's
    answer to our request (it knows the lookup's target), then floods bare requests forged from
    V, claiming V's ID and random ones, and forges blind answers to the probes they draw
    (echoing what it knows: the claimed IDs, the lookup's target, guesses). V is never
    validated, and what we send V stays within 3x what M forged. Only an echo of the probe's
    keyed target (a nonce only we can compute, bound to V and the claimed ID) validates."""
    server = server_with_full_table()
    v_id, v = SERVER_ID ^ (1 << 120) ^ 77, ("203.0.113.80", 80)  # a deep, empty bucket
    target = v_id ^ 3
    m_id, m = v_id ^ (1 << 40), ("198.51.100.9", 4000)  # M is the closest contact we hold
    server.add_contact(m_id, m, 0.0)
    server.datagrams_to_send(0.0)
    server.find_closest(target, 1.0)
    now, asked_v = 1.0, False
    for _ in range(6):  # M answers with V; M forges V's answer to the lookup's request
        for data, dst in server.datagrams_to_send(now):
            msg = decode(data, ContactRegistry.addr_from_wire)[0]
            if type(msg) is not RouteRequest:
                continue
            reply = None
            if dst == m:
                reply = RouteResponse(m_id, msg.target, ((v_id, v),))
            elif dst == v and msg.target == target:
                asked_v = True
                reply = RouteResponse(v_id, target, ())
            if reply is not None:
                server.receive_datagram(encode_response(reply, ContactRegistry.addr_to_wire),
                                        dst, now)
        now += 0.01
    assert asked_v and not server.routing.is_validated(v)
    server.datagrams_to_send(now)
    rng = Random(9)
    forged = to_v = 0
    for i in range(300):  # 100 forged requests a second from V for 3 s
        now = 2.0 + i * 0.01
        claimed = v_id if i % 2 else rng.getrandbits(160)
        data = encode_request(RouteRequest(claimed, rng.getrandbits(160)), 0)
        server.receive_datagram(data, v, now)
        forged += len(data)
        out = server.datagrams_to_send(now)
        to_v += sum(len(d) for d, dst in out if dst == v)
        for guess in (claimed, target, v_id, rng.getrandbits(160)):  # blind probe answers
            reply = encode_response(RouteResponse(claimed, guess, ()), ContactRegistry.addr_to_wire)
            server.receive_datagram(reply, v, now)
            forged += len(reply)
        to_v += sum(len(d) for d, dst in server.datagrams_to_send(now) if dst == v)
    assert not server.routing.is_validated(v)
    assert to_v <= 3 * 300 * REQUEST_SIZE  # within 3x of the forged requests alone
    assert server.routing.limited_answers >= 300
    assert server.routing.table.find(v_id) < 0  # and V's ID never entered the table


def test_limits_off_answers_every_request_in_full():
    """`limits=False` (capacity benchmarks only) lifts the flood limits and the 3x rule."""
    server = Node(SERVER_ID, ContactRegistry(), Random(1),
                  RoutingSettings(refresh_on_join=False, limits=False), 0.0)
    for i in range(200):
        server.add_contact(Random(i).getrandbits(160), ("10.1.0.%d" % (i + 1), 5004), 0.0)
    server.datagrams_to_send(0.0)
    answers = 0
    for i in range(5000):  # 5,000 bare requests from one source in 0.05 s
        server.receive_datagram(encode_request(RouteRequest(1000 + i, i), 0), ATTACKER, i * 1e-5)
        out = server.datagrams_to_send(i * 1e-5)
        answers += sum(1 for d, _ in out if d[0] == ROUTE_RES and len(d) == 41 + 20 * 26)
    assert answers == 5000 and server.drop_counts() == {}
    assert server.routing.limited_answers == 0

    limited = server_with_full_table()  # the default keeps both
    for i in range(5000):
        limited.receive_datagram(encode_request(RouteRequest(1000 + i, i), 0), ATTACKER, i * 1e-5)
    drops = limited.drop_counts()
    assert drops["rate_limited"] + drops["rate_limited_source"] > 0
    assert limited.routing.limited_answers > 0
