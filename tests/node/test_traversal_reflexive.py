"""Peer-reflexive addresses (issue 13): a public caller reaches a callee behind a symmetric NAT.

The callee's PUNCH comes from its NAT's flow towards the caller, a port the caller never knew;
the caller copies its KEY_REQ there (docs/protocol.md §20, "Peer-reflexive addresses") and the
call moves there on the authentic KEY_RES. Whole nodes on the in-memory network with a
port-level symmetric NAT (transport.memory.SymmetricNat), explicit time; and the forged-source
attack: a PUNCH naming the callee from a victim's address.
"""

from __future__ import annotations

import os

from kadtalk.node.relay.paths import REFLEXIVE_COPIES, REFLEXIVE_PER_SESSION
from kadtalk.node.session.state import CallState
from kadtalk.node.session.wire import COOKIE, KEY_REQ, encode_cookie_reply, request_tag
from kadtalk.node.traversal import PUNCH, TRAVERSAL
from kadtalk.transport.memory import FilteringNat, Packet, SymmetricNat

from .relay.dht import B, Call, network

A_OPEN = ("203.0.113.1", 5004)
B_PUBLIC = "203.0.113.2"  # B's NAT's address


class Tap:
    """Route hook: logs every packet sent (before the NAT), hands it to `route`, and delays
    what gets through by `delay` s (a hop)."""

    def __init__(self, route, delay: float = 0.02) -> None:
        self.log: list[Packet] = []
        self.route, self.delay = route, delay

    def __call__(self, packet: Packet, now: float):
        self.log.append(packet)
        return [(d + self.delay, p) for d, p in self.route(packet, now)]


def public_to_symmetric(relays: tuple = ()) -> tuple:
    """A public, B behind a symmetric NAT; A's table forgets B (in a large network a caller
    rarely holds its callee: its lookup finds B at the port B's NAT opened towards another
    peer, never at the one towards A)."""
    nat = SymmetricNat()
    nat.add(B, B_PUBLIC)
    tap = Tap(nat)
    net = network(tap, a=A_OPEN, b=B, relays=relays)
    a, b = net.nodes[A_OPEN], net.nodes[B]
    table = a.routing.table
    handle = table.find(b.node_id)
    if handle >= 0:
        table.remove(handle)
    return net, nat, tap


def test_a_public_caller_reaches_a_symmetric_callee_directly_without_relays():
    net, nat, tap = public_to_symmetric()
    a = net.nodes[A_OPEN]
    assert net.nodes[B].needs_relay and not a.needs_relay and a.relays_held() == []
    call = Call(net, a=A_OPEN, b=B)
    assert call.connect() == "talking"
    path = call.path(A_OPEN)
    # the port B's NAT gave its flow towards A: not the one A's lookup found
    assert path[0] == B_PUBLIC and path == nat.out[(B, A_OPEN)]
    assert call.path(B) == A_OPEN
    to_b, to_a = call.media(0.4)
    assert len(to_b) == len(to_a) == 20
    stats = a._upper.paths.stats
    assert stats["reflexive_candidate"] == 1 and stats["moved_direct"] == 1, stats
    # A's KEY_REQs to the address its lookup found never got in
    assert any(p.payload[0] == KEY_REQ and p.dst[0] == B_PUBLIC and p.dst != path
               for p in tap.log)


def test_the_pair_failed_before_peer_reflexive_addresses(monkeypatch):
    from kadtalk.node.stack import Node

    monkeypatch.setattr(Node, "_reflexive", lambda self, data, addr, now: None)
    net, _, _ = public_to_symmetric()
    assert Call(net, a=A_OPEN, b=B).connect() in ("timeout", "unreachable", "waiting")


def forged_punch(peer_id: int) -> bytes:
    return bytes((TRAVERSAL, PUNCH)) + peer_id.to_bytes(20, "big")


