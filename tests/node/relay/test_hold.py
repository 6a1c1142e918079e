"""HOLD: the owner's first DATA of a call, held by its relay until the callee's CLAIM with the
call's token takes it (or, session 10's first form, a knock echo that proves its address and
carries the token; docs/protocol.md §21, "Held first DATA"): sent once, at most 3x the CLAIM,
the token checked, no permission before the proof, bounded (one per allocation, the DATA
budget, a lifetime), counted; the attacks played (a spoofed CLAIM of every size, a wrong token,
a too-small CLAIM, a replay, a forged echo, a spoofed bare knock, a flood of HOLDs, a
non-owner's HOLD), an older relay, losses."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.relay import Knocked, RelayedData, RelayPath, wire
from kadtalk.node.relay.server import HOLD_FOR

from .conftest import A, B, C, R, World, echo_limited

CALLER, CALLEE = bytes(range(20)), bytes(range(20, 40))
KEY_REQ = bytes((0x02,)) + bytes(range(200))  # what a caller holds: its KEY_REQ (opaque here)
VICTIM = ("203.0.113.99", 53)


def held_world(now: float = 0.0) -> tuple[World, RelayPath, bytes]:
    """A holds an allocation and HOLDs KEY_REQ there for CALLEE's token."""
    world = World()
    path = world.granted(A, now).path
    token = wire.hold_token(path.allocation, CALLER, CALLEE)
    world.at(A).hold(path, token, KEY_REQ)
    world.settle(now)
    return world, path, token


def answers(packets: list) -> list:
    """What the relay sent among `packets` (World.inject returns the injected one too)."""
    return [p for p in packets if p.src == R]


def to(world: World, addr, start: int = 0) -> list[bytes]:
    return [p.payload for p in world.log[start:] if p.dst == addr]


def test_the_claim_takes_the_held_data_before_the_proof_and_the_proof_permits():
    """The knocker's CLAIM, beside its bare KNOCK, draws the held KEY_REQ at once (no wait for
    the echo's round trip); the echo, the plain 16 bytes every relay knows, then proves the
    address and makes it the permitted peer, so the answer sent right behind it passes."""
    world, path, token = held_world()
    start = len(world.log)
    world.at(B).knock(path, 0.0, token)  # bare KNOCK and CLAIM; cookie and DATA; echo
    world.settle(0.0)
    hops = [(p.src, p.dst, p.payload[1], len(p.payload)) for p in world.log[start:]]
    assert hops == [(B, R, wire.KNOCK, 16), (B, R, wire.CLAIM, wire.CLAIM_SIZE),
                    (R, B, wire.KNOCK_COOKIE, 16), (R, B, wire.DATA, 10 + len(KEY_REQ)),
                    (B, R, wire.KNOCK, 16), (R, A, wire.KNOCKED, 16)]
    assert 10 + len(KEY_REQ) <= wire.CLAIM_FACTOR * wire.CLAIM_SIZE
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]  # unchanged
    assert world.of(A, Knocked) == [Knocked(path, B, 0.0)]
    stats = world.relay.stats
    assert (stats["held"], stats["hold_claimed"], stats["hold_permitted"]) == (1, 1, 1)
    # B is the permitted peer at its proof: its answer reaches A before A's PERMIT
    world.at(B).send(path, b"KEY_RES", 0.0)
    world.settle(0.0)
    assert [e.payload for e in world.of(A, RelayedData)] == [b"KEY_RES"]
    # sent once: B's next knock round gets a cookie and nothing more
    before = len(to(world, B))
    world.at(B).knock(path, 2.0, token)
    world.settle(2.0)
    assert [d[1] for d in to(world, B)[before:]] == [wire.KNOCK_COOKIE]
    assert world.relay.drop_counts() == {"claim_nothing_held": 1}


