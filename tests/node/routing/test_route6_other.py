"""A dual-stack node's other address (docs/protocol.md section 23, "The other address"): a
marked ROUTE_REQ sent over IPv4 announces the sender's IPv6 address after the marker; a
responder that holds the sender at IPv4 (and opted in: `other_addresses`, on in these layers)
probes the announced address (special ranges refused), keeps it beside the entry
only when the probe's answer comes from there by the same ID, and names the entry at it to
requesters that ask over IPv6. Played with real routing layers and explicit times; the
attacker announcing a victim's address; nanotalk's requests answered byte for byte as before."""

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
    ANNOUNCE_AT,
    ANNOUNCE_END,
    OTHER_LIFETIME,
    OTHER_LIMIT,
    OTHER_REFRESH,
    ROUTE6_RES,
    OtherAddresses,
    announced,
    decode_response,
    with_announce,
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
    """A routing layer with other addresses on (`other_addresses`, off by default)."""
    kw.setdefault("other_addresses", True)
    return RoutingLayer(node_id, ContactRegistry(), Random(node_id >> 156),
                        RoutingSettings(refresh_on_join=False, ipv6=ipv6, **kw))


def responder() -> RoutingLayer:
    r = layer(R_ID)
    assert r.add_contact(P_ID, P4, 0.0)  # P held at IPv4, as IPv4 traffic taught it
    for i in range(5):
        r.add_contact((0x7 << 156) + i, ("10.9.0.%d" % (i + 1), 5004), 0.0)
    return r


def peer() -> RoutingLayer:
    p = layer(P_ID)
    p.announce(P6)
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


def p_request(p: RoutingLayer, now: float) -> bytes:
    """A lookup request P sends to R at IPv4 (P's own layer: the announce is its doing)."""
    p.add_contact(R_ID, R4, now)
    p.find_closest(0xABC + int(now * 100), now)  # one lookup per call
    [data] = [d for d, dst in p.datagrams_to_send(now) if dst == R4]
    return data


def prove(r: RoutingLayer, p: RoutingLayer, now: float) -> list[bytes]:
    """P's request reaches R over IPv4; R's probes to P6 are answered by P from there."""
    out = ask(r, p_request(p, now), P4, now)
    probes = [d for d, dst in out if dst == P6]
    for probe in probes:
        p.receive_datagram(probe, R6, now + 0.01)
        for data, dst in p.datagrams_to_send(now + 0.01):
            assert dst == R6
            r.receive_datagram(data, P6, now + 0.02)
    return probes


# -- the wire -----------------------------------------------------------------------------------

def test_a_dual_stack_node_announces_its_ipv6_address_in_marked_requests_over_ipv4_only():
    p = peer()
    p.add_contact(R_ID, R4, 0.0)
    p.add_contact(Q_ID, Q6, 0.0)
    p.find_closest(0xABC, 0.0)
    out = dict((dst, d) for d, dst in p.datagrams_to_send(0.0))
    to4, to6 = out[R4], out[Q6]
    assert len(to4) == len(to6) == route6.ROUTE6_REQUEST_SIZE  # the size is unchanged
    assert to4[41:45] == b"IPv6" and to4[ANNOUNCE_AT:ANNOUNCE_END] == addresses.to_wire(P6)
    assert to4[ANNOUNCE_END:] == bytes(len(to4) - ANNOUNCE_END)
    assert to6[41:] == b"IPv6" + bytes(len(to6) - 45)  # over IPv6: the source says it all
    assert announced(to4) == P6 and announced(to6) is None


def test_no_announce_without_ipv6_nor_in_a_bare_probe():
    p = layer(P_ID, ipv6=False)
    p.announce(P6)  # a node that cannot reach IPv6 announces nothing
    p.add_contact(R_ID, R4, 0.0)
    p.find_closest(0xABC, 0.0)
    [(data, _)] = p.datagrams_to_send(0.0)
    assert data == encode_request(RouteRequest(P_ID, data[21:41] and int.from_bytes(
        data[21:41], "big"), 187))  # nanotalk's request, byte for byte
    bare = encode_request(RouteRequest(P_ID, 5))
    assert with_announce(bare, addresses.to_wire(P6)) == bare
    plain = encode_request(RouteRequest(P_ID, 5, 187))
    assert with_announce(plain, addresses.to_wire(P6)) == plain  # unmarked: unchanged


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_announced_never_raises_and_yields_only_usable_ipv6(data):
    addr = announced(data)
    assert addr is None or (addresses.is_ipv6(addr) and addresses.to_wire(addr) is not None)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, 65535),
       st.integers(ANNOUNCE_END, 400))
def test_announce_round_trip(packed, port, size):
    wire = bytes((addresses.FAMILY_V6,)) + packed + port.to_bytes(2, "big")
    addr, _ = addresses.from_wire(wire)
    data = with_announce(b"\x00" + bytes(40) + b"IPv6" + bytes(size - 45), wire)
    assert len(data) == size and announced(data) == addr  # None for an unusable address