def keying(net, a, b) -> int:
    """A calls B; run until A waits for B's KEY_RES (the attacker times its forgeries so)."""
    sid = a.call(b.node_id, net.now)
    net.service(A_OPEN)
    net.run(until=lambda: a.session.sessions[sid].state is not CallState.DIALLING,
            limit=net.now + 5)
    assert a.session.sessions[sid].state is CallState.KEY_EXCHANGE
    return sid


def to_victims(tap: Tap, since: int, victims) -> list[Packet]:
    return [p for p in tap.log[since:] if p.src == A_OPEN and p.dst in victims]


def test_the_attack_a_punch_forged_from_a_victims_address_moves_nothing():
    """An attacker who knows that A is calling B sends A PUNCHes naming B from a victim's
    address, before B's own PUNCH comes: on another host (a third party) the victim gets
    nothing; on B's own host (another user behind the same carrier-grade NAT address) only
    the bounded KEY_REQ copies. The call still sets up at B's real flow, and nothing of it
    goes to the victims."""
    net, nat, tap = public_to_symmetric()
    a, b = net.nodes[A_OPEN], net.nodes[B]
    elsewhere, same_host = ("198.51.100.99", 7000), (B_PUBLIC, 61000)
    sid = keying(net, a, b)
    since, b_events = len(tap.log), len(net.events[B])
    for _ in range(50):
        for victim in (elsewhere, same_host):
            a.receive_datagram(forged_punch(b.node_id), victim, net.now)
        net.service(A_OPEN)
    net.run_until(net.now + 0.6)
    assert a.session.sessions[sid].rx is not None  # keyed by B's own KEY_RES
    for _ in range(50):  # and again once keyed: nothing more
        a.receive_datagram(forged_punch(b.node_id), same_host, net.now)
        net.service(A_OPEN)
    call = Call.__new__(Call)
    call.net, call.a, call.b, call.start = net, A_OPEN, B, (0, b_events)
    call.sid_a, call.sid_b, call.talking_at = sid, None, None
    assert call.connect() == "talking"
    assert call.path(A_OPEN) == nat.out[(B, A_OPEN)]  # B's flow, not the victim
    call.media(0.4)
    sent = to_victims(tap, since, (elsewhere, same_host))
    assert [p.dst for p in sent] == [same_host]  # one KEY_REQ copy (0.5 s between copies)
    assert all(p.payload[0] == KEY_REQ for p in sent)
    assert a._upper.paths.stats["reflexive_other_host"] == 50


def test_the_attack_with_many_forged_ports_is_bounded_per_call():
    """PUNCHes forged from every port of B's host: at most REFLEXIVE_PER_SESSION ports get
    KEY_REQ copies, REFLEXIVE_COPIES each, however many come and for as long as they come.
    (The forgeries that come first take the call's candidate slots: B's own flow is then
    refused, and a NATed caller's call goes through its relay; an attacker who knows when
    A calls B can do this: docs/protocol.md §20.)"""
    net, nat, tap = public_to_symmetric()
    a, b = net.nodes[A_OPEN], net.nodes[B]
    keying(net, a, b)
    since = len(tap.log)
    victims = [(B_PUBLIC, port) for port in range(61000, 61200)]
    for step in range(20):
        for victim in victims[10 * step: 10 * step + 10]:
            a.receive_datagram(forged_punch(b.node_id), victim, net.now)
        for victim in victims[:2]:
            a.receive_datagram(forged_punch(b.node_id), victim, net.now)
        net.service(A_OPEN)
        net.run_until(net.now + 0.5)
    sent = to_victims(tap, since, set(victims))
    assert {p.payload[0] for p in sent} == {KEY_REQ}
    assert len({p.dst for p in sent}) == REFLEXIVE_PER_SESSION
    assert len(sent) == REFLEXIVE_PER_SESSION * REFLEXIVE_COPIES
    assert a._upper.paths.stats["reflexive_refused"] > 0


