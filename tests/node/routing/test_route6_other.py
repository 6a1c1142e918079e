"""A dual-stack node's other address (docs/protocol.md section 23, "The other address"): a
dual-stack node names itself at its IPv6 address, last, in its ROUTE6_RES to a marked request
over IPv4; a responder R that holds it as an entry at IPv4 (and opted in: `other_addresses`, on
in these layers) takes that entry as an announce only from an answer to its own keyed request
(a join's or refresh's, or the query a marked request from the entry draws), probes the
announced address (special ranges refused), keeps it beside the entry only when the probe's
answer comes from there by the same ID, and names the entry at it to requesters that ask over
IPv6. Played with real routing layers and explicit times; the attacker announcing a victim's
address; nanotalk's requests answered byte for byte as before."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node import addresses
from kadtalk.node.routing import route6
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    ROUTE_REQ,
    ROUTE_RES,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.routing.route6 import (
    OTHER_LIFETIME,
    OTHER_LIMIT,
    OTHER_REFRESH,
    ROUTE6_RES,
    OtherAddresses,
    decode_response,
    own_entry,
)
from kadtalk.node.routing.route6 import encode_request as encode_request6

R_ID, P_ID, Q_ID, M_ID, V_ID = (0x1 << 156, 0x2 << 156, 0x3 << 156, 0x4 << 156, 0x6 << 156)
R4, R6 = ("192.0.2.1", 5004), ("2001:db8:1::1", 5004)  # the responder, dual-stack
P4, P6 = ("198.51.100.2", 5004), ("2001:db8:2::2", 5004)  # a dual-stack peer
Q6 = ("2001:db8:3::3", 5004)  # an IPv6-only requester
Q4 = ("203.0.113.3", 5004)  # a dual-stack requester asking over IPv4
M4 = ("198.51.100.4", 5004)  # an attacker
V6 = ("2001:db8:6::6", 5004)  # its victim
TARGET = P_ID ^ 1  # P is the nearest entry to it


def layer(node_id: int, ipv6: bool = True, **kw) -> RoutingLayer:
    """A routing layer with other addresses on."""
    kw.setdefault("other_addresses", True)
    return RoutingLayer(node_id, ContactRegistry(), Random(node_id >> 156),
                        RoutingSettings(refresh_on_join=False, ipv6=ipv6, **kw))


def responder(**kw) -> RoutingLayer:
    r = layer(R_ID, **kw)
    assert r.add_contact(P_ID, P4, 0.0)  # P held at IPv4, as IPv4 traffic taught it
    r._answered_from(P4)  # and validated there, as an entry admitted by a probe's answer is
    for i in range(5):
        r.add_contact((0x7 << 156) + i, ("10.9.0.%d" % (i + 1), 5004), 0.0)
    return r


def peer(node_id: int = P_ID, at6=P6, contacts: int = 3) -> RoutingLayer:
    """A dual-stack node knowing its IPv6 address, holding R and a few others."""
    p = layer(node_id)
    p.announce(at6)
    p.add_contact(R_ID, R4, 0.0)
    for i in range(contacts):
        p.add_contact((0x9 << 156) + i, ("10.8.0.%d" % (i + 1), 5004), 0.0)
    return p


def ask(r: RoutingLayer, data: bytes, src, now: float) -> list[tuple[bytes, object]]:
    r.receive_datagram(data, src, now)
    return r.datagrams_to_send(now)


def answer_to(r: RoutingLayer, src, now: float, plain: bool = False) -> bytes:
    """What `r` answers a lookup request for TARGET from Q at `src` (marked, unless `plain`)."""
    msg = RouteRequest(Q_ID, TARGET, 187)
    data = encode_request(msg) if plain else encode_request6(msg)
    out = ask(r, data, src, now)
    [reply] = [d for d, dst in out if dst == src and d[0] in (ROUTE_RES, ROUTE6_RES)]
    return reply


def named_p(reply: bytes):
    if reply[0] == ROUTE6_RES:
        msg, _ = decode_response(reply)
    else:
        msg, _ = decode(reply, ContactRegistry.addr_from_wire)
    return dict(msg.contacts).get(P_ID)


def keyed_request(r: RoutingLayer, dst, now: float) -> bytes:
    """R's join: its keyed request to `dst` (a request with a keyed target)."""
    r.handle_timer(now)  # earlier requests time out: a fresh one goes out
    r.join([], now)
    [data] = [d for d, to in r.datagrams_to_send(now) if to == dst]
    return data


