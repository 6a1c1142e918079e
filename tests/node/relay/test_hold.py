"""HOLD: the owner's first DATA of a call, held by its relay until the callee's knock proves its
address with the call's token (docs/protocol.md §21, "Held first DATA"): released once, to a
proven address only, the token checked, bounded (one per allocation, the DATA budget, a
lifetime), counted; the attacks played (a forged echo, a wrong token, a spoofed bare knock, a
flood of HOLDs, a non-owner's HOLD)."""

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


def to(world: World, addr, start: int = 0) -> list[bytes]:
    return [p.payload for p in world.log[start:] if p.dst == addr]


def test_the_held_data_reaches_the_knocker_with_its_proof_and_knocked_at_once():
    world, path, token = held_world()
    start = len(world.log)
    world.at(B).knock(path, 0.0, token)  # bare KNOCK, cookie, echo with the token
    world.settle(0.0)
    hops = [(p.src, p.dst, p.payload[1], len(p.payload)) for p in world.log[start:]]
    assert sorted(hops) == sorted([(B, R, wire.KNOCK, 16)] + [
        (R, B, wire.KNOCK_COOKIE, 16), (B, R, wire.KNOCK, 24),  # the echo carries the token
        (R, A, wire.KNOCKED, 16), (R, B, wire.DATA, 10 + len(KEY_REQ))])
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]  # unchanged
    assert world.of(A, Knocked) == [Knocked(path, B, 0.0)]
    stats = world.relay.stats
    assert (stats["held"], stats["hold_released"]) == (1, 1)
    # B is the permitted peer at once: its answer reaches A before A's PERMIT
    world.at(B).send(path, b"KEY_RES", 0.0)
    world.settle(0.0)
    assert [e.payload for e in world.of(A, RelayedData)] == [b"KEY_RES"]
    # released once: B's next echo (another knock round) gets nothing more
    before = len(to(world, B))
    world.at(B).knock(path, 2.0, token)
    world.settle(2.0)
    assert [d[1] for d in to(world, B)[before:]] == [wire.KNOCK_COOKIE]
    assert world.relay.drop_counts() == {}


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
    before), but the held KEY_REQ stays (`hold_wrong_token`) and the right knocker gets it."""
    world, path, token = held_world()
    wrong = wire.hold_token(path.allocation, CALLER, bytes(20))
    world.at(C).knock(path, 0.0, wrong)
    world.settle(0.0)
    assert world.of(C, RelayedData) == [] and wire.DATA not in [d[1] for d in to(world, C)]
    assert world.relay.stats["hold_wrong_token"] == 1
    world.at(B).knock(path, 0.5, token)
    world.settle(0.5)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]


def test_the_attack_a_forged_echo_or_a_spoofed_bare_knock_sends_the_victim_nothing_held():
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
    st.sampled_from(["hold", "bare", "echo", "guess", "data"]),
    st.sampled_from([A, B, C, VICTIM]), st.booleans(), st.floats(0.0, 6.0)), max_size=14))
def test_held_data_goes_once_only_to_a_proven_source_with_the_token(steps):
    """Any sequence of HOLDs, bare knocks, right and wrong echoes and DATA from anyone: the
    relay sends a held datagram only to a source whose echo in the same step carried a
    cookie minted for it and the token of the HOLD then held, at most once per HOLD, never
    within a step that did not; it then forwards that source's DATA to the owner."""
    world = World()
    relay = world.relay
    path = world.granted(A).path
    server = relay.server
    tokens = [wire.hold_token(path.allocation, CALLER, CALLEE), bytes(8)]
    held_token, holds, released, now = None, 0, 0, 0.0
    for kind, src, right, dt in steps:
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
        else:
            data = wire.data(path.allocation, b"x")
        alloc = server.allocations[path.allocation]
        pending = alloc.held
        limited = echo_limited(relay.stats)
        relay.receive_datagram(data, src, now)
        out = relay.datagrams_to_send(now)
        if kind == "hold":
            holds += 1
            assert out == []
            continue
        metered = echo_limited(relay.stats) == limited  # the echo had its meters' tokens
        due = (kind == "echo" and src != A and metered and pending is not None
               and pending[0] == token and now < pending[2])
        held_out = [(d, dst) for d, dst in out if d == wire.data(path.allocation, KEY_REQ)
                    and kind != "data"]
        assert held_out == ([(wire.data(path.allocation, KEY_REQ), src)] if due else [])
        if due:
            released += 1
            assert alloc.held is None and alloc.peer == src
            relay.receive_datagram(wire.data(path.allocation, b"answer"), src, now)
            assert relay.datagrams_to_send(now) == [(wire.data(path.allocation, b"answer"), A)]
    assert released <= holds
    assert relay.stats["hold_released"] == released