def test_no_permission_before_the_proof():
    """The CLAIM alone (its echo lost) draws the held DATA but grants nothing: the knocker's
    DATA is dropped until its echo proves the address."""
    world, path, token = held_world()
    world.drop = lambda p: p.src == B and p.payload[1] == wire.KNOCK and len(p.payload) == 16 \
        and p.payload[10:16] != wire.NO_COOKIE
    world.at(B).knock(path, 0.0, token)
    world.settle(0.0)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]
    alloc = world.relay.server.allocations[path.allocation]
    assert alloc.peer is None and alloc.claimed[0] == B
    world.inject(wire.data(path.allocation, b"KEY_RES"), B, now=0.1)
    assert world.of(A, RelayedData) == [] and world.relay.drop_counts()["not_permitted"] == 1
    world.drop = None
    world.settle(0.6)  # B knocks again: the held DATA does not end its knocking (it came
    #   before B's proof was checked); the echo proves and permits
    assert alloc.peer == B and world.relay.stats["hold_permitted"] == 1
    world.at(A).send(path, b"RINGING", 0.7)  # the owner's next DATA ends the knocking
    world.settle(0.7)
    assert path not in world.at(B).client.knocking


def test_the_attack_a_spoofed_claim_reflects_one_datagram_at_most_3x_and_permits_nothing():
    """A rendezvous of the call knows the allocation and the token and spoofs a victim's
    address in CLAIMs of every size: the victim gets one datagram, the held DATA, at most 3x
    the CLAIM that drew it, once (the held DATA is gone); nothing is permitted to it, its
    spoofed DATA goes nowhere; the real callee then proves its address (the theft counted,
    `hold_claimed_elsewhere`) and the call goes on as without a HOLD: KNOCKED, the owner's
    PERMIT and DATA."""
    world, path, token = held_world()
    held = 10 + len(KEY_REQ)
    sizes = list(range(wire.HOLD_HEADER, 200, 7)) * 3
    got = []
    for i, size in enumerate(sizes):
        out = [p for p in world.inject(wire.claim(path.allocation, token, size), VICTIM,
                                       now=0.001 * i) if p.dst == VICTIM]
        got += [(len(p.payload), size) for p in out]
    assert got == [(held, min(n for n in sizes if 3 * n >= held))]  # one, at most 3x
    world.inject(wire.data(path.allocation, b"spoofed"), VICTIM, now=0.2)
    assert world.of(A, RelayedData) == [] and world.of(A, Knocked) == []
    drops = world.relay.drop_counts()
    assert drops["claim_short"] > 0 and drops["claim_nothing_held"] > 0
    # the real callee: no held DATA left, its proof tells the owner, who permits and sends
    world.at(B).knock(path, 0.5, token)
    world.settle(0.5)
    assert world.of(B, RelayedData) == [] and world.relay.stats["hold_claimed_elsewhere"] == 1
    assert world.relay.server.allocations[path.allocation].peer is None
    assert world.of(A, Knocked) == [Knocked(path, B, 0.5)]
    world.at(A).permit(path, B, 0.5)
    world.settle(0.5)
    world.at(A).send(path, KEY_REQ, 0.5)
    world.settle(0.5)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]
    assert [d for d in to(world, VICTIM) if d[:2] == bytes((wire.RELAY, wire.DATA))] == [
        wire.data(path.allocation, KEY_REQ)]


def test_the_attack_a_claim_with_a_wrong_token_or_too_small_or_replayed_gets_nothing():
    world, path, token = held_world()
    wrong = wire.hold_token(path.allocation, CALLER, bytes(20))
    assert answers(world.inject(wire.claim(path.allocation, wrong), C)) == []
    assert answers(world.inject(wire.claim(path.allocation, token, 18), C)) == []  # 3 x 18 < 211
    assert world.relay.drop_counts() == {"claim_wrong_token": 1, "claim_short": 1}
    assert world.relay.server.allocations[path.allocation].held is not None
    claim = wire.claim(path.allocation, token)
    (sent,) = answers(world.inject(claim, B))
    assert (sent.dst, sent.payload) == (B, wire.data(path.allocation, KEY_REQ))
    for src in (B, C, VICTIM):  # replays: nothing
        assert answers(world.inject(claim, src)) == []
    assert world.relay.drop_counts()["claim_nothing_held"] == 3
    assert answers(world.inject(wire.claim(bytes(8), token), B)) == []  # no such allocation
    assert world.relay.drop_counts()["unknown_allocation"] == 1