def test_a_punch_naming_no_call_of_ours_or_an_ended_one_sends_nothing():
    net, nat, tap = public_to_symmetric()
    a, b = net.nodes[A_OPEN], net.nodes[B]
    before = len(tap.log)
    a.receive_datagram(forged_punch(b.node_id), (B_PUBLIC, 61000), net.now)  # no call yet
    net.service(A_OPEN)
    assert not [p for p in tap.log[before:] if p.dst == (B_PUBLIC, 61000)]
    assert a._upper.paths is None or not a._upper.paths.reflexive


def test_without_relays_many_calls_keep_working_the_tables_are_tidied():
    """A node with relays off never runs the relay upkeep that forgets ended calls: the
    peer-reflexive path tidies the tables itself, so its 300th call still gets its copy."""
    from kadtalk.node.relay.paths import MAX_ENTRIES, PER_SESSION

    net, nat, tap = public_to_symmetric()
    a, b = net.nodes[A_OPEN], net.nodes[B]
    paths = a._paths()
    for sid in range(MAX_ENTRIES * PER_SESSION):  # alternates of calls long gone
        paths.alternates[(B_PUBLIC, 50000 + sid)] = 10_000 + sid
    sid = keying(net, a, b)
    before = len(tap.log)
    a.receive_datagram(forged_punch(b.node_id), (B_PUBLIC, 61000), net.now)
    net.service(A_OPEN)
    assert [p.dst for p in tap.log[before:] if p.src == A_OPEN] == [(B_PUBLIC, 61000)]
    assert len(paths.alternates) <= PER_SESSION and a.session.sessions[sid].rx is None


def filtering_callee_first_key_req_lost() -> tuple:
    """A public, B behind an address-and-port filtering NAT at B_OPEN (reached directly
    before peer-reflexive addresses): the network loses A's first KEY_REQ to B, so A is still
    keying when the attacker strikes."""
    b_open = (B_PUBLIC, 5004)
    nat, lost = FilteringNat(), []
    nat.add(b_open)

    def route(packet: Packet, now: float):
        if (packet.src == A_OPEN and packet.dst == b_open and packet.payload[0] == KEY_REQ
                and not lost):
            lost.append(packet)
            return []
        return nat(packet, now)

    tap = Tap(route)
    net = network(tap, a=A_OPEN, b=b_open, relays=())
    lost.clear()  # the joins' datagrams are not the call's
    return net, tap, b_open


def test_the_attack_a_cookie_from_a_neighbour_of_the_callees_host_stays_on_its_path():
    """E, another port of B's public address, forges a PUNCH naming B, gets A's KEY_REQ copy
    and answers it with a COOKIE_REPLY holding a junk cookie (its tag is the SHA-256 of that
    copy). The cookie binds to E's address: A answers E, but its KEY_REQs to B stay bare (they
    carried E's cookie before the fix: B dropped each as bad_cookie, the call unreachable), E
    cannot use up the cookies B may give on the call's own path, and the forged PUNCH does not
    cancel the call's second punch round."""
    net, tap, b_open = filtering_callee_first_key_req_lost()
    a, b = net.nodes[A_OPEN], net.nodes[b_open]
    e = (B_PUBLIC, 61000)
    call = Call(net, a=A_OPEN, b=b_open)
    net.run(until=lambda: a.session.sessions[call.sid_a].state is not CallState.DIALLING,
            limit=net.now + 5)
    s = a.session.sessions[call.sid_a]
    assert s.state is CallState.KEY_EXCHANGE and s.rx is None
    watched = call.sid_a in a._upper.punch_watch
    since = len(tap.log)
    a.receive_datagram(forged_punch(b.node_id), e, net.now)
    net.service(A_OPEN)
    assert (call.sid_a in a._upper.punch_watch) == watched  # the second round is not cancelled
    copy = next(p.payload for p in tap.log[since:] if p.dst == e)
    assert copy[0] == KEY_REQ
    junk = [os.urandom(16) for _ in range(10)]  # more cookies than a call takes on one path
    for cookie in junk:
        a.receive_datagram(encode_cookie_reply(request_tag(copy), cookie), e, net.now)
        net.service(A_OPEN)
    to_e = [p.payload[0] for p in tap.log[since:] if p.src == A_OPEN and p.dst == e]
    assert to_e.count(COOKIE) == a.session.settings.key_tries  # answered there, bounded
    assert s.retry is None and s.request(b_open) == s.key_req
    # B's own cookie on the call's path is still taken and answered at once
    before = len(tap.log)
    a.receive_datagram(encode_cookie_reply(s.tag, os.urandom(16)), b_open, net.now)
    net.service(A_OPEN)
    assert [p.payload[0] for p in tap.log[before:] if p.src == A_OPEN and p.dst == b_open] == [
        COOKIE]
    s.retry = s.cookie = None  # that cookie was the test's: B never minted it
    assert call.connect() == "talking"
    assert b.session.stats["bad_cookie"] == 1  # the test's cookie only (E's: 4, unreachable)
    assert call.path(A_OPEN) == b_open
    assert not [p for p in tap.log[since:] if p.dst == b_open and p.payload[0] == COOKIE
                and any(c in p.payload for c in junk)]