def test_a_zero_padded_marked_request_announces_nothing():
    older = encode_request6(RouteRequest(P_ID, 5, 187))  # older kadtalk's marked request
    assert announced(older) is None


# -- proving and naming ---------------------------------------------------------------------------

def test_an_ipv6_requester_gets_the_entry_at_its_proven_ipv6_address():
    r, p = responder(), peer()
    assert named_p(answer_to(r, Q6, 0.5)) == P4  # before: the one address held
    probes = prove(r, p, 1.0)
    assert len(probes) == 1 and probes[0] == encode_request(decode(
        probes[0], ContactRegistry.addr_from_wire)[0])  # a bare probe, 41 bytes
    assert len(probes[0]) == REQUEST_SIZE
    assert named_p(answer_to(r, Q6, 2.0)) == P6  # IPv6 requester: IPv6
    assert named_p(answer_to(r, Q4, 2.0)) == P4  # asked over IPv4: IPv4, as before
    assert r.table.find(P_ID) >= 0 and r.registry.addrs[r.table.find(P_ID)] == P4  # not moved
    assert r.is_validated(P6)
    assert not r.table.address_checks  # no check of the IPv4 address: both are its own


def test_a_plain_request_gets_route_res_exactly_as_without_the_other_address():
    r, p = responder(), peer()
    before = answer_to(responder(), Q4, 2.0, plain=True)
    prove(r, p, 1.0)
    assert answer_to(r, Q4, 2.0, plain=True) == before
    assert answer_to(r, Q6, 2.0, plain=True)[0] == ROUTE_RES  # nanotalk over IPv6: ROUTE_RES
    assert named_p(answer_to(r, Q6, 2.0, plain=True)) == P4


def test_a_responder_without_ipv6_ignores_the_announce():
    r = layer(R_ID, ipv6=False)
    r.add_contact(P_ID, P4, 0.0)
    out = ask(r, p_request(peer(), 1.0), P4, 1.0)
    assert all(dst == P4 for _, dst in out)


def test_the_announce_of_a_requester_not_held_draws_no_probe_there():
    r = layer(R_ID)  # P not in the table: its IPv4 address is probed first, not the IPv6 one
    out = ask(r, p_request(peer(), 1.0), P4, 1.0)
    assert [dst for d, dst in out if d[0] == ROUTE_REQ] == [P4]


def test_a_kept_address_is_probed_again_only_after_the_refresh_and_named_for_its_lifetime():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    out = ask(r, p_request(p, 100.0), P4, 100.0)
    assert not [d for d, dst in out if dst == P6 and d[0] == ROUTE_REQ]  # proven 99 s ago
    out = ask(r, p_request(p, 1.02 + OTHER_REFRESH), P4, 1.02 + OTHER_REFRESH)
    assert [dst for d, dst in out if dst == P6 and d[0] == ROUTE_REQ] == [P6]  # due again
    assert named_p(answer_to(r, Q6, OTHER_LIFETIME)) == P6
    assert named_p(answer_to(r, Q6, 1.02 + OTHER_LIFETIME)) == P4  # the proof expired


def test_a_failing_ipv4_entry_moves_to_the_ipv6_address_as_before():
    r, p = responder(), peer()
    entry = r.table.find(P_ID)
    r.table.failed(entry)
    prove(r, p, 1.0)
    moved = r.table.find(P_ID)
    assert r.registry.addrs[moved] == P6  # the admission rule: the answering address replaces it
    assert len(r._others or ()) == 0


def test_the_ipv6_requester_is_not_named_to_itself():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    msg = RouteRequest(P_ID, TARGET, 187)
    out = ask(r, encode_request6(msg), P6, 2.0)  # P itself asks over IPv6
    [reply] = [d for d, dst in out if d[0] == ROUTE6_RES]
    contacts = dict(decode_response(reply)[0].contacts)
    assert P_ID not in contacts


# -- the attack: announcing someone else's address ----------------------------------------------