def test_a_relay_that_predates_claim_and_hold_still_proves_the_new_knocker():
    """Compatibility: to a relay that drops HOLD and CLAIM (unknown ops, as an older relay
    does), the knocker's KNOCK and echo are the 16-byte forms it knows (session 10's first
    24-byte token echo it dropped as malformed): the address is proven, KNOCKED reaches the
    owner, the owner's PERMIT and DATA reach the knocker."""
    world = World(drop=lambda p: p.payload[1] in (wire.HOLD, wire.CLAIM))
    path = world.granted(A).path
    token = wire.hold_token(path.allocation, CALLER, CALLEE)
    world.at(A).hold(path, token, KEY_REQ)
    world.at(B).knock(path, 0.0, token)
    world.settle(0.0)
    knocks = [len(p.payload) for p in world.log if p.src == B and p.payload[1] == wire.KNOCK]
    assert knocks == [16, 16]
    assert world.of(A, Knocked) == [Knocked(path, B, 0.0)]
    world.at(A).permit(path, B, 0.0)
    world.settle(0.0)
    world.at(A).send(path, KEY_REQ, 0.0)
    world.settle(0.0)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]


def test_a_session_10_token_echo_still_claims_at_the_proof():
    """A knocker of session 10's first form (no CLAIM; the token in a 24-byte echo) still gets
    the held DATA when its echo proves its address."""
    world, path, token = held_world()
    (cookie,) = [p.payload for p in world.inject(wire.knock(path.allocation), B) if p.dst == B]
    out = world.inject(wire.knock(path.allocation, cookie[10:16], token=token), B)
    assert wire.data(path.allocation, KEY_REQ) in [p.payload for p in out if p.dst == B]
    assert world.relay.stats["hold_released"] == 1
    assert world.relay.server.allocations[path.allocation].peer == B


def test_the_wire_layouts_and_a_test_vector():
    alloc = bytes.fromhex("0102030405060708")
    token = wire.hold_token(alloc, CALLER, CALLEE)
    assert token.hex() == "f9133f401fd50893"  # docs/protocol.md §21's vector
    assert wire.hold(alloc, token, b"\x02\xaa").hex() == \
        "0810" "0102030405060708" "f9133f401fd50893" "02aa"
    echo = wire.knock(alloc, bytes.fromhex("a1a2a3a4a5a6"), token=token)
    assert echo.hex() == "080b" "0102030405060708" "a1a2a3a4a5a6" "f9133f401fd50893"
    assert wire.knock_token(echo) == token and wire.well_formed(echo)
    echo6 = wire.knock(alloc, bytes(6), ipv6=True, token=token)
    assert len(echo6) == 36 and wire.knock_token(echo6) == token and wire.well_formed(echo6)
    assert wire.knock_token(wire.knock(alloc)) is None
    assert wire.well_formed(wire.hold(alloc, token, b""))
    assert wire.well_formed(wire.hold(alloc, token, bytes(wire.MAX_PAYLOAD)))
    assert not wire.well_formed(wire.hold(alloc, token, bytes(wire.MAX_PAYLOAD + 1)))
    assert not wire.well_formed(wire.hold(alloc, token[:7], b""))  # 17 bytes: too short
    # the token depends on each of its inputs
    assert len({token, wire.hold_token(alloc, CALLEE, CALLER),
                wire.hold_token(bytes(8), CALLER, CALLEE)}) == 3


def test_the_attack_a_third_party_with_a_wrong_token_gets_nothing():
    """C knows the allocation (it travelled in clear to an earlier call's rendezvous) and
    proves its own address, with another call's token: proven (the owner hears KNOCKED, as
    before), but its CLAIM takes nothing (`claim_wrong_token`) and the right knocker's does."""
    world, path, token = held_world()
    wrong = wire.hold_token(path.allocation, CALLER, bytes(20))
    world.at(C).knock(path, 0.0, wrong)
    world.settle(0.0)
    assert world.of(C, RelayedData) == [] and wire.DATA not in [d[1] for d in to(world, C)]
    assert world.relay.stats["claim_wrong_token"] == 1
    world.at(B).knock(path, 0.5, token)
    world.settle(0.5)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]


