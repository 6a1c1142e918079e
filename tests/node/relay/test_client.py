"""The client's side with explicit time: retransmissions, give-ups, refreshes, answers it did
not ask for, and paths."""

from __future__ import annotations

import pytest

from kadtalk.node.relay import (
    AllocationExpired,
    AllocationFailed,
    AllocationGranted,
    RelayedData,
    RelayLayer,
    RelayPath,
    RelaySettings,
    wire,
)

from .conftest import A, B, C, R, SERVE, World, identity


def test_a_silent_candidate_is_given_up_after_two_hellos():
    """A contact that does not relay never answers HELLO: given up after 0.5 + 1 s (HELLO is
    a probe; the node asks several at once), not after the 15.5 s of a request."""
    world = World(drop=lambda p: p.dst == R)  # the relay hears nothing
    world.at(A).allocate(R, 0.0)
    world.settle(0.0)
    for t in (0.4, 0.5, 1.4):
        world.settle(t)
    sent = [p for p in world.log if p.src == A]
    assert [p.payload[1] for p in sent] == [wire.HELLO] * 2
    assert world.of(A, AllocationFailed) == []
    world.settle(1.5)
    assert world.of(A, AllocationFailed) == [AllocationFailed(R, "timeout", 1.5)]
    assert world.at(A).get_timer() is None and world.at(A).client.held == {}


def test_requests_are_retransmitted_then_given_up_with_an_event():
    world = World(drop=lambda p: p.dst == R and p.payload[1] == wire.ALLOCATE)
    world.at(A).allocate(R, 0.0)
    world.settle(0.0)  # HELLO, CHALLENGE, ALLOCATE (lost)
    for t in (0.4, 0.5, 1.5, 3.5, 7.5, 15.4):
        world.settle(t)
    sent = [p for p in world.log if p.src == A]
    assert [p.payload[1] for p in sent] == [wire.HELLO] + [wire.ALLOCATE] * 5
    assert world.at(A).client.held[R].rtt == 0.0  # the one HELLO's round trip
    assert world.of(A, AllocationFailed) == []
    world.settle(15.5)
    assert world.of(A, AllocationFailed) == [AllocationFailed(R, "timeout", 15.5)]
    assert world.at(A).get_timer() is None and world.at(A).client.held == {}


def test_with_wanted_set_only_the_first_relays_to_answer_get_an_allocate():
    """HELLO is stateless at the relay: asked at once, the first `wanted` to answer (the
    nearest) are allocated at, a later CHALLENGE is dropped and nothing is allocated there."""
    world = World()
    client = world.at(A).client
    client.wanted = 1
    world.at(A).allocate(R, 0.0)
    world.settle(0.0)
    (granted,) = world.of(A, AllocationGranted)
    # a second relay's CHALLENGE comes late: A had asked it too (a HELLO in flight)
    late = ("198.51.100.7", 5004)
    world.at(A).allocate(late, 0.1)
    challenge = bytes((wire.RELAY, wire.CHALLENGE)) + client.held[late].nonce + bytes(16)
    world.at(A).receive_datagram(challenge, late, 0.2)
    assert late not in client.held and client.stats["hello_spare"] == 1
    assert not [p for p in world.log if p.dst == late and p.payload[1] == wire.ALLOCATE]
    assert list(client.held) == [R]


def test_a_lost_allocated_is_recovered_by_the_retransmitted_allocate():
    lost = []

    def drop(packet):
        if packet.src == R and packet.payload[1] == wire.ALLOCATED and not lost:
            lost.append(packet)
            return True
        return False

    world = World(drop=drop)
    world.at(A).allocate(R, 0.0)
    world.settle(0.0)
    assert world.of(A, AllocationGranted) == []
    world.settle(0.5)
    (granted,) = world.of(A, AllocationGranted)
    assert granted.path.allocation == lost[0].payload[18:26]  # the same allocation
    assert len(world.relay.server.allocations) == 1