def test_an_attacker_announcing_a_victims_address_plants_nothing():
    r = responder()
    assert r.add_contact(M_ID, M4, 0.0)  # a table entry, as any node can become
    victim = layer(V_ID)  # an honest node at V6, with its own ID
    forged = with_announce(encode_request6(RouteRequest(M_ID, TARGET, 187)),
                           addresses.to_wire(V6))
    out = ask(r, forged, M4, 1.0)
    probes = [d for d, dst in out if dst == V6]
    assert len(probes) == 1 and len(probes[0]) == REQUEST_SIZE  # 41 bytes for 288: no reflection
    # the smallest request read as an announce is 64 bytes: 41/64 = 0.64x (R1, session 11)
    short = forged[:ANNOUNCE_END]
    assert announced(short) == V6 and announced(short[:-1]) is None
    r2 = responder()
    r2.add_contact(M_ID, M4, 0.0)
    [(probe, _)] = [(d, dst) for d, dst in ask(r2, short, M4, 1.0) if dst == V6]
    assert len(probe) / len(short) == 41 / 64
    victim.receive_datagram(probes[0], R6, 1.01)
    for data, dst in victim.datagrams_to_send(1.01):
        r.receive_datagram(data, V6, 1.02)  # the victim answers as itself
    # the attacker forges the answer from V6 as itself, target guessed (the probe's is keyed)
    r.receive_datagram(encode_response(RouteResponse(M_ID, int.from_bytes(probes[0][21:41],
                                                                          "big") ^ 1, []),
                                       ContactRegistry.addr_to_wire), V6, 1.03)
    assert r.stats["unsolicited"] == 2
    assert len(r._others or ()) == 0 and not r.is_validated(V6)
    reply = answer_to(r, Q6, 2.0)
    contacts = dict(decode_response(reply)[0].contacts)
    assert contacts[M_ID] == M4 and V6 not in contacts.values()
    # a flood of announces draws one probe a second at that address
    sent = [dst for i in range(10) for _, dst in ask(r, forged, M4, 2.1 + i * 0.05)]
    assert sent.count(V6) == 1  # the first (1.0 was a second before); none in the next 0.45 s


def test_an_address_an_answering_entry_holds_is_not_kept_for_another_id():
    r = responder()
    r.add_contact(V_ID, V6, 0.0)  # V held at V6, answering
    rogue = layer(P_ID)  # P's ID answering at V6 (a host sharing V's socket, say)
    rogue.announce(V6)
    out = ask(r, p_request(rogue, 1.0), P4, 1.0)
    [probe] = [d for d, dst in out if dst == V6]
    rogue.receive_datagram(probe, R6, 1.01)
    for data, _ in rogue.datagrams_to_send(1.01):
        r.receive_datagram(data, V6, 1.02)
    assert r.stats["address_taken"] == 1 and len(r._others or ()) == 0


# -- memory --------------------------------------------------------------------------------------

def test_other_addresses_are_bounded_and_follow_the_handles_kept():
    others = OtherAddresses()
    for entry in range(OTHER_LIMIT + 10):
        others.prove(entry, 100_000 + entry, 0.0)
    assert len(others) == OTHER_LIMIT and others.get(0, 1.0) == -1  # the oldest forgotten
    assert others.get(OTHER_LIMIT + 9, 1.0) == 100_000 + OTHER_LIMIT + 9
    live = {OTHER_LIMIT + 9}
    others.retain(live)
    assert len(others) == 1 and live == {OTHER_LIMIT + 9, 100_000 + OTHER_LIMIT + 9}


def test_a_freed_entry_frees_its_other_address():
    r, p = responder(), peer()
    prove(r, p, 1.0)
    other = r._others.get(r.table.find(P_ID), 2.0)
    assert other >= 0
    r.datagrams_to_send(2.0)  # R's answer to P's own probe of R6 (it names P at IPv4)
    r.table.remove(r.table.find(P_ID))
    r._forget_unreferenced()
    assert len(r._others) == 0 and P6 not in r.registry._at


# -- the daemon's source of the address ---------------------------------------------------------

def test_a_dual_stack_node_announces_the_ipv6_address_set_nat_names():
    from kadtalk.node.identity import Identity
    from kadtalk.node.stack import Node

    identity = Identity.generate()
    node = Node(int.from_bytes(identity.node_id, "big"), ContactRegistry(), Random(1),
                RoutingSettings(refresh_on_join=False, ipv6=True), 0.0, identity=identity)
    node.set_nat("unknown", None, own=[("192.0.2.9", 5004), P6])  # app/network.py at start
    node.routing.add_contact(R_ID, R4, 0.0)
    node.routing.find_closest(0xABC, 0.0)
    [(data, _)] = node.datagrams_to_send(0.0)
    assert announced(data) == P6
    node.set_nat("cone", ("192.0.2.9", 5004), own=[("192.0.2.9", 5004)])  # no IPv6 any more
    node.routing.add_contact(Q_ID ^ 5, ("10.9.9.9", 5004), 0.0)
    node.routing.find_closest(0xABD, 0.0)
    assert all(announced(d) is None for d, _ in node.datagrams_to_send(0.0))


def test_a_cached_contact_s_announce_draws_no_probe():
    r = layer(R_ID, k=1)
    r.add_contact(P_ID ^ 1, ("10.9.9.1", 5004), 0.0)  # P's bucket full (k = 1)
    p = peer()
    r.add_contact(P_ID, P4, 0.0)  # cached, not an entry
    assert r.table.known(r.registry.intern(P_ID, P4)) and r.table.find(P_ID) < 0
    out = ask(r, p_request(p, 1.0), P4, 1.0)
    assert not [d for d, dst in out if dst == P6]