def test_the_attack_a_forged_token_echo_or_a_spoofed_bare_knock_sends_the_victim_nothing_held():
    """The attacker has the allocation and the token (it was a rendezvous of the call) and
    spoofs the victim's address: bare KNOCKs with the token draw only 16-byte KNOCK_COOKIEs
    to the victim (metered, as any bare knock), echoes with guessed cookies draw nothing; the
    held KEY_REQ is never sent to an address that did not prove itself."""
    world, path, token = held_world()
    sent = 0
    for i in range(30):
        world.inject(wire.knock(path.allocation, token=token), VICTIM, now=0.01 * i)
        world.inject(wire.knock(path.allocation, bytes((1, i, 0, 0, 0, 0)), token=token),
                     VICTIM, now=0.01 * i)
        sent += 48
    received = to(world, VICTIM)
    assert received and all(d[1] == wire.KNOCK_COOKIE and len(d) == 16 for d in received)
    assert sum(map(len, received)) < sent
    assert world.relay.stats["hold_released"] == 0
    assert world.relay.server.allocations[path.allocation].held is not None  # still there
    assert world.of(A, Knocked) == []


def test_only_the_owner_holds_and_one_datagram_per_allocation_within_its_budget():
    """A flood of HOLDs (a flood of offers makes one each): one slot per allocation, the newer
    replacing the older (`hold_replaced`), each taking its bytes from the allocation's DATA
    budget (`over_allocation_rate` past it); from anyone but the owner, `not_owner`."""
    world, path, token = held_world()
    server = world.relay.server
    world.inject(wire.hold(path.allocation, token, b"forged"), C)
    assert server.allocations[path.allocation].held[1] == wire.data(path.allocation, KEY_REQ)
    for i in range(100):
        world.inject(wire.hold(path.allocation, token, bytes(1000)), A, now=0.001 * i)
    drops = world.relay.drop_counts()
    assert drops["not_owner"] == 1
    assert drops["over_allocation_rate"] > 0  # 100 kB in 0.1 s: past the 20 kB burst
    assert drops["hold_replaced"] == world.relay.stats["held"] - 1 < 100
    assert sum(a.held is not None for a in server.allocations.values()) == 1
    # nothing was sent for any of them
    assert [p for p in world.log if p.src == R and p.payload[1] == wire.DATA] == []


def test_a_held_datagram_expires_and_a_late_hold_is_claimed_by_the_next_echo():
    world, path, token = held_world()
    world.settle(HOLD_FOR + 0.1)
    world.at(B).knock(path, HOLD_FOR + 0.1, token)
    world.settle(HOLD_FOR + 0.1)
    assert world.of(B, RelayedData) == [] and world.relay.drop_counts() == {"hold_expired": 1}
    assert world.relay.server.allocations[path.allocation].held is None
    now = HOLD_FOR + 1.0
    world.at(A).hold(path, token, KEY_REQ)  # the caller's re-offer holds it anew
    world.settle(now)
    world.at(B).knock(path, now + 1.5, token)
    world.settle(now + 1.5)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(
    st.sampled_from(["hold", "bare", "echo", "guess", "data", "claim"]),
    st.sampled_from([A, B, C, VICTIM]), st.booleans(), st.floats(0.0, 6.0),
    st.integers(wire.HOLD_HEADER, 120)), max_size=14))