def test_the_attack_a_cookie_from_a_relay_path_stays_on_that_path():
    """The same through a relay (the `_moved` COOKIE path since 9f70a3e): a malicious relay,
    or anyone who can send from a relayed path offered for the call, answers with a junk
    cookie; A's KEY_REQs to B's own address stay bare and the call sets up directly."""
    from kadtalk.node.relay.events import RelayPath

    net, tap, b_open = filtering_callee_first_key_req_lost()
    a, b = net.nodes[A_OPEN], net.nodes[b_open]
    call = Call(net, a=A_OPEN, b=b_open)
    net.run(until=lambda: a.session.sessions[call.sid_a].state is not CallState.DIALLING,
            limit=net.now + 5)
    s = a.session.sessions[call.sid_a]
    path = RelayPath(("198.51.100.7", 3478), bytes(8))
    a._paths().alternates[path] = s.id
    since = len(tap.log)
    assert a._moved(path, encode_cookie_reply(s.tag, os.urandom(16)), net.now)
    assert s.retry is None  # the call's own path keeps its bare KEY_REQ
    assert call.connect() == "talking"
    assert not [p for p in tap.log[since:] if p.dst == b_open and p.payload[0] == COOKIE]
    assert not b.session.stats["bad_cookie"]
    assert s.request(path)[0] == COOKIE  # the relay's cookie stays for the relayed path


def test_an_address_and_port_filtering_caller_reaches_a_symmetric_callee_through_its_relay():
    """A caller behind a real router's filter (address AND port: transport.memory.FilteringNat)
    cannot take the symmetric callee's PUNCH from the callee's new port (the simulator's
    address-only filter can: docs/results.md, "Who can call whom"); being NATed it holds
    relays (`Node.needs_relay`) and offers one in the punch, and the call goes through it."""
    from kadtalk.node.relay.events import RelayPath

    a_open = ("203.0.113.1", 5004)
    sym = SymmetricNat()
    sym.add(B, B_PUBLIC)
    nat = FilteringNat(route=sym)
    nat.add(a_open)
    net = network(Tap(nat), a=a_open, b=B)
    a = net.nodes[a_open]
    a.set_nat("cone")  # the daemon's NAT check: behind a NAT (it cannot tell the filter's kind)
    net.service(a_open)
    table = a.routing.table
    handle = table.find(net.nodes[B].node_id)
    if handle >= 0:
        table.remove(handle)
    net.run_until(net.now + 5.0)
    assert a.needs_relay and a.relays_held()
    call = Call(net, a=a_open, b=B)
    assert call.connect() == "talking"
    assert type(call.path(a_open)) is RelayPath
    assert nat.filtered  # the direct attempts, the callee's PUNCH among them, were filtered