_ADDRS = [P4, M4, Q4, P6, V6, Q6]
_announce = st.one_of(
    st.builds(lambda a: addresses.to_wire(a), st.sampled_from([P6, V6, Q6])),
    st.binary(min_size=19, max_size=19).map(lambda b: b"\x06" + b[1:]),
    st.binary(min_size=19, max_size=19))
_datagram = st.one_of(
    st.builds(lambda o, t, a: with_announce(encode_request6(RouteRequest(o, t, 187)), a),
              st.sampled_from([P_ID, M_ID, Q_ID, V_ID]), st.integers(0, (1 << 160) - 1),
              _announce),
    st.builds(lambda o, t: encode_response(RouteResponse(o, t, []), ContactRegistry.addr_to_wire),
              st.sampled_from([P_ID, M_ID, V_ID]), st.integers(0, (1 << 160) - 1)),
    st.binary(max_size=300))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_datagram, st.sampled_from(_ADDRS)), max_size=25))
def test_random_traffic_never_raises_and_keeps_only_addresses_that_answered(items):
    r = responder()
    r.add_contact(M_ID, M4, 0.0)
    for i, (data, src) in enumerate(items):
        now = 1.0 + i * 0.1
        r.receive_datagram(data, src, now)
        r.datagrams_to_send(now)
    others = r._others
    if others is not None:
        assert len(others) <= len(r.table)
        for entry, (other, _) in others._of.items():
            assert r.registry.ids[entry] == r.registry.ids[other]
            assert r.is_validated(r.registry.addrs[other])  # it answered our probe
    # guessing a keyed probe target blind does not happen here: nothing is ever kept
    assert others is None or len(others) == 0


# -- special announced addresses (R1, session 11, item 3) ---------------------------------------

def _announcing(origin: int, wire6: bytes) -> bytes:
    """A marked request from `origin` announcing the 19 bytes `wire6` (built by hand: to_wire
    refuses unusable addresses)."""
    return encode_request6(RouteRequest(origin, TARGET, 187))[:ANNOUNCE_AT] + wire6 + bytes(
        route6.ROUTE6_REQUEST_SIZE - ANNOUNCE_END)


def _wire6(host: str, port: int = 53) -> bytes:
    import socket
    return b"\x06" + socket.inet_pton(socket.AF_INET6, host) + port.to_bytes(2, "big")


SPECIAL = ["::1", "::", "::10.0.0.1", "::ffff:10.0.0.1", "::ffff:0:10.0.0.1", "100::1",
           "fe80::1", "ff02::1", "ff0e::1", "64:ff9b::a00:1", "64:ff9b:1::a00:1"]


@pytest.mark.parametrize("host", SPECIAL)
def test_a_special_announced_address_is_neither_probed_nor_kept(host):
    r = responder()
    out = ask(r, _announcing(P_ID, _wire6(host)), P4, 1.0)
    assert [dst for _, dst in out] == [P4]  # the answer only: no probe anywhere else
    usable = announced(_announcing(P_ID, _wire6(host))) is not None  # else padding, ignored
    assert (r.stats or {}).get("announce_refused", 0) == (1 if usable else 0)
    assert route6.refused((host, 53), P4) or not usable
    assert len(r._others or ()) == 0


@pytest.mark.parametrize("host", ["fd00::1", "fc00::5", "2001:db8::1", "2a00:1450::1"])
def test_unique_local_documentation_and_global_addresses_are_probed(host):
    r = responder()
    out = ask(r, _announcing(P_ID, _wire6(host)), P4, 1.0)
    assert [dst for _, dst in out if dst != P4] == [(host, 53)]
    assert not (r.stats or {}).get("announce_refused")


def test_loopback_is_probed_only_for_an_entry_on_ipv4_loopback():
    r = layer(R_ID)
    local = ("127.0.0.1", 5004)
    assert r.add_contact(P_ID, local, 0.0)  # a datagram from 127/8 comes from this host
    out = ask(r, _announcing(P_ID, _wire6("::1", 5004)), local, 1.0)
    assert [dst for _, dst in out if dst != local] == [("::1", 5004)]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.integers(1, 65535))
def test_an_announce_is_probed_exactly_when_usable_and_not_refused(packed, port):
    import ipaddress
    r = responder()
    data = _announcing(P_ID, b"\x06" + packed + port.to_bytes(2, "big"))
    out = ask(r, data, P4, 1.0)
    addr = announced(data)
    probed = [dst for _, dst in out if dst != P4]
    expected = addr is not None and not any(ipaddress.IPv6Address(packed) in net
                                            for net in route6.REFUSED6)
    assert probed == ([addr] if expected else [])