def exchange(r: RoutingLayer, p: RoutingLayer, request: bytes, now: float, p4=P4, p6=P6):
    """P answers R's `request` over IPv4; R's probes to P6 answered by P from there. Returns
    (P's answer, R's datagrams to P6)."""
    [reply] = [d for d, to in ask(p, request, R4, now) if to == R4 and d[0] == ROUTE6_RES]
    out = ask(r, reply, p4, now + 0.01)
    probes = [d for d, dst in out if dst == p6]
    for probe in probes:
        for data, dst in ask(p, probe, R6, now + 0.02):
            if dst == R6 and data[0] == ROUTE_RES:
                r.receive_datagram(data, p6, now + 0.03)
    r.datagrams_to_send(now + 0.03)
    return reply, probes


def prove(r: RoutingLayer, p: RoutingLayer, now: float) -> list[bytes]:
    """R's keyed request reaches P over IPv4; P names itself at P6; R probes P6, P answers."""
    return exchange(r, p, keyed_request(r, P4, now), now)[1]


# -- the wire: the responder names itself -------------------------------------------------------

def test_a_dual_stack_node_names_itself_last_in_route6_res_over_ipv4_only():
    p = peer()
    msg = RouteRequest(Q_ID, TARGET, 187)
    [(over4, _)] = ask(p, encode_request6(msg), Q4, 1.0)[:1]
    contacts = decode_response(over4)[0].contacts
    assert contacts[-1] == (P_ID, P6) and [c for c, _ in contacts].count(P_ID) == 1
    assert own_entry(contacts, P_ID) == (list(contacts[:-1]), P6)
    [(over6, _)] = ask(p, encode_request6(msg), Q6, 2.0)[:1]
    assert P_ID not in dict(decode_response(over6)[0].contacts)  # over IPv6: the source says it
    plain = [d for d, _ in ask(p, encode_request(msg), Q4, 3.0) if d[0] == ROUTE_RES]
    silent = peer()
    silent.announce(None)
    assert plain == [d for d, _ in ask(silent, encode_request(msg), Q4, 3.0)
                     if d[0] == ROUTE_RES]  # nanotalk's ROUTE_RES, byte for byte


def test_a_full_answer_names_k_minus_one_contacts_and_itself():
    p = peer(contacts=30)
    p.add_contact(Q_ID, Q4, 0.0)  # a contact: no amplification cap
    out = ask(p, encode_request6(RouteRequest(Q_ID, TARGET, 187)), Q4, 1.0)
    [reply] = [d for d, _ in out if d[0] == ROUTE6_RES]  # (and P's query of Q, an entry)
    contacts = decode_response(reply)[0].contacts
    assert len(contacts) == 20 and contacts[-1] == (P_ID, P6)


def test_requests_carry_no_announce():
    p = peer()
    p.add_contact(Q_ID, Q6, 0.0)
    p.find_closest(0xABC, 0.0)
    out = dict((dst, d) for d, dst in p.datagrams_to_send(0.0))
    for data in (out[R4], out[Q6]):
        assert len(data) == route6.ROUTE6_REQUEST_SIZE
        assert data[41:] == b"IPv6" + bytes(len(data) - 45)  # marker and zeros


def test_no_announce_without_ipv6():
    p = layer(P_ID, ipv6=False)
    p.announce(P6)  # a node that cannot reach IPv6 announces nothing
    [(reply, _)] = ask(p, encode_request6(RouteRequest(Q_ID, TARGET, 187)), Q4, 1.0)[:1]
    assert P_ID not in dict(decode_response(reply)[0].contacts)


