"""A call moves to a relay path only once that path answered a PATH_CHALLENGE carried over it
(review 2, 2026-12-06; relay/paths.py): a relay named in an unauthenticated PUNCH_FWD_RELAY
carries nothing before it answered our KNOCK with a KNOCK_COOKIE, a move from one relay to
another keeps the old one as fall-back, forged offers cannot push what a call depends on out
of the node's tables, and nothing goes through another's path nothing came through for 30 s."""

from __future__ import annotations

import collections

from kadtalk.node.relay import RelayLost, RelayPath, wire
from kadtalk.node.relay.paths import MAX_ENTRIES, PER_SESSION
from kadtalk.node.routing.contacts import ipv4_to_wire
from kadtalk.node.traversal import PUNCH_FWD_RELAY, TRAVERSAL

from .conftest import B as B_PEER, R, World
from .dht import A, B, Call
from .test_path_validation import forged_race
from .test_setup import A_OPEN, B_OPEN, symmetric_pair

EVIL = ("198.51.100.66", 3478)  # any address: a relay the attacker runs, or a victim


def offer_from(net, node, caller, relay, allocation, which=0):
    """A 42-byte PUNCH_FWD_RELAY forged from one of `node`'s contacts, naming `caller`'s ID."""
    contacts = [addr for addr in net.nodes if node.traversal.contacts.is_contact(addr)]
    contact = contacts[which % len(contacts)]
    data = (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + caller.to_bytes(20, "big")
            + ipv4_to_wire(A_OPEN) + ipv4_to_wire(relay) + allocation)
    node.receive_datagram(data, contact, net.now)
    return data


def attack(answer_knocks: bool):
    """The reviewer's attack: a forged offer naming EVIL, then the caller's withheld MEDIA in
    DATA from EVIL (which, if `answer_knocks`, answers the callee's KNOCK with a cookie, as a
    relay the attacker runs would). What EVIL received, by op, and the call."""
    net, call, hook, grab = forged_race()
    b = net.nodes[B_OPEN]
    old = call.path(B_OPEN)
    sent: list[bytes] = []
    route = net.route
    alloc = b"\xee" * 8

    def evil(packet, now):
        if packet.dst != EVIL:
            return route(packet, now)
        sent.append(packet.payload)
        data = packet.payload
        if answer_knocks and data[:2] == bytes((wire.RELAY, wire.KNOCK)) \
                and data[10:16] == wire.NO_COOKIE:
            b.receive_datagram(wire.knock(alloc, b"cookie", wire.KNOCK_COOKIE), EVIL, now)
        return ()

    net.route = evil
    offer = offer_from(net, b, net.nodes[A_OPEN].node_id, EVIL, alloc)
    net.service(B_OPEN)
    grab.armed = True
    call.media(0.1)  # the relay withholds one MEDIA of A's
    assert grab.grabbed is not None
    b.receive_datagram(wire.data(alloc, grab.grabbed), EVIL, net.now)
    net.service(B_OPEN)
    to_b, to_a = call.media(10.0)
    ops = collections.Counter(wire.NAMES.get(p[1]) if p[0] == wire.RELAY else p[0] for p in sent)
    return call, old, to_b, to_a, ops, sent, offer


def test_the_attack_a_relay_that_never_answered_carries_nothing_and_moves_nothing():
    """Before: the callee moved to RelayPath(EVIL) and sent EVIL 153 DATA datagrams in 10 s
    though EVIL never answered. Now DATA from an address that never sent a KNOCK_COOKIE is a
    counted drop; EVIL gets the two 16-byte KNOCKs and one 94-byte CLAIM (session 10: the
    held KEY_REQ's; 126 bytes, 3x the 42-byte offer, the bound towards an unproven address)."""
    call, old, to_b, to_a, ops, sent, offer = attack(answer_knocks=False)
    assert call.path(B_OPEN) == old
    assert ops == {"KNOCK": 2, "CLAIM": 1} and sum(map(len, sent)) <= 3 * len(offer)
    assert len(to_b) == len(to_a) == 500  # the call goes on over its relay
    assert net_stats(call)["unknown_allocation"] >= 1


def test_the_attack_a_relay_that_answers_knocks_gets_a_challenge_but_not_the_call():
    """A relay the attacker runs answers the KNOCK: the callee then takes the withheld packet
    (over its own path: no frame lost), challenges the new path in DATA over it, and moves
    nothing; nothing of the call goes there (at most 3 times what came from it is sent)."""
    call, old, to_b, to_a, ops, sent, offer = attack(answer_knocks=True)
    assert call.path(B_OPEN) == old
    assert len(to_b) == len(to_a) == 500
    data = [p for p in sent if p[:2] == bytes((wire.RELAY, wire.DATA))]
    assert [p[wire.HEADER:][:2] for p in data] == [bytes((wire.RELAY, wire.PATH_CHALLENGE))]
    assert set(ops) <= {"KNOCK", "CLAIM", "DATA"} and ops["DATA"] == 1 and ops["CLAIM"] <= 1


