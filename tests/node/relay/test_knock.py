"""KNOCK / KNOCK_COOKIE / KNOCKED (a would-be peer proves its address to the relay, which then
tells the allocation's owner where it is) and the traversal ops that carry a caller's
allocation to its callee (PUNCH_REQ_RELAY, PUNCH_FWD_RELAY): answers no larger than requests,
nothing but a metered cookie to an unproven source, no permission for an unproven peer (the
reflection attack played), refusals counted."""

from __future__ import annotations

from random import Random

from kadtalk.node.relay import (
    Knocked,
    PermissionGranted,
    PermissionRefused,
    RelayedData,
    RelayPath,
    wire,
)
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    PUNCH_COOKIE,
    PUNCH_FWD_RELAY,
    PUNCH_REQ_RELAY,
    SIZES,
    TRAVERSAL,
)

from .conftest import A, B, C, R, World, echo_limited, identity

RELAY_ADDR = ("198.51.100.9", 3478)
RELAY_WIRE = bytes((198, 51, 100, 9)) + (3478).to_bytes(2, "big")


def test_a_knock_draws_a_cookie_and_only_its_echo_tells_the_owner():
    world = World()
    path = world.granted(A).path
    b_wire = bytes((203, 0, 113, 2)) + (5004).to_bytes(2, "big")
    out = world.inject(wire.knock(path.allocation), B)  # a bare KNOCK: asks for a cookie
    [(src, dst, answer)] = [(p.src, p.dst, p.payload) for p in out[1:]]
    assert (src, dst, answer[:10]) == (R, B, bytes((wire.RELAY, wire.KNOCK_COOKIE)) +
                                       path.allocation)
    assert len(answer) == wire.SIZES[wire.KNOCK_COOKIE] <= wire.SIZES[wire.KNOCK] == 16
    assert world.of(A, Knocked) == []  # the owner hears nothing of an unproven address
    out = world.inject(wire.knock(path.allocation, answer[10:16]), B)  # the echo
    assert [(p.src, p.dst, p.payload) for p in out[1:]] == [
        (R, A, wire.knocked(path.allocation, b_wire))]
    assert wire.SIZES[wire.KNOCKED] <= wire.SIZES[wire.KNOCK]
    assert world.of(A, Knocked) == [Knocked(path, B, world.now)]
    assert list(world.relay.server.allocations[path.allocation].proven) == [B]


def test_a_knocking_layer_echoes_each_cookie_once_and_once_per_knock_sent():
    world = World()
    path = world.granted(A).path
    start = len(world.log)
    world.knock(B, path)
    hops = [(p.src, p.dst, p.payload[1], len(p.payload)) for p in world.log[start:]]
    assert sorted(hops) == sorted(
        [(B, R, wire.KNOCK, 16)] * 2 + [(R, B, wire.KNOCK_COOKIE, 16)]
        + [(R, A, wire.KNOCKED, 16)])
    assert world.at(B).stats["knock_echoed"] == 1
    cookie = wire.knock(path.allocation, b"\x01" * 6, wire.KNOCK_COOKIE)
    world.inject(cookie, R, B)  # a second cookie (forged from R's address): no second echo
    world.at(B).knock(path, 20.0)  # a new knock, but the cookie comes too late
    world.at(B).datagrams_to_send(20.0)
    world.at(B).receive_datagram(cookie, R, 20.0 + 10.0)
    world.at(B).receive_datagram(cookie, C, 20.0)  # nor from another address than the relay
    assert world.at(B).datagrams_to_send(30.0) == []
    assert world.at(B).drop_counts() == {"unsolicited": 3}