@settings(max_examples=200, deadline=None)
@given(st.integers(REQUEST_SIZE + 4, 400), st.booleans())
def test_the_self_entry_and_the_query_stay_within_the_amplification_bound(size, entry):
    """A marked request of any size from an address not validated (from an entry: the
    entry's query may go too): what goes back there stays within 3x what came in, and the
    answer names us whenever it names anyone."""
    p = peer(contacts=30)
    if entry:
        p.add_contact(Q_ID, Q4, 0.0)
        assert not p.is_validated(Q4)  # add_contact validates nothing: no query goes
    data = encode_request6(RouteRequest(Q_ID, TARGET, 187))[:size]
    data += bytes(size - len(data))
    out = ask(p, data, Q4, 1.0)
    assert sum(len(d) for d, dst in out if dst == Q4) <= 3 * size
    [reply] = [d for d, _ in out if d[0] == ROUTE6_RES]
    contacts = decode_response(reply)[0].contacts
    assert not contacts or contacts[-1] == (P_ID, P6)


# -- proving and naming ---------------------------------------------------------------------------

def test_an_ipv6_requester_gets_the_entry_at_its_proven_ipv6_address():
    r, p = responder(), peer()
    assert named_p(answer_to(r, Q6, 0.5)) == P4  # before: the one address held
    probes = prove(r, p, 1.0)
    assert len(probes) == 1 and len(probes[0]) == REQUEST_SIZE  # a bare probe, 41 bytes
    assert named_p(answer_to(r, Q6, 2.0)) == P6  # IPv6 requester: IPv6
    assert named_p(answer_to(r, Q4, 2.0)) == P4  # asked over IPv4: IPv4, as before
    assert r.table.find(P_ID) >= 0 and r.registry.addrs[r.table.find(P_ID)] == P4  # not moved
    assert r.is_validated(P6)
    assert not r.table.address_checks  # no check of the IPv4 address: both are its own


def test_the_self_entry_is_no_lookup_contact():
    """R's lookup does not ask P at P6 (only the 41-byte announce probe goes there)."""
    r, p = responder(), peer()
    probes = prove(r, p, 1.0)
    assert [len(d) for d in probes] == [REQUEST_SIZE]
    for t in (1.1, 1.5, 2.5):
        r.handle_timer(t)
        assert all(dst != P6 for _, dst in r.datagrams_to_send(t))


def test_a_joining_node_learns_a_new_entry_s_other_address_at_once():
    """R does not hold P yet: its keyed request to P (named by a contact, say) is answered,
    which admits P and takes its announce in the same answer."""
    r = layer(R_ID)
    r.add_contact((0x7 << 156), ("10.9.0.1", 5004), 0.0)
    p = peer()
    r.join([], 1.0)
    r.datagrams_to_send(1.0)
    lookup = next(iter(r._lookups.values()))
    lookup.add_contacts([(P_ID, P4)], 2, r.registry.intern, R_ID)  # an answer named P at P4
    r._advance(lookup, 1.0)
    [request] = [d for d, to in r.datagrams_to_send(1.0) if to == P4]
    reply, probes = exchange(r, p, request, 1.0)
    assert r.registry.addrs[r.table.find(P_ID)] == P4 and len(probes) == 1
    assert named_p(answer_to(r, Q6, 2.0)) == P6


def test_a_marked_request_from_an_entry_draws_a_keyed_query_and_its_answer_announces():
    r, p = responder(), peer()
    p.find_closest(0xABC, 1.0)
    [request] = [d for d, to in p.datagrams_to_send(1.0) if to == R4]
    out = ask(r, request, P4, 1.0)
    [query] = [d for d, to in out if to == P4 and d[0] == ROUTE_REQ]
    assert len(query) == route6.ROUTE6_REQUEST_SIZE and query[41:45] == b"IPv6"
    reply, probes = exchange(r, p, query, 1.1)
    assert len(probes) == 1 and named_p(answer_to(r, Q6, 2.0)) == P6
    p.find_closest(0xABD, 3.0)  # another request within OTHER_REFRESH: no query
    [request] = [d for d, to in p.datagrams_to_send(3.0) if to == R4]
    assert [d[0] for d, to in ask(r, request, P4, 3.0) if to == P4] == [ROUTE6_RES]


def test_a_query_unanswered_is_not_repeated_within_the_refresh():
    r = responder()
    sent = []
    for t in (1.0, 5.0, 100.0, 1.0 + OTHER_REFRESH):
        out = ask(r, encode_request6(RouteRequest(P_ID, 0x55, 187)), P4, t)
        sent.append(sum(1 for d, to in out if to == P4 and d[0] == ROUTE_REQ))
    assert sent == [1, 0, 0, 1]


