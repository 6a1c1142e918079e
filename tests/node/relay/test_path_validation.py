"""A relayed call's upgrade to a direct address is QUIC's path validation (RFC 9000 §8.2,
relay/paths.py): an authentic packet from a new address proves nothing of that address (whoever
is on the path, the relay first, can hold one back and send it from anywhere), so the call
moves only once the address answered a PATH_CHALLENGE, sends no more than three times what
came from it before, and keeps the relay as its fall-back."""

from __future__ import annotations

from kadtalk.node.relay import RelayPath, wire
from kadtalk.node.session.events import CallEnded
from kadtalk.node.session.wire import MEDIA

from .dht import Call, network
from .test_setup import A_OPEN, B_OPEN, VICTIM, Firewall, ForgedOfferWins, relayed_open_pair


class Grab:
    """Route hook of an on-path attacker (the relay sees every DATA, never a key): when armed,
    withholds the caller's next relayed MEDIA on its way to the callee."""

    def __init__(self, route):
        self.route, self.armed, self.grabbed = route, False, None

    def __call__(self, packet, now):
        data = packet.payload
        if self.armed and packet.dst == B_OPEN and data[:2] == bytes((wire.RELAY, wire.DATA)) \
                and data[10] == MEDIA:
            self.armed, self.grabbed = False, data[10:]
            return ()
        return self.route(packet, now)


def forged_race():
    """A relayed call whose callee's only candidate for the caller's direct address is VICTIM
    (a forged offer won the race), with no direct path ever, and the attacker on the relay's
    path."""
    wall = Firewall(A_OPEN, B_OPEN, opens=1e9)
    hook = ForgedOfferWins(B_OPEN, VICTIM, wall)
    grab = Grab(hook)
    net = network(grab, a=A_OPEN, b=B_OPEN, join_for=1.0)
    net.nodes[A_OPEN].set_nat("cone")
    net.run_until(80.0)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking" and type(call.path(B_OPEN)) is RelayPath
    call.media(2.0)
    return net, call, hook, grab


def replay_from_victim(net, call, grab) -> int:
    """The attacker withholds one relayed MEDIA of the caller's and sends it to the callee from
    VICTIM's address; its size."""
    grab.armed = True
    call.media(0.1)
    assert grab.grabbed is not None
    net.nodes[B_OPEN].receive_datagram(grab.grabbed, VICTIM, net.now)
    net.service(B_OPEN)
    return len(grab.grabbed)


def test_the_attack_one_withheld_packet_sent_from_a_victim_does_not_move_the_call():
    """Review finding 6: the callee moved the call to VICTIM on that one authentic packet
    (~170 datagrams, 3.4 s of the call, to the victim; the relay path forgotten). Now the packet
    is taken over the relay path (the frame is not lost), one 26-byte PATH_CHALLENGE goes to
    VICTIM, nobody answers it, and the call stays relayed."""
    net, call, hook, grab = forged_race()
    before = len(hook.to_victim)
    path = call.path(B_OPEN)
    spoofed = replay_from_victim(net, call, grab)
    to_b, to_a = call.media(10.0)
    assert call.path(B_OPEN) == path  # still relayed
    assert len(to_b) == len(to_a) == 500
    sent = hook.to_victim[before:]
    assert [(p[:2], len(p)) for p in sent] == [(bytes((wire.RELAY, wire.PATH_CHALLENGE)), 26)]
    assert sum(map(len, sent)) <= 3 * spoofed  # anti-amplification (RFC 9000 §8)
    b = net.nodes[B_OPEN]
    assert b._upper.paths.stats.get("moved_direct") is None
    assert b._upper.paths.validated == {}


def test_the_attack_repeated_neither_moves_nor_ends_the_call():
    """Review finding 6, repeated: a second replay made the callee, moved to VICTIM, end the call
    as peer_vanished. Five replays over 50 s: five challenges to VICTIM, the call goes on."""
    net, call, hook, grab = forged_race()
    before = len(hook.to_victim)
    spoofed = 0
    for _ in range(5):
        spoofed += replay_from_victim(net, call, grab)
        call.media(9.9)
    to_b, to_a = call.media(1.0)
    assert len(to_b) == len(to_a) == 50
    assert type(call.path(B_OPEN)) is RelayPath and type(call.path(A_OPEN)) is RelayPath
    assert not [e for e in net.events[A_OPEN] + net.events[B_OPEN] if type(e) is CallEnded]
    sent = hook.to_victim[before:]
    assert len(sent) == 5 and sum(map(len, sent)) <= 3 * spoofed