def test_a_knocker_knocks_again_with_back_off_until_data_comes_and_twice_to_a_silent_address():
    """A lost KNOCK, cookie, echo or KNOCKED costs a retry, not the relayed path; an address
    that never answers (a forged offer may name anyone) gets two KNOCKs, 32 bytes."""
    lost = {"echo": 1}

    def drop(packet):  # B's first echo is lost
        if packet.src == B and packet.payload[1] == wire.KNOCK and packet.payload[10:16] != \
                wire.NO_COOKIE and lost["echo"]:
            lost["echo"] -= 1
            return True
        return False

    world = World(drop=drop)
    path = world.granted(A).path
    world.knock(B, path, 0.0)
    assert world.of(A, Knocked) == []
    for t in (0.5, 1.5, 3.5):
        world.settle(t)
    assert {e.peer for e in world.of(A, Knocked)} == {B}  # the retry at 0.5 s got through
    world.at(A).permit(path, B, 3.5)
    world.at(A).send(path, b"hello", 3.5)
    world.settle(3.5)
    knocks = len([p for p in world.log if p.src == B and p.payload == wire.knock(
        path.allocation)])
    world.settle(60.0)  # DATA came through the path: no more knocks
    assert len([p for p in world.log if p.src == B and p.payload == wire.knock(
        path.allocation)]) == knocks <= world.at(B).settings.request_tries
    silent = RelayPath(("198.51.100.77", 3478), bytes(8))  # nobody there
    world.knock(C, silent, 60.0)
    world.settle(120.0)
    assert [len(p.payload) for p in world.log if p.dst == silent.relay] == [16, 16]
    assert world.at(C).client.knocking == {}  # given up


VICTIM = ("203.0.113.66", 5004)  # no node there: it never knocked


def bytes_to(world: World, addr) -> int:
    return sum(len(p.payload) for p in world.log if p.dst == addr)


def test_the_attack_an_owner_naming_a_victim_that_never_knocked_sends_it_nothing():
    """The reflection the cookie closes (docs/protocol.md §21): the owner of an allocation
    permits a victim's address and sends DATA for it. Before the cookie the relay forwarded
    every DATA to the victim; now PERMIT is refused and not one byte goes there."""
    world = World()
    a = world.at(A)
    path = world.granted(A).path
    a.permit(path, VICTIM, 0.0)
    world.settle(0.0)
    assert world.of(A, PermissionRefused) == [
        PermissionRefused(path, VICTIM, "unproven_peer", 0.0)]
    for i in range(100):
        a.send(path, bytes(1000), 0.01 * i)  # 100 kB aimed at the victim
        world.settle(0.01 * i)
    assert bytes_to(world, VICTIM) == 0
    assert world.relay.drop_counts() == {"unproven_peer": 1, "no_permission": 100}


def test_the_attack_with_knocks_forged_from_the_victim_costs_it_only_cookies():
    """The owner also forges KNOCKs from the victim's address and guesses the cookie: the victim
    gets one 16-byte KNOCK_COOKIE per metered bare knock (never more bytes than were forged in
    its name); every guess is a counted, metered drop; nothing proves the victim, so PERMIT is
    still refused and no DATA reaches it."""
    world = World()
    a = world.at(A)
    path = world.granted(A).path
    forged = 0
    for i in range(50):
        world.inject(wire.knock(path.allocation), VICTIM, now=0.01 * i)
        forged += 16
        for guess in range(20):
            world.inject(wire.knock(path.allocation, bytes((1, i, guess, 0, 0, 0))), VICTIM,
                         now=0.01 * i)
            forged += 16
    to_victim = [p.payload for p in world.log if p.dst == VICTIM]
    assert all(p[1] == wire.KNOCK_COOKIE and len(p) == 16 for p in to_victim)
    assert 0 < len(to_victim) <= 5 + 1  # the source's burst, and 2/s over half a second
    drops = world.relay.drop_counts()
    assert drops["bad_knock_cookie"] + echo_limited(drops) \
        + drops["rate_limited_source"] + len(to_victim) == forged // 16
    assert drops["bad_knock_cookie"] <= 4 + 1  # the allocation's echo burst, and 1/s
    a.permit(path, VICTIM, 1.0)
    for i in range(10):
        a.send(path, bytes(500), 1.0)
    world.settle(1.0)
    assert [p.payload[1] for p in world.log if p.dst == VICTIM] == [wire.KNOCK_COOKIE] * len(
        to_victim)  # still nothing but the cookies
    assert world.of(A, Knocked) == []
    assert world.relay.drop_counts()["unproven_peer"] == 1