def test_an_unkeyed_answer_announces_nothing():
    """R's user lookup asks P with the lookup's own target: whoever named P to R knows it and
    could forge the answer from P4, so P's self-entry there draws no probe."""
    r, p = responder(), peer()
    r.find_closest(TARGET, 1.0)
    [request] = [d for d, to in r.datagrams_to_send(1.0) if to == P4]
    assert request[21:41] == TARGET.to_bytes(20, "big")
    reply, probes = exchange(r, p, request, 1.0)
    assert reply.endswith(P_ID.to_bytes(20, "big") + addresses.to_wire(P6)) and probes == []
    assert named_p(answer_to(r, Q6, 2.0)) == P4


def test_a_plain_request_gets_route_res_exactly_as_without_the_other_address():
    r, p = responder(), peer()
    before = answer_to(responder(), Q4, 2.0, plain=True)
    prove(r, p, 1.0)
    assert answer_to(r, Q4, 2.0, plain=True) == before
    assert answer_to(r, Q6, 2.0, plain=True)[0] == ROUTE_RES  # nanotalk over IPv6: ROUTE_RES
    assert named_p(answer_to(r, Q6, 2.0, plain=True)) == P4


def test_a_kept_address_is_probed_again_only_after_the_refresh_and_named_for_its_lifetime():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    assert prove(r, p, 100.0) == []  # proven 99 s ago
    assert len(prove(r, p, 1.03 + OTHER_REFRESH)) == 1  # due again
    assert named_p(answer_to(r, Q6, 1.03 + OTHER_LIFETIME)) == P6  # the second proof
    r2 = responder()
    prove(r2, peer(), 1.0)
    assert named_p(answer_to(r2, Q6, OTHER_LIFETIME)) == P6
    assert named_p(answer_to(r2, Q6, 1.03 + OTHER_LIFETIME)) == P4  # the proof expired


def test_a_failing_ipv4_entry_that_answers_keyed_keeps_its_place_and_its_other_address():
    """The keyed answer (or the query's echo) comes from the entry's IPv4 address by its ID, as a
    probe's answer would: the failure is cleared, the entry stays there, the other address is
    kept beside it."""
    for path in ("keyed", "query"):
        r, p = responder(), peer()
        if path == "keyed":
            request = keyed_request(r, P4, 1.0)
            r.table.failed(r.table.find(P_ID))
        else:
            r.table.failed(r.table.find(P_ID))
            p.find_closest(0xABC, 1.0)
            [marked] = [d for d, to in p.datagrams_to_send(1.0) if to == R4]
            [request] = [d for d, to in ask(r, marked, P4, 1.0) if to == P4 and d[0] == ROUTE_REQ]
        exchange(r, p, request, 1.1)
        entry = r.table.find(P_ID)
        assert r.registry.addrs[entry] == P4 and r.table.failures(entry) == 0, path
        assert r._others.get(entry, 2.0) >= 0 and named_p(answer_to(r, Q6, 2.0)) == P6, path


def test_the_ipv6_requester_is_not_named_to_itself():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    out = ask(r, encode_request6(RouteRequest(P_ID, TARGET, 187)), P6, 2.0)  # P asks over IPv6
    [reply] = [d for d, dst in out if d[0] == ROUTE6_RES]
    assert P_ID not in dict(decode_response(reply)[0].contacts)


def test_a_cached_contact_s_announce_draws_no_probe():
    r = layer(R_ID, k=1)
    r.add_contact(P_ID ^ 1, ("10.9.9.1", 5004), 0.0)  # P's bucket full (k = 1)
    r.add_contact(P_ID, P4, 0.0)  # cached, not an entry
    assert r.table.known(r.registry.intern(P_ID, P4)) and r.table.find(P_ID) < 0
    r.join([], 1.0)
    out = r.datagrams_to_send(1.0)
    assert all(to != P4 for _, to in out)  # k = 1: the entry is asked, not the cached contact
    out = ask(r, encode_request6(RouteRequest(P_ID, 0x55, 187)), P4, 2.0)
    assert [d[0] for d, to in out] == [ROUTE6_RES]  # no query of a cached contact


# -- the attack: announcing someone else's address ----------------------------------------------