def test_a_relay_silent_past_consent_is_sent_nothing_but_knocks():
    """Client-side consent (RFC 7675): DATA through another's path goes only while something
    came through it within 30 s; after that a 16-byte KNOCK asks again, once a knock round."""
    world = World()
    world.drop = lambda packet: packet.src == R and world.now >= 30.0  # the relay goes silent
    path = world.linked(0.0).path  # B is A's permitted peer; its knocks answered till 7.5 s
    b = world.at(B_PEER)
    world.settle(36.0)
    assert b.send(path, b"hello", 37.0)
    world.settle(37.0)
    start = len(world.log)
    for i in range(100):
        b.send(path, bytes(100), 40.0 + i * 0.1)
        world.settle(40.0 + i * 0.1)
    sent = [(p.payload[1], len(p.payload)) for p in world.log[start:] if p.src == B_PEER]
    assert sent == [(wire.KNOCK, 16)] * 2  # two bare KNOCKs, unanswered: nothing else
    assert b.stats["no_consent"] == 100


def test_a_move_from_one_relay_to_another_is_validated_and_keeps_the_old_as_fall_back():
    """The caller's relay dies, it offers its spare: the callee challenges the new path over
    it, moves once it is answered, and keeps the old relay path as its fall-back."""
    net, nat = symmetric_pair()
    call = Call(net)
    assert call.connect() == "talking"
    first = call.path(B)
    net.detach(first.relay)
    call.media(6.0)
    second = call.path(B)
    assert [e.recovering for e in net.of(A, RelayLost)] == [True]
    assert type(second) is RelayPath and second != first
    paths = net.nodes[B]._upper.paths
    assert paths.validated.get(second) is not None  # answered a challenge over it first
    assert list(paths.fallback.values()) == [first]
    assert len(call.media(1.0)[0]) == 50


def test_forged_offers_push_out_neither_a_fall_back_nor_an_answered_offer():
    """Before: `alternates` and `incoming` were 64-entry FIFOs a forged offer wrote to, so 64
    forged offers pushed out the relay fall-back (and the set-up's offers). Now offers never
    write `alternates`; `incoming` makes room only by dropping offers whose relay never
    answered, else refuses; a call's relay offers are bounded per session."""
    net, call, hook, grab = forged_race()
    b = net.nodes[B_OPEN]
    paths = b._upper.paths
    alternates, fallback = dict(paths.alternates), dict(paths.fallback)
    answered = [p for p in paths.incoming if p in b.relay.client.peers]
    assert answered  # the caller's offer, answered by its relay
    peer = net.nodes[A_OPEN].node_id
    for i in range(4 * MAX_ENTRIES):  # from every contact in turn, under their meters
        caller = peer if i % 2 else 10**40 + i  # the call's peer, or random IDs
        offer_from(net, b, caller, ("198.51.100.%d" % (i % 200 + 1), 3478 + i % 2),
                   i.to_bytes(8, "big"), which=i)
        net.service(B_OPEN)
        if i % 8 == 7:
            call.media(0.5)
    assert "relay_offer_refused" not in paths.stats and not b.drop_counts()["rate_limited_source"]
    assert paths.alternates == alternates and paths.fallback == fallback
    assert all(p in paths.incoming for p in answered)
    assert len(paths.incoming) <= MAX_ENTRIES
    assert len(paths.relay_offers) <= PER_SESSION // 2
    assert len(call.media(1.0)[0]) == 50
    assert paths.stats.get("offer_refused_full", 0) + len(paths.incoming) >= MAX_ENTRIES


def test_relay_datagrams_in_data_other_than_path_checks_are_counted_drops():
    """What comes in DATA over a relay path and starts with the relay type byte is a path
    check (its exact layout), else a counted drop, never a crash."""
    net, call, hook, grab = forged_race()
    b = net.nodes[B_OPEN]
    path = call.path(B_OPEN)
    before = b.relay.stats["bad_path_check"]
    for payload in (bytes((wire.RELAY,)), bytes((wire.RELAY, wire.PATH_CHALLENGE)) + bytes(5),
                    wire.knock(bytes(8)), wire.path_check(wire.PATH_RESPONSE, bytes(8), bytes(16))):
        b.receive_datagram(wire.data(path.allocation, payload), path.relay, net.now)
    net.service(B_OPEN)
    assert b.relay.stats["bad_path_check"] - before == 4
    assert call.path(B_OPEN) == path and len(call.media(0.2)[0]) == 10


def net_stats(call):
    return call.net.nodes[B_OPEN].relay.stats