def test_forged_expired_and_replayed_elsewhere_cookies_are_counted_drops():
    world = World()
    path = world.granted(A).path
    other = world.granted(C).path  # another allocation on the same relay
    cookie = world.inject(wire.knock(path.allocation), B, now=0.0)[1].payload[10:16]
    rotation = world.relay.settings.cookie_rotation
    tries = [
        (wire.knock(path.allocation, bytes(5) + b"\x01"), B, 1.0),  # forged
        (wire.knock(path.allocation, cookie), VICTIM, 1.0),  # B's cookie from elsewhere
        (wire.knock(other.allocation, cookie), B, 1.0),  # B's cookie for another allocation
        (wire.knock(path.allocation, cookie), B, 2 * rotation + 1.0),  # expired
    ]
    for data, src, now in tries:
        world.settle(now)  # the clock first (the clients refresh meanwhile)
        assert len(world.inject(data, src, now=now)) == 1  # the knock, and nothing after it
    assert world.relay.drop_counts() == {"bad_knock_cookie": 4}
    assert world.of(A, Knocked) == world.of(C, Knocked) == []
    # a fresh cookie, echoed within one rotation (always good; up to two at most), proves B
    world.settle(3 * rotation)
    cookie = world.inject(wire.knock(path.allocation), B)[1].payload[10:16]
    world.settle(4 * rotation - 1.0)
    world.inject(wire.knock(path.allocation, cookie), B)
    assert [e.peer for e in world.of(A, Knocked)] == [B]


def test_knocks_that_cannot_become_a_permission_are_counted_drops():
    world = World()
    path = world.granted(A).path
    for data, src in ((wire.knock(bytes(8)), B),  # no such allocation
                      (wire.knock(path.allocation), ("127.0.0.1", 5004)),  # loopback
                      (wire.knock(path.allocation), A)):  # the owner itself
        assert len(world.inject(data, src)) == 1  # the knock, and nothing after it
    assert world.relay.drop_counts() == {"unknown_allocation": 1, "forbidden_peer": 1,
                                         "forbidden_self": 1}
    assert world.of(A, Knocked) == []


def test_a_knock_flood_is_metered_and_echoes_spend_the_allocations_budget():
    """Review finding 4: 2,000 replays of one valid cookie sent 1,248 KNOCKEDs to the owner,
    charged to the allocation's DATA budget, and the real peer's DATA was then dropped
    (over_allocation_rate). Now echoes take tokens of their own bucket (1/s, burst 4) before
    the check, an address proven within the last second is not told again, and DATA flows."""
    world = World()
    path = world.linked(0.0).path  # B is A's permitted peer
    relay = world.relay
    relay.datagrams_to_send(1.0)
    c_before = relay.stats["knock_cookie_sent"]
    for _ in range(2000):
        relay.receive_datagram(wire.knock(path.allocation), C, 1.0)
    cookies = [d for d, to in relay.datagrams_to_send(1.0) if to == C]
    assert len(cookies) == relay.stats["knock_cookie_sent"] - c_before == 5  # C's burst
    assert relay.drop_counts()["rate_limited_source"] == 1995
    echo = wire.knock(path.allocation, cookies[0][10:16])
    knocked = relay.stats["knocked"]
    for _ in range(2000):
        relay.receive_datagram(echo, C, 1.0)
    to_a = [d for d, to in relay.datagrams_to_send(1.0) if to == A]
    assert len(to_a) == relay.stats["knocked"] - knocked == 1  # one KNOCKED, 16 bytes
    assert relay.stats["knocked_again"] + echo_limited(relay.drop_counts()) == 1999
    assert echo_limited(relay.drop_counts()) >= 2000 - 4
    assert relay.drop_counts()["over_allocation_rate"] == 0  # DATA's budget untouched
    for i in range(10):  # the real peer's DATA gets through
        world.at(B).send(path, bytes(160), 1.0)
    world.settle(1.0)
    assert len(world.of(A, RelayedData)) == 10