def test_a_flood_of_replays_from_the_victim_draws_at_most_one_challenge_each_half_second():
    net, call, hook, grab = forged_race()
    before = len(hook.to_victim)
    b = net.nodes[B_OPEN]
    grab.armed = True
    call.media(0.1)
    for i in range(100):  # the same packet, 100 times in 2 s
        b.receive_datagram(grab.grabbed, VICTIM, net.now + i * 0.02)
        net.service(B_OPEN)
    sent = hook.to_victim[before:]
    assert 1 <= len(sent) <= 5 and all(len(p) == 26 for p in sent)
    assert type(call.path(B_OPEN)) is RelayPath


def test_forged_path_checks_are_counted_drops_and_a_challenge_is_answered_once():
    net, wall = relayed_open_pair(opens=1e9)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    a, b = net.nodes[A_OPEN], net.nodes[B_OPEN]
    before = a.drop_counts()["bad_path_check"]
    stranger = ("203.0.113.50", 5004)
    for op in (wire.PATH_CHALLENGE, wire.PATH_RESPONSE):  # tags under a key nobody has
        a.receive_datagram(wire.path_check(op, bytes(8), bytes(16)), stranger, net.now)
    assert a.drop_counts()["bad_path_check"] == before + 2
    assert a.datagrams_to_send(net.now) == []
    # a real challenge of B's (made with B's sending key) is answered once, to its source
    s = b.session.sessions[call.sid_b]
    challenge = wire.path_check(wire.PATH_CHALLENGE, b"\x07" * 8, s.tx.key)
    a.receive_datagram(challenge, stranger, net.now)
    answer = bytes((wire.RELAY, wire.PATH_RESPONSE))  # the layer byte too, not d[1] alone
    [(response, to)] = [(d, t) for d, t in a.datagrams_to_send(net.now) if d[:2] == answer]
    assert to == stranger and len(response) == len(challenge) == 26
    assert wire.path_check_valid(response, s.rx.key)
    a.receive_datagram(challenge, VICTIM, net.now)  # replayed from elsewhere: no answer
    assert [d for d, _ in a.datagrams_to_send(net.now) if d[:2] == answer] == []
    # a response to no challenge of B's: a counted drop, nothing validated
    drops = b.drop_counts()["bad_path_check"]
    b.receive_datagram(response, A_OPEN, net.now)
    assert b.drop_counts()["bad_path_check"] == drops + 1
    assert b._upper.paths.validated == {}


class Breaks:
    """Route hook: the direct path between two addresses works from `opens` until `closes`."""

    def __init__(self, one, other, opens, closes):
        self.pair, self.opens, self.closes = {one, other}, opens, closes

    def __call__(self, packet, now):
        if {packet.src, packet.dst} == self.pair and not self.opens <= now < self.closes:
            return []
        return [(0.0, packet)]


def test_the_direct_path_breaks_and_the_call_falls_back_to_the_relay():
    """The relay path stays the call's fall-back: 50 s after the upgrade (the relay's consent
    for the callee has lapsed meanwhile) the direct path goes dead, each side hears nothing for
    3 s, sends copies over the relay (the callee's restore its consent), and the call moves
    back."""
    route = Breaks(A_OPEN, B_OPEN, opens=100.0, closes=150.0)
    net = network(route, a=A_OPEN, b=B_OPEN, join_for=1.0)
    net.nodes[A_OPEN].set_nat("cone")
    net.run_until(80.0)
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    relayed = call.path(A_OPEN)
    assert type(relayed) is RelayPath
    call.media(105.0 - net.now)
    assert call.path(A_OPEN) == B_OPEN and call.path(B_OPEN) == A_OPEN  # upgraded
    relay = net.nodes[relayed.relay].relay
    call.media(149.0 - net.now)
    assert call.path(A_OPEN) == B_OPEN
    call.media(155.0 - net.now)  # broken at 150
    assert call.path(A_OPEN) == call.path(B_OPEN) == relayed
    assert relay.stats["stale_consent"] > 0  # the caller's first copies: the callee was silent
    to_b, to_a = call.media(1.0, b"back ")
    assert len(to_b) == len(to_a) == 50
    assert not [e for e in net.events[A_OPEN] + net.events[B_OPEN] if type(e) is CallEnded]