def test_an_attacker_announcing_a_victims_address_plants_nothing():
    """M, an entry, names itself at its victim's address V6 in its answer to R's keyed
    request: one 41-byte probe goes to V6 per announce R takes (R's own requests to M pace
    them), the victim answers as itself, nothing is kept or named."""
    r = responder()
    assert r.add_contact(M_ID, M4, 0.0)  # a table entry, as any node can become
    r._answered_from(M4)
    m = peer(M_ID, at6=V6)  # M's layer, "announcing" V6
    victim = layer(V_ID)
    [reply] = [d for d, to in ask(m, keyed_request(r, M4, 1.0), R4, 1.0)
               if to == R4 and d[0] == ROUTE6_RES]
    out = ask(r, reply, M4, 1.01)
    probes = [d for d, dst in out if dst == V6]
    assert len(probes) == 1 and len(probes[0]) == REQUEST_SIZE
    for data, dst in ask(victim, probes[0], R6, 1.02):
        if data[0] == ROUTE_RES:
            r.receive_datagram(data, V6, 1.03)  # the victim answers as itself
    # the attacker forges the answer from V6 as itself, target guessed (the probe's is keyed)
    r.receive_datagram(encode_response(RouteResponse(
        M_ID, int.from_bytes(probes[0][21:41], "big") ^ 1, []), ContactRegistry.addr_to_wire),
        V6, 1.04)
    assert r.stats["unsolicited"] == 2
    assert len(r._others or ()) == 0 and not r.is_validated(V6)
    contacts = dict(decode_response(answer_to(r, Q6, 2.0))[0].contacts)
    assert contacts[M_ID] == M4 and V6 not in contacts.values()
    # M's own marked requests draw one query per OTHER_REFRESH, so one probe of V6 at most
    sent = [dst for i in range(10) for _, dst in ask(r, encode_request6(RouteRequest(
        M_ID, 0x99, 187)), M4, 3.0 + i)]
    assert sent.count(M4) == 11  # ten answers and one query; nothing to V6 without M's reply


def test_an_address_an_answering_entry_holds_is_not_kept_for_another_id():
    r = responder()
    r.add_contact(V_ID, V6, 0.0)  # V held at V6, answering
    rogue = peer(P_ID, at6=V6)  # P's ID answering at V6 (a host sharing V's socket, say)
    exchange(r, rogue, keyed_request(r, P4, 1.0), 1.0, p6=V6)
    assert r.stats["address_taken"] == 1 and len(r._others or ()) == 0


# -- memory --------------------------------------------------------------------------------------

def test_other_addresses_are_bounded_and_follow_the_handles_kept():
    others = OtherAddresses()
    for entry in range(OTHER_LIMIT + 10):
        others.prove(entry, 100_000 + entry, 0.0)
        others.ask(entry, 0.0)
    assert len(others) == OTHER_LIMIT and others.get(0, 1.0) == -1  # the oldest forgotten
    assert len(others._asked) == OTHER_LIMIT and others.due(0, 1.0)
    assert others.get(OTHER_LIMIT + 9, 1.0) == 100_000 + OTHER_LIMIT + 9
    live = {OTHER_LIMIT + 9}
    others.retain(live)
    assert len(others) == 1 and live == {OTHER_LIMIT + 9, 100_000 + OTHER_LIMIT + 9}
    assert list(others._asked) == [OTHER_LIMIT + 9]


def test_a_freed_entry_frees_its_other_address():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    assert r._others.get(r.table.find(P_ID), 2.0) >= 0
    r.table.remove(r.table.find(P_ID))
    for t in range(2, 20):  # the join's requests time out, the lookup ends
        r.handle_timer(float(t))
        r.datagrams_to_send(float(t))
    assert r.lookups_running == 0
    r._forget_unreferenced()
    assert len(r._others) == 0 and P6 not in r.registry._at


# -- the daemon's source of the address ---------------------------------------------------------

def test_a_dual_stack_node_names_the_ipv6_address_set_nat_gives():
    from kadtalk.node.identity import Identity
    from kadtalk.node.stack import Node

    identity = Identity.generate()
    node_id = int.from_bytes(identity.node_id, "big")
    node = Node(node_id, ContactRegistry(), Random(1),
                RoutingSettings(refresh_on_join=False, ipv6=True), 0.0, identity=identity)
    node.set_nat("unknown", None, own=[("192.0.2.9", 5004), P6])  # app/network.py at start

    def self_entry(now: float):
        node.receive_datagram(encode_request6(RouteRequest(Q_ID, TARGET, 187)), Q4, now)
        [reply] = [d for d, _ in node.datagrams_to_send(now) if d[0] == ROUTE6_RES]
        return dict(decode_response(reply)[0].contacts).get(node_id)

    assert self_entry(1.0) == P6
    node.set_nat("cone", ("192.0.2.9", 5004), own=[("192.0.2.9", 5004)])  # no IPv6 any more
    assert self_entry(2.0) is None


