"""Relayed calls inside a call's set-up, with whole nodes: relays found among contacts, offered
in the punch, knocked at by the callee, and the call moving between paths only on datagrams
the session authenticates."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from kadtalk.node.identity import Identity
from kadtalk.node.relay import RELAY, RelayLost, RelayPath, RelaySettings, wire
from kadtalk.node.routing.contacts import ipv4_to_wire
from kadtalk.node.session.events import CallEnded
from kadtalk.node.session.wire import MEDIA
from kadtalk.node.traversal import PUNCH_FWD_RELAY, TRAVERSAL
from kadtalk.transport.memory import FilteringNat, Link, SymmetricNat

from .dht import A, B, B_OPEN, R1, R2, Call, network


def symmetric_pair(settings: RelaySettings | None = None) -> tuple:
    nat = SymmetricNat()
    nat.add(A, "203.0.113.1")
    nat.add(B, "203.0.113.2")
    return network(nat, settings=settings), nat


def test_two_symmetric_nats_call_through_a_public_nodes_relay_with_media_both_ways():
    net, nat = symmetric_pair()
    a, b = net.nodes[A], net.nodes[B]
    assert a.needs_relay and b.needs_relay  # their keep-alives found the NATs symmetric
    assert {p.relay for p in a.relays_held()} == {R1, R2}  # found among contacts, no server
    call = Call(net)
    assert call.connect() == "talking"
    assert type(call.path(A)) is RelayPath and call.path(A) == call.path(B)  # A's allocation
    to_b, to_a = call.media(1.0)
    assert to_b == [b"a%d" % i for i in range(50)] and to_a == [b"b%d" % i for i in range(50)]
    assert nat.filtered > 0  # the direct attempts (KEY_REQ, PUNCH, upgrade checks) never got in


def test_a_symmetric_caller_reaches_a_filtering_callee_through_its_relay():
    filtering = FilteringNat()
    filtering.add(B_OPEN)
    nat = SymmetricNat(filtering)
    nat.add(A, "203.0.113.1")
    net = network(nat, b=B_OPEN)
    assert net.nodes[A].needs_relay and not net.nodes[B_OPEN].needs_relay
    call = Call(net, b=B_OPEN)
    assert call.connect() == "talking"
    assert type(call.path(A)) is RelayPath
    to_b, to_a = call.media(0.4)
    assert len(to_b) == len(to_a) == 20
    assert filtering.filtered > 0  # A's direct KEY_REQs came from a mapping B never opened


def test_without_relays_the_same_pair_cannot_call():
    filtering = FilteringNat()
    filtering.add(B_OPEN)
    nat = SymmetricNat(filtering)
    nat.add(A, "203.0.113.1")
    net = network(nat, b=B_OPEN, relays=())
    assert net.nodes[A].relays_held() == []
    assert Call(net, b=B_OPEN).connect() == "unreachable"


A_OPEN = ("203.0.113.1", 5004)


class Firewall:
    """Route hook: packets between two addresses are dropped until `opens` (then a direct path
    exists, as when a NAT's mapping appears late or a firewall rule is lifted)."""

    def __init__(self, one, other, opens: float):
        self.pair, self.opens, self.dropped = {one, other}, opens, 0

    def __call__(self, packet, now):
        if {packet.src, packet.dst} == self.pair and now < self.opens:
            self.dropped += 1
            return []
        return [(0.0, packet)]


def relayed_open_pair(opens: float) -> tuple:
    wall = Firewall(A_OPEN, B_OPEN, opens)
    net = network(wall, a=A_OPEN, b=B_OPEN, join_for=1.0)
    net.nodes[A_OPEN].set_nat("cone")  # as the daemon says: calls may need a relay
    net.run_until(80.0)
    return net, wall


def test_a_relayed_call_moves_to_the_direct_path_once_it_opens():
    net, wall = relayed_open_pair(opens=100.0)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking" and type(call.path(A_OPEN)) is RelayPath
    relay = net.nodes[call.path(A_OPEN).relay].relay
    call.media(100.5 - net.now)
    assert call.path(A_OPEN) == B_OPEN and call.path(B_OPEN) == A_OPEN  # moved, both sides
    forwarded = relay.stats["forwarded"]
    to_b, to_a = call.media(1.0, b"direct ")
    assert len(to_b) == len(to_a) == 50 and all(p.startswith(b"direct ") for p in to_b + to_a)
    assert relay.stats["forwarded"] == forwarded  # the relay carries nothing any more
    assert net.nodes[A_OPEN]._upper.paths.stats["moved_direct"] == 1


def test_forged_datagrams_neither_move_a_call_nor_reach_it():
    net, wall = relayed_open_pair(opens=1e9)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    a = net.nodes[A_OPEN]
    path = call.path(A_OPEN)
    before = a.drop_counts()
    # from B's direct address (a candidate A checks): a MEDIA packet not made with the call's keys
    a.receive_datagram(bytes((MEDIA,)) + bytes(range(40)), B_OPEN, net.now)
    # through the relay: an allocation nobody holds, and the right one from another source
    a.receive_datagram(bytes((RELAY, wire.DATA)) + bytes(8) + b"x", path.relay, net.now)
    a.receive_datagram(bytes((RELAY, wire.DATA)) + path.allocation + b"x", B_OPEN, net.now)
    # through the relay, the right allocation: a forged packet fails the AEAD
    a.receive_datagram(bytes((RELAY, wire.DATA)) + path.allocation + bytes((MEDIA,))
                       + bytes(range(40)), path.relay, net.now)
    after = a.drop_counts()
    after.subtract(before)
    # the direct one fails the AEAD too (auth_failed) and so does not move the call
    assert +after == {"move_refused": 1, "unknown_allocation": 2, "auth_failed": 2}
    assert call.path(A_OPEN) == path  # still relayed
    to_b, to_a = call.media(0.2)
    assert len(to_b) == len(to_a) == 10


def test_the_relay_killed_mid_call_the_call_recovers_through_the_spare_relay():
    net, nat = symmetric_pair()
    call = Call(net)
    assert call.connect() == "talking"
    first = call.path(A)
    assert len(call.media(0.5)[0]) == 25
    net.detach(first.relay)  # the relay dies
    call.media(6.0)
    lost = net.of(A, RelayLost)
    assert [(e.path, e.recovering) for e in lost] == [(first, True)]
    second = call.path(A)
    assert type(second) is RelayPath and second.relay != first.relay and call.path(B) == second
    to_b, to_a = call.media(1.0, b"again ")
    assert len(to_b) == len(to_a) == 50  # the call goes on through the other relay
    assert not [e for e in net.events[A] + net.events[B] if type(e) is CallEnded]


def test_the_relay_killed_with_no_spare_the_call_ends_with_a_reason():
    net, nat = symmetric_pair(settings=RelaySettings(call_relays=1))
    call = Call(net)
    assert call.connect() == "talking"
    first = call.path(A)
    net.detach(first.relay)
    call.media(12.0)
    assert [(e.path, e.recovering) for e in net.of(A, RelayLost)] == [(first, False)]
    ended = [e.reason.value for e in net.of(A, CallEnded)]
    assert ended == ["peer_vanished"]


def test_a_second_relayed_call_reuses_the_allocation_and_each_knock_counts_once():
    net, nat = symmetric_pair()
    first = Call(net)
    assert first.connect() == "talking"
    path = first.path(A)
    relay = net.nodes[path.relay].relay
    assert relay.stats["knocked"] == 1  # the callee knocked once (one echo), whatever the
    assert relay.server.allocations[path.allocation].peer is not None  # rendezvous count
    net.nodes[A].hang_up(net.now, first.sid_a)
    net.service(A)
    net.run_until(net.now + 2.0)  # a second offer of the same allocation within 1 s: no knock
    second = Call(net)
    assert second.connect() == "talking" and second.path(A) == path
    assert relay.stats["knocked"] == 2
    assert len(second.media(0.2)[1]) == 10


def test_a_callee_that_wants_a_cookie_gets_it_over_the_relay_too():
    # an RSA-3072 callee's KEY_RES is more than 3x a KEY_REQ: it asks every caller for a cookie
    big = Identity.from_private_key(rsa.generate_private_key(public_exponent=65537,
                                                             key_size=3072))
    nat = SymmetricNat()
    nat.add(A, "203.0.113.1")
    nat.add(B, "203.0.113.2")
    net = network(nat, b_identity=big)
    call = Call(net)
    assert call.connect() == "talking" and type(call.path(A)) is RelayPath
    assert net.nodes[B].session.stats["cookie_sent"] >= 1
    assert "move_refused" not in net.nodes[A].drop_counts()


def test_the_relayed_attempt_runs_in_parallel_with_the_punch():
    # 10 ms a hop; the relayed path has two. After the lookup (20 ms): PUNCH_REQ_RELAY reaches
    # the rendezvous (30) while the caller's HOLD reaches its relay, PUNCH_FWD_RELAY the callee
    # (40), KNOCK and CLAIM the relay (50: where a PUNCH would reach the caller), KNOCK_COOKIE
    # and the held KEY_REQ the callee (60: where a punched call's KEY_REQ would reach it after
    # the PUNCH), its echo and KEY_RES back to back to the relay (70; the echo permits the
    # CLAIM's source), KEY_RES the caller (80), then RING/ANSWER over 2 x 20 ms: 120 ms, as a
    # direct call over the same hops. With the held KEY_REQ released at the echo (session 10's
    # first HOLD): 140 ms; before the HOLD (session 9): 160 ms, KNOCKED to the caller (80) and
    # its KEY_REQ back through the relay (100) before the callee had it
    nat = SymmetricNat(Link(delay=0.010))
    nat.add(A, "203.0.113.1")
    nat.add(B, "203.0.113.2")
    net = network(nat)
    call = Call(net)
    assert call.connect() == "talking"
    assert call.talking_at - call.placed <= 0.020 + 0.020 + 0.020 + 0.020 + 0.040 + 1e-9
    relays = [n.relay.stats for n in net.nodes.values()
              if n.relay is not None and n.relay.server is not None]
    assert sum(s["hold_claimed"] for s in relays) == sum(s["hold_permitted"] for s in relays) == 1


VICTIM = ("203.0.113.99", 53)


def test_a_forged_relay_offer_sends_nothing_of_the_call_to_the_named_relay():
    """Review finding: a PUNCH_FWD_RELAY naming the callee's peer as requester (its ID is not
    authenticated) made the callee send copies of the call's packets to the named "relay" for
    30 s (32 datagrams, 3,122 bytes, for one 42-byte datagram). Now only its two KNOCKs go
    there (16 bytes each) and, since the CLAIM (session 10), one 94-byte CLAIM: 126 bytes,
    3x the offer, the bound of what a request draws towards an unproven address."""
    net, wall = relayed_open_pair(opens=1e9)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    b = net.nodes[B_OPEN]
    sent_to_victim: list[int] = []
    route = net.route

    def watch(packet, now):
        if packet.dst == VICTIM:
            sent_to_victim.append(len(packet.payload))
        return route(packet, now)

    net.route = watch
    contact = next(addr for addr in net.nodes if b.traversal.contacts.is_contact(addr))
    a_id = net.nodes[A_OPEN].node_id.to_bytes(20, "big")
    offer = (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + a_id + ipv4_to_wire(A_OPEN)
             + ipv4_to_wire(VICTIM) + bytes(range(8)))
    b.receive_datagram(offer, contact, net.now)
    net.service(B_OPEN)
    to_b, to_a = call.media(30.0)
    assert len(to_b) == len(to_a) == 1500  # the call goes on
    assert sum(sent_to_victim) <= 3 * len(offer)
    assert sorted(sent_to_victim) == [16, 16, wire.CLAIM_SIZE]


def test_a_relay_silent_for_a_while_then_back_is_watched_again():
    """Review finding: a call whose relay went silent and came back on the same path was never
    watched again. Now a second silence is noticed (a second RelayLost)."""
    net, nat = symmetric_pair(settings=RelaySettings(call_relays=1))
    call = Call(net)
    assert call.connect() == "talking"
    first = call.path(A)
    relay = net.detach(first.relay)  # silent for 4 s (past the 3 s silence; no spare relay)
    call.media(4.0)
    net.attach(first.relay, relay)
    to_b, _ = call.media(2.0, b"back ")
    assert to_b  # the relay carries the call again
    net.detach(first.relay)  # and goes silent once more
    call.media(4.0)
    assert [(e.path, e.recovering) for e in net.of(A, RelayLost)] == [(first, False)] * 2


class ForgedOfferWins:
    """Route hook: every PUNCH_FWD_RELAY to `callee` names `victim` as the caller's direct
    address (as if a forged one, from a contact's address, won the race against each real one:
    the callee knocks once per offer and keeps the first address it heard); counts what the
    victim receives by message type."""

    def __init__(self, callee, victim, route, first_only: bool = False):
        self.callee, self.victim, self.route = callee, victim, route
        self.first_only = first_only  # the real offers from other rendezvous come later
        self.to_victim: list[bytes] = []
        self.rewritten = 0

    def __call__(self, packet, now):
        data = packet.payload
        if packet.dst == self.callee and data[:2] == bytes((TRAVERSAL, PUNCH_FWD_RELAY)) \
                and not (self.first_only and self.rewritten):
            self.rewritten += 1
            packet = type(packet)(packet.src, packet.dst,
                                  data[:22] + ipv4_to_wire(self.victim) + data[28:])
        if packet.dst == self.victim:
            self.to_victim.append(packet.payload)
        return self.route(packet, now)


def test_a_forged_offer_that_wins_the_race_draws_no_upgrade_copies_to_its_address():
    """Review finding (issue 13): a PUNCH_FWD_RELAY that reached the callee before the real one
    named the direct address the callee then sent a copy of the call's packets to, once a
    second for 30 s (the ICE upgrade check): 30 MEDIA datagrams for one 42-byte forgery. Now
    the callee sends the call to a direct address only once an authentic packet of the call
    has come from it (the caller's own copies): the victim gets the two 22-byte PUNCHes that
    every PUNCH_FWD draws (§20's bounded rule) and nothing of the call."""
    wall = Firewall(A_OPEN, B_OPEN, opens=1e9)
    hook = ForgedOfferWins(B_OPEN, VICTIM, wall)
    net = network(hook, a=A_OPEN, b=B_OPEN, join_for=1.0)
    net.nodes[A_OPEN].set_nat("cone")
    net.run_until(80.0)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking" and type(call.path(B_OPEN)) is RelayPath
    to_b, to_a = call.media(31.0)
    assert len(to_b) == len(to_a) == 1550  # the relayed call is fine
    assert hook.rewritten >= 1
    assert hook.to_victim and all(p[0] == TRAVERSAL and len(p) == 22 for p in hook.to_victim)
    assert len(hook.to_victim) == 2 * hook.rewritten  # the PUNCHes, and nothing of the call


def test_after_a_forged_offer_won_the_race_the_call_still_moves_to_the_real_direct_path():
    """The same race, but the other rendezvous' real offers follow the forged one: the callee
    keeps their address as a candidate too (sending nothing to any), the caller's copies over
    the direct path prove it once the path opens, and both sides move there."""
    wall = Firewall(A_OPEN, B_OPEN, opens=100.0)
    hook = ForgedOfferWins(B_OPEN, VICTIM, wall, first_only=True)
    net = network(hook, a=A_OPEN, b=B_OPEN, join_for=1.0)
    net.nodes[A_OPEN].set_nat("cone")
    net.run_until(80.0)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking" and type(call.path(B_OPEN)) is RelayPath
    call.media(101.0 - net.now)
    assert call.path(A_OPEN) == B_OPEN and call.path(B_OPEN) == A_OPEN  # moved, both sides
    assert hook.rewritten == 1 and len(hook.to_victim) == 2  # its two PUNCHes only
    assert all(p[0] == TRAVERSAL and len(p) == 22 for p in hook.to_victim)