def test_the_attack_a_right_guess_past_the_meter_is_refused():
    """Review finding 3: the cookie was checked before the meter and only wrong guesses were
    counted, so a right one was accepted however far over the limit (10,000 forged guesses in
    one instant, the last one right: the victim proven, the owner's PERMIT granted). Now every
    guess takes a token of the allocation's echo bucket first."""
    world = World()
    path = world.granted(A).path
    relay = world.relay
    for i in range(9999):
        relay.receive_datagram(wire.knock(path.allocation, (i + 1).to_bytes(6, "big")),
                               VICTIM, 1.0)
    right = relay.server._knock_cookies.mint(VICTIM, path.allocation, 1.0)  # the lucky guess
    relay.receive_datagram(wire.knock(path.allocation, right), VICTIM, 1.0)
    world.settle(1.0)
    assert VICTIM not in relay.server.allocations[path.allocation].proven
    assert relay.drop_counts()["bad_knock_cookie"] == 4  # the echo burst: 4 guesses evaluated
    assert echo_limited(relay.drop_counts()) == 9996
    world.at(A).permit(path, VICTIM, 1.0)
    world.settle(1.0)
    assert world.of(A, PermissionRefused) == [PermissionRefused(path, VICTIM, "unproven_peer",
                                                                1.0)]
    assert world.of(A, PermissionGranted) == []


def test_guesses_are_metered_at_the_echo_rate_over_time():
    """The rate server.py's figure rests on: one allocation's guesses are evaluated at
    `echo_rate` (1/s) after the burst, however many are sent (100 a second for 100 s)."""
    world = World()
    path = world.granted(A).path
    relay = world.relay
    for i in range(10_000):
        relay.receive_datagram(wire.knock(path.allocation, (i + 1).to_bytes(6, "big")),
                               VICTIM, 1.0 + i / 100)
    evaluated = relay.drop_counts()["bad_knock_cookie"]
    assert evaluated <= 4 + 100 + 1  # burst 4, then 1/s (RelaySettings.echo_rate)


def test_the_attack_spoofed_bare_knocks_do_not_starve_an_honest_knocker():
    """Review finding 5: ~50 spoofed bare KNOCKs spent the relay's 20/s cookie budget it shares
    with HELLO / ALLOCATE, and an honest callee (two KNOCKs, no retry) got no cookie. Now knock
    cookies have their own bucket (200/s, burst 400): 250 spoofed knocks leave room for it, and
    a HELLO still gets its CHALLENGE."""
    world = World()
    victim_path = world.granted(A).path
    own_path = world.granted(C).path
    for i in range(200):
        world.inject(wire.knock(own_path.allocation), (f"198.18.{i // 250}.{i % 250 + 1}", 4000),
                     now=0.5 + i / 400)
    for i in range(50):
        world.inject(wire.knock(own_path.allocation), (f"198.19.0.{i + 1}", 4000), now=1.0)
    start = len(world.log)
    world.knock(B, victim_path, now=1.0)
    got = [p for p in world.log[start:] if p.dst == B and p.payload[1] == wire.KNOCK_COOKIE]
    assert len(got) == 1
    assert B in world.relay.server.allocations[victim_path.allocation].proven
    out = world.inject(wire.hello(bytes(16)), ("203.0.113.9", 5004), now=1.0)
    assert [p.payload[1] for p in out[1:]] == [wire.CHALLENGE]


def test_a_flood_that_spends_the_knock_bucket_costs_the_honest_knocker_a_retry():
    """With the knock bucket empty at the knock (a flood of 400 spoofed sources), the knocker's
    KNOCKs draw nothing; it gets its cookie once the flood stops, on a retry... but a silent
    relay gets two KNOCKs only, so the flood must end within the second one's 0.5 s."""
    world = World()
    path = world.granted(A).path
    for i in range(400):
        world.relay.receive_datagram(wire.knock(path.allocation),
                                     (f"198.18.{i // 200}.{i % 200 + 1}", 4000), 1.0)
    world.relay.datagrams_to_send(1.0)
    world.knock(B, path, now=1.0)
    assert world.of(A, Knocked) == []  # the bucket was empty
    world.settle(1.5)  # 100 tokens back: the second KNOCK draws its cookie
    assert [e.peer for e in world.of(A, Knocked)] == [B]