def test_held_data_goes_once_only_to_a_token_holder_and_only_a_proof_permits(steps):
    """Any sequence of HOLDs, bare knocks, right and wrong echoes, CLAIMs of any size and DATA
    from anyone: the relay sends a held datagram only to a source whose CLAIM carried the
    token of the HOLD then held and is at least a third of its size, or whose echo in the
    same step carried a cookie minted for it and that token, at most once per HOLD, never
    within a step that did not; only a proven echo changes the permitted peer (a CLAIM's
    source, or session 10's token echo), and that peer's DATA then reaches the owner."""
    world = World()
    relay = world.relay
    path = world.granted(A).path
    server = relay.server
    tokens = [wire.hold_token(path.allocation, CALLER, CALLEE), bytes(8)]
    held_token, holds, released, now = None, 0, 0, 0.0
    for kind, src, right, dt, size in steps:
        now += dt
        token = tokens[0 if right else 1]
        if kind == "hold":
            data, src = wire.hold(path.allocation, token, KEY_REQ), A
        elif kind == "bare":
            data = wire.knock(path.allocation, token=token)
        elif kind == "echo":
            data = wire.knock(path.allocation,
                              server._knock_cookies.mint(src, path.allocation, now), token=token)
        elif kind == "guess":
            data = wire.knock(path.allocation, bytes(5) + b"\x01", token=token)
        elif kind == "claim":
            data = wire.claim(path.allocation, token, size)
        else:
            data = wire.data(path.allocation, b"x")
        alloc = server.allocations[path.allocation]
        pending, claimed, peer = alloc.held, alloc.claimed, alloc.peer
        limited = echo_limited(relay.stats)
        relay.receive_datagram(data, src, now)
        out = relay.datagrams_to_send(now)
        if kind == "hold":
            holds += 1
            assert out == []
            continue
        metered = echo_limited(relay.stats) == limited  # the echo had its meters' tokens
        live = src != A and pending is not None and pending[0] == token and now < pending[2]
        due = live and ((kind == "echo" and metered) or (
            kind == "claim" and len(pending[1]) <= 3 * len(data)))
        held_out = [(d, dst) for d, dst in out if d == wire.data(path.allocation, KEY_REQ)
                    and kind != "data"]
        assert held_out == ([(wire.data(path.allocation, KEY_REQ), src)] if due else [])
        if kind == "claim":
            assert out == held_out and alloc.peer == peer  # one datagram, no permission
            assert (alloc.claimed == (src, now + HOLD_FOR)) if due else alloc.claimed == claimed
            released += due
            continue
        if kind != "echo" or not metered:
            assert alloc.peer == peer  # nothing but a proven echo permits
        elif src != A and claimed is not None and claimed[0] == src and now < claimed[1]:
            assert alloc.peer == src  # the CLAIM's source proved its address
        if due:
            released += 1
            assert alloc.held is None and alloc.peer == src
            relay.receive_datagram(wire.data(path.allocation, b"answer"), src, now)
            assert relay.datagrams_to_send(now) == [(wire.data(path.allocation, b"answer"), A)]
    assert released <= holds
    assert relay.stats["hold_released"] + relay.stats["hold_claimed"] == released


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(lost=st.sets(st.integers(0, 12), max_size=4), spoof_at=st.none() | st.floats(0.0, 1.0),
       spoof_size=st.integers(wire.HOLD_HEADER, 200))
def test_losses_and_a_spoofed_claim_at_any_moment(lost, spoof_at, spoof_size):
    """The callee knocks (KNOCK and CLAIM), any of the first datagrams lost, a spoofed CLAIM
    with the token from a victim at any moment; the owner permits on KNOCKED and sends its
    KEY_REQ (the path without a HOLD). The victim gets at most one datagram, at most 3x the
    CLAIM; it is never the permitted peer; with nothing lost, the callee gets the KEY_REQ."""
    world, path, token = held_world()
    count = [0]

    def drop(packet) -> bool:
        count[0] += 1
        return packet.src != VICTIM and count[0] - 1 in lost

    world.drop = drop
    world.at(B).knock(path, 0.0, token)
    spoofed, now = False, 0.0
    while now < 8.0:
        if spoof_at is not None and not spoofed and now >= spoof_at:
            world.inject(wire.claim(path.allocation, token, spoof_size), VICTIM, now=now)
            spoofed = True
        world.settle(now)
        for event in world.of(A, Knocked):
            if event.at == now:
                world.at(A).permit(path, event.peer, now)
                world.at(A).send(path, KEY_REQ, now)
        world.settle(now)
        now = round(now + 0.05, 2)
    reflected = [d for d in to(world, VICTIM)]
    assert len(reflected) <= 1 and all(len(d) <= 3 * spoof_size for d in reflected)
    assert world.relay.server.allocations[path.allocation].peer in (None, B)
    if not lost:
        assert KEY_REQ in [e.payload for e in world.of(B, RelayedData)]