# -- special announced addresses (R1, session 11, item 3) ---------------------------------------

def _naming(r: RoutingLayer, wire6: bytes, now: float = 1.0) -> list:
    """P's answer to R's keyed request naming itself at the 19 bytes `wire6` (built by hand:
    to_wire refuses unusable addresses); R's datagrams after it."""
    request = keyed_request(r, P4, now)
    head = bytes((ROUTE6_RES,)) + P_ID.to_bytes(20, "big") + request[21:41]
    out = ask(r, head + P_ID.to_bytes(20, "big") + wire6, P4, now + 0.01)
    return [(d, dst) for d, dst in out if addresses.is_ipv6(dst)]  # not the join's next requests


def _wire6(host: str, port: int = 53) -> bytes:
    import socket
    return b"\x06" + socket.inet_pton(socket.AF_INET6, host) + port.to_bytes(2, "big")


SPECIAL = ["::1", "::", "::10.0.0.1", "::ffff:10.0.0.1", "::ffff:0:10.0.0.1", "100::1",
           "fe80::1", "ff02::1", "ff0e::1", "64:ff9b::a00:1", "64:ff9b:1::a00:1"]


@pytest.mark.parametrize("host", SPECIAL)
def test_a_special_announced_address_is_neither_probed_nor_kept(host):
    r = responder()
    out = _naming(r, _wire6(host))
    assert out == []  # no probe anywhere
    usable = addresses.from_wire(_wire6(host))[0] is not None  # else skipped (bad_contact)
    assert (r.stats or {}).get("announce_refused", 0) == (1 if usable else 0)
    assert route6.refused((host, 53), P4) or not usable
    assert len(r._others or ()) == 0


@pytest.mark.parametrize("host", ["fd00::1", "fc00::5", "2001:db8::1", "2a00:1450::1"])
def test_unique_local_documentation_and_global_addresses_are_probed(host):
    r = responder()
    assert [dst for _, dst in _naming(r, _wire6(host))] == [(host, 53)]
    assert not (r.stats or {}).get("announce_refused")


def test_loopback_is_probed_only_for_an_entry_on_ipv4_loopback():
    r = layer(R_ID)
    local = ("127.0.0.1", 5004)
    assert r.add_contact(P_ID, local, 0.0)  # a datagram from 127/8 comes from this host
    request = keyed_request(r, local, 1.0)
    head = bytes((ROUTE6_RES,)) + P_ID.to_bytes(20, "big") + request[21:41]
    out = ask(r, head + P_ID.to_bytes(20, "big") + _wire6("::1", 5004), local, 1.01)
    assert [dst for _, dst in out if addresses.is_ipv6(dst)] == [("::1", 5004)]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, 65535))
def test_an_announce_is_probed_exactly_when_usable_and_not_refused(packed, port):
    import ipaddress
    r = responder()
    wire = b"\x06" + packed + port.to_bytes(2, "big")
    probed = [dst for _, dst in _naming(r, wire)]
    addr = addresses.from_wire(wire)[0]
    expected = addr is not None and not any(ipaddress.IPv6Address(packed) in net
                                            for net in route6.REFUSED6)
    assert probed == ([addr] if expected else [])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([P_ID, Q_ID, M_ID])),
                max_size=8))
def test_own_entry_splits_out_exactly_the_responder(entries):
    pool = [("10.0.0.1", 1), P6, ("10.0.0.2", 2), V6]
    contacts = tuple((node_id, pool[i]) for i, node_id in entries)
    rest, announce = own_entry(contacts, P_ID)
    assert list(rest) == [c for c in contacts if c[0] != P_ID]
    ipv6 = [a for n, a in contacts if n == P_ID and addresses.is_ipv6(a)]
    assert announce == (ipv6[0] if ipv6 else None)