def test_the_attack_a_peer_silent_since_its_knock_gets_nothing_an_hour_later():
    """Review finding 7: a peer that knocked once at t=0 and said nothing since still got
    101,000 bytes relayed at t=3,600 (the proof lasted the allocation's life). Now DATA to the
    peer needs something from it within `consent` (30 s, RFC 7675), counted `stale_consent`
    otherwise, and its next datagram restores it; a proof is good for a PERMIT 300 s."""
    world = World()
    path = world.linked(0.0).path
    a = world.at(A)
    a.send(path, bytes(1000), 29.0)
    world.settle(29.0)
    assert len(world.of(B, RelayedData)) == 1  # fresh: within 30 s of the knock
    for t in range(60, 3601, 60):
        world.settle(float(t))  # refreshes run; B says nothing
    start = len(world.log)
    for i in range(100):
        a.send(path, bytes(1000), 3600.0 + i * 0.025)
        world.settle(3600.0 + i * 0.025)
    assert sum(len(p.payload) for p in world.log[start:] if p.dst == B) == 0
    assert world.relay.drop_counts()["stale_consent"] == 100
    assert not world.at(B).send(path, b"still here", 3603.0)  # nothing came for 30 s: B
    assert world.at(B).stats["no_consent"] == 1  # sends nothing either (its own consent), but
    world.settle(3603.0)  # knocks again: the relay's cookie restores B's consent, the echo its
    assert world.at(B).send(path, b"still here", 3603.0)  # own; the peer speaks again
    world.settle(3603.0)
    a.send(path, b"welcome back", 3603.0)
    world.settle(3603.0)
    assert [e.payload for e in world.of(B, RelayedData)][-1] == b"welcome back"
    # a proof older than 300 s permits nothing; a fresh knock does
    world.knock(C, path, 3700.0)
    world.settle(4010.0)  # (C's knocks, unanswered by DATA, ended within 8 s)
    a.permit(path, C, 4010.0)
    world.settle(4010.0)
    assert world.of(A, PermissionRefused)[-1] == PermissionRefused(path, C, "unproven_peer",
                                                                    4010.0)
    world.knock(C, path, 4011.0)
    a.permit(path, C, 4011.0)
    world.settle(4011.0)
    assert world.of(A, PermissionGranted)[-1].peer == C


def test_a_knocked_nobody_asked_for_is_unsolicited():
    world = World()
    path = world.granted(A).path
    layer = world.at(A)
    layer.receive_datagram(wire.knocked(bytes(8), bytes(6)), R, 0.0)  # not our allocation
    layer.receive_datagram(wire.knocked(path.allocation, bytes(6)), B, 0.0)  # not our relay
    assert layer.drop_counts() == {"unsolicited": 2}


def node(name: str) -> Node:
    me = identity(name)
    return Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1), identity=me,
                traversal=True)


def test_a_rendezvous_forwards_the_relay_part_only_for_a_validated_requester():
    rendezvous, caller, callee = node("rv"), node("caller"), node("callee")
    callee_addr, caller_addr = ("203.0.113.20", 5004), ("203.0.113.21", 5004)
    rendezvous.add_contact(callee.node_id, callee_addr, 0.0)
    request = (bytes((TRAVERSAL, PUNCH_REQ_RELAY)) + caller.node_id.to_bytes(20, "big")
               + callee.node_id.to_bytes(20, "big") + RELAY_WIRE + bytes(range(8)))
    assert len(request) == SIZES[PUNCH_REQ_RELAY] == 56
    rendezvous.receive_datagram(request, caller_addr, 0.0)
    [(cookie_msg, to)] = rendezvous.datagrams_to_send(0.0)
    assert to == caller_addr and cookie_msg[1] == PUNCH_COOKIE and len(cookie_msg) == 18
    rendezvous.receive_datagram(request + cookie_msg[2:], caller_addr, 0.1)  # 72 bytes
    [(forward, to)] = rendezvous.datagrams_to_send(0.1)
    assert to == callee_addr and forward[1] == PUNCH_FWD_RELAY
    assert len(forward) == SIZES[PUNCH_FWD_RELAY] == 42 <= len(request)
    assert forward[2:22] == caller.node_id.to_bytes(20, "big")
    assert forward[22:28] == bytes((203, 0, 113, 21)) + (5004).to_bytes(2, "big")
    assert forward[28:42] == RELAY_WIRE + bytes(range(8))  # relay and allocation, unread