def test_refreshes_keep_an_allocation_and_a_silent_relay_ends_it():
    settings = RelaySettings(serve="always", lifetime=100, min_lifetime=30, keepalive=1000.0)
    world = World(settings)
    path = world.granted(A, 0.0).path
    world.settle(50.0)
    world.settle(100.0)
    # refreshed at 50 s and at 100 s, each time for 100 s more
    assert world.relay.server.allocations[path.allocation].expires == 200.0
    world.detach(R)  # the relay dies
    world.settle(200.0)
    (ended,) = world.of(A, AllocationExpired)
    # the refresh at 150 s went unanswered; given up after 0.5 + 1 + 2 + 4 + 8 s
    assert ended == AllocationExpired(path, "refresh_failed", 165.5)
    assert not world.at(A).send(path, b"x", 200.0)


def test_answers_nobody_asked_for_are_counted_drops():
    layer = RelayLayer(identity("a"), SERVE)
    number = bytes(8)
    for data in (wire.challenge(bytes(16), bytes(16)), wire.allocated(bytes(16), number, 60,
                                                                       bytes((1, 2, 3, 4, 0, 5))),
                 wire.refresh(number, 60, wire.REFRESHED), wire.permit(number, bytes(6),
                                                                         wire.PERMITTED),
                 wire.error(wire.ALLOCATE, wire.QUOTA, bytes(8)), wire.data(number, b"x")):
        layer.receive_datagram(data, R, 0.0)
    assert layer.drop_counts() == {"unsolicited": 5, "unknown_allocation": 1}
    layer.allocate(R, 0.0)
    layer.datagrams_to_send(0.0)
    layer.receive_datagram(wire.challenge(bytes(16), bytes(16)), R, 0.0)  # not our nonce
    layer.receive_datagram(wire.challenge(layer.client.held[R].nonce, bytes(16)), C, 0.0)
    assert layer.drop_counts()["unsolicited"] == 7
    assert layer.datagrams_to_send(0.0) == []


def test_data_is_accepted_only_on_known_paths_from_their_relay():
    world = World()
    path = world.linked(0.0).path
    world.settle(1.0)
    # DATA naming our allocation but from another address than the relay's
    world.inject(wire.data(path.allocation, b"forged"), C, dst=A)
    world.inject(wire.data(path.allocation, b"forged"), C, dst=B)
    assert world.of(A, RelayedData) == world.of(B, RelayedData) == []
    assert world.at(A).drop_counts() == world.at(B).drop_counts() == {"unknown_allocation": 1}
    assert not world.at(C).send(path, b"x", 1.0)  # C does not know the path


def test_one_allocation_per_relay_and_a_bounded_number_of_relays():
    layer = RelayLayer(identity("a"), RelaySettings(max_client_allocations=2))
    layer.allocate(R, 0.0)
    layer.allocate(R, 0.0)  # no second one with the same relay
    assert len(layer.datagrams_to_send(0.0)) == 1
    layer.allocate(B, 0.0)
    with pytest.raises(ValueError):
        layer.allocate(C, 0.0)
    with pytest.raises(ValueError):
        layer.allocate("not an address", 0.0)
    with pytest.raises(ValueError):
        layer.permit(RelayPath(R, bytes(8)), B, 0.0)  # not granted


def test_peer_paths_are_bounded():
    layer = RelayLayer(identity("a"), RelaySettings(max_paths=3))
    paths = [RelayPath(R, bytes([i]) * 8) for i in range(5)]
    for path in paths:
        layer.connect(path, 0.0)
    assert list(layer.client.peers) == paths[2:]


def test_a_payload_over_the_limit_is_not_sent():
    world = World()
    path = world.linked(0.0).path
    assert world.at(A).send(path, bytes(wire.MAX_PAYLOAD), 0.0)
    assert not world.at(A).send(path, bytes(wire.MAX_PAYLOAD + 1), 0.0)


def test_settings_are_checked():
    for bad in (dict(serve="sometimes"), dict(max_allocations=0), dict(min_lifetime=0),
                dict(default_lifetime=10, min_lifetime=30), dict(allocation_rate=0),
                dict(total_burst=0.5), dict(lifetime=0), dict(request_timeout=0)):
        with pytest.raises(ValueError):
            RelaySettings(**bad)
