"""A held DATA leaves the relay as every DATA does (review R1, session 10): within the relay's
total byte rate and counted as forwarded; and a proven echo without the HOLD's token (a
consent knock, a move) claims nothing."""
from kadtalk.node.relay import RelayedData, RelaySettings, wire
from tests.node.relay.conftest import A, B, C, R, World

CALLER, CALLEE = bytes(range(20)), bytes(range(20, 40))
KEY_REQ = bytes((0x02,)) + bytes(range(200))


def _held_to(world, dst):
    return [p for p in world.log if p.src == R and p.dst == dst and p.payload[1] == wire.DATA]


def test_a_released_held_data_is_counted_as_forwarded():
    world = World()
    path = world.granted(A).path
    token = wire.hold_token(path.allocation, CALLER, CALLEE)
    world.at(A).hold(path, token, KEY_REQ)
    world.settle(0.0)
    world.at(B).knock(path, 0.0, token)
    world.settle(0.0)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]
    world.relay.server.tally()
    assert world.relay.stats["forwarded"] == 1
    assert world.relay.stats["forwarded_bytes"] == len(_held_to(world, B)[0].payload)


def test_a_spent_total_rate_keeps_the_held_data_and_counts_the_refusal():
    world = World(RelaySettings(serve="always", total_rate=100.0, total_burst=100.0))
    path = world.granted(A).path
    token = wire.hold_token(path.allocation, CALLER, CALLEE)
    world.at(A).hold(path, token, KEY_REQ)  # 211 bytes of DATA against a 100-byte burst
    world.settle(0.0)
    world.at(B).knock(path, 0.0, token)
    world.settle(0.0)
    assert _held_to(world, B) == []
    assert world.relay.drop_counts().get("over_relay_rate", 0) >= 1
    assert world.relay.server.allocations[path.allocation].held is not None


def test_a_proven_echo_without_a_token_claims_nothing():
    world = World()
    path = world.granted(A).path
    token = wire.hold_token(path.allocation, CALLER, CALLEE)
    world.at(A).hold(path, token, KEY_REQ)
    world.settle(0.0)
    world.knock(C, path, 0.0)  # the previous callee's consent knock: proven, no token
    alloc = world.relay.server.allocations[path.allocation]
    assert world.of(C, RelayedData) == []
    assert alloc.held is not None and alloc.peer is None
    assert _held_to(world, C) == []
    world.at(B).knock(path, 0.5, token)  # the callee still gets it
    world.settle(0.5)
    assert [e.payload for e in world.of(B, RelayedData)] == [KEY_REQ]