def offer(caller: Node, relay_wire: bytes = RELAY_WIRE) -> bytes:
    return (bytes((TRAVERSAL, PUNCH_FWD_RELAY)) + caller.node_id.to_bytes(20, "big")
            + bytes((203, 0, 113, 21)) + (5004).to_bytes(2, "big") + relay_wire + bytes(8))


def test_the_callee_punches_and_knocks_only_for_a_contact_and_a_usable_relay():
    callee, caller = node("callee"), node("caller")
    contact = ("198.51.100.30", 5004)
    callee.add_contact(int.from_bytes(identity("rv").node_id, "big"), contact, 0.0)
    callee.datagrams_to_send(0.0)
    callee.receive_datagram(offer(caller), ("198.51.100.31", 5004), 1.0)  # a stranger
    assert callee.datagrams_to_send(1.0) == []
    assert callee.drop_counts()["punch_fwd_stranger"] == 1
    callee.receive_datagram(offer(caller), contact, 2.0)
    sent = callee.datagrams_to_send(2.0)
    punches = [d for d, to in sent if to == ("203.0.113.21", 5004)]
    knocks = [d for d, to in sent if to == RELAY_ADDR]
    token = wire.hold_token(bytes(8), caller.node_id.to_bytes(20, "big"),
                            callee.node_id.to_bytes(20, "big"))
    assert len(punches) == 2 and knocks == [wire.knock(bytes(8)), wire.claim(bytes(8), token)]
    # (the KNOCK again in 0.5 s unanswered; the CLAIM, for the caller's held KEY_REQ, once)
    path = RelayPath(RELAY_ADDR, bytes(8))
    assert not callee.relay.client.knows(path)  # no DATA through it before its relay answers
    callee.receive_datagram(wire.knock(bytes(8), b"cookie", wire.KNOCK_COOKIE), RELAY_ADDR, 2.1)
    assert callee.relay.client.knows(path)  # it did: DATA through it is taken now
    callee.datagrams_to_send(2.1)  # (the echo)
    loopback = bytes((127, 0, 0, 1)) + (3478).to_bytes(2, "big")
    callee.receive_datagram(offer(caller, loopback), contact, 3.0)
    assert [to for _, to in callee.datagrams_to_send(3.0)] == [("203.0.113.21", 5004)] * 2
    assert callee._upper.paths.stats["relay_offer_refused"] == 1  # no knock at loopback


def test_a_knock_for_no_call_of_ours_permits_nothing():
    world = World()
    path = world.granted(A).path
    n = node("owner")
    n._knocked(Knocked(path, B, 0.0))
    assert n._upper.paths.stats["knock_unexpected"] == 1
    assert n.datagrams_to_send(0.0) == []


def test_the_attack_forged_echoes_from_many_sources_do_not_starve_an_honest_knocker():
    """Review 2 (2026-12-06): every KNOCK with a cookie took a token of its allocation's one
    bucket (1/s, burst 4) whatever its source, and the allocation number travels in clear to
    the rendezvous: 50 forged echoes a second (2 KB/s, random spoofed sources) left 0 of 10
    honest callees proven within 60 s. Now the bucket is per (allocation, source) under a
    50/s cap: each of 10 callees, knocking at 5-6 s into such a flood, is proven."""
    proven = []
    for trial in range(10):
        rng = Random(trial)
        world = World()
        path = world.granted(A).path
        t_honest, started = 5.0 + rng.random(), False
        attack, t = rng.random() / 50, 0.0
        while t < 60.0 and not world.of(A, Knocked):
            due = [t + 0.05, attack] + ([world.at(B).get_timer()] if started else [t_honest])
            t = min(x for x in due if x is not None)
            if not started and t >= t_honest:
                world.at(B).knock(path, t)
                started = True
            if t >= attack:
                world.inject(wire.knock(path.allocation, rng.randbytes(6)),
                             (f"192.0.2.{rng.randint(1, 250)}", 4000), R, now=attack)
                attack += rng.expovariate(50)
            world.settle(t)
        proven.append(bool(world.of(A, Knocked)))
        assert echo_limited(world.relay.stats) + world.relay.stats["bad_knock_cookie"] > 0
    assert proven == [True] * 10
