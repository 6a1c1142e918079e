"""The relay's side with explicit time: allocation, caps, refresh, permission, forwarding."""

from __future__ import annotations

import socket

import pytest

from kadtalk.node.identity import Identity
from kadtalk.node.relay import (
    AllocationExpired,
    PermissionGranted,
    PermissionRefused,
    RelayedData,
    RelayLayer,
    RelaySettings,
    wire,
)
from kadtalk.node.layer import Layer

from .conftest import A, B, C, R, SERVE, World, identity


def test_allocation_costs_the_relay_no_state_before_the_cookie_comes_back():
    world = World()
    # a HELLO draws a CHALLENGE of the same size, and the relay keeps nothing
    out = world.inject(wire.hello(bytes(16)), ("192.0.2.77", 4000))
    assert [(len(p.payload), p.payload[1], p.dst) for p in out[1:]] == \
        [(34, wire.CHALLENGE, ("192.0.2.77", 4000))]
    assert world.relay.server.allocations == {}
    # an ALLOCATE without the cookie (forged, or from another address) is not verified
    event_count = world.relay.stats["allocated"]
    me = identity("a")
    request = wire.allocate(bytes(16), bytes(16), 600, me.public_der,
                            me.sign(wire.signed_part(bytes(16), bytes(16), 600)))
    out = world.inject(request, A)
    assert world.relay.drop_counts() == {"bad_cookie": 1}
    assert [p.payload[1] for p in out[1:]] == [wire.CHALLENGE]  # a fresh one, 34 bytes
    assert world.relay.stats["allocated"] == event_count == 0


def test_a_cookie_is_bound_to_the_address_it_was_sent_to():
    world = World()
    nonce = bytes(range(16))
    out = world.inject(wire.hello(nonce), A, now=0.0)
    cookie = out[1].payload[18:34]
    me = identity("a")
    request = wire.allocate(nonce, cookie, 600, me.public_der,
                            me.sign(wire.signed_part(nonce, cookie, 600)))
    world.inject(request, C)  # replayed from elsewhere
    assert world.relay.drop_counts()["bad_cookie"] == 1
    out = world.inject(request, A)  # from the address that got it
    assert out[1].payload[1] == wire.ALLOCATED and out[1].dst == A
    assert len(world.relay.server.allocations) == 1
    again = world.inject(request, A)  # a retransmission: the same allocation, not a second
    assert again[1].payload == out[1].payload and len(world.relay.server.allocations) == 1


def test_a_bad_signature_is_refused_after_the_cookie_and_counted():
    world = World()
    nonce = bytes(16)
    cookie = world.inject(wire.hello(nonce), A)[1].payload[18:34]
    other = identity("b")  # signs, but the SPKI is a's
    request = wire.allocate(nonce, cookie, 600, identity("a").public_der,
                            other.sign(wire.signed_part(nonce, cookie, 600)))
    out = world.inject(request, A)
    assert world.relay.drop_counts() == {"bad_signature": 1}
    assert out[1].payload == wire.error(wire.ALLOCATE, wire.BAD_SIGNATURE, nonce)
    assert world.relay.server.allocations == {}


def test_granted_allocation_reports_the_reflexive_address_and_lifetime():
    world = World()
    event = world.granted(A, 0.0)
    assert event.path.relay == R and len(event.path.allocation) == 8
    assert event.reflexive == A and event.lifetime == SERVE.lifetime
    assert isinstance(world.relay, Layer)


def test_data_goes_only_between_the_owner_and_its_one_permitted_peer():
    world = World()
    event = world.granted(A, 0.0)
    path = event.path
    # no permission yet: the relay forwards nothing, even to a peer that knows the number
    world.knock(B, path, 0.0)
    assert world.at(A).send(path, b"early", 0.0)
    world.settle(0.0)
    assert world.relay.drop_counts() == {"no_permission": 1}
    world.at(A).permit(path, B, 0.1)
    world.settle(0.1)
    assert world.of(A, PermissionGranted) == [PermissionGranted(path, B, 0.1)]
    start = len(world.log)
    world.at(A).send(path, b"to b", 0.2)
    world.at(B).send(path, b"to a", 0.2)
    world.settle(0.2)
    hops = [(p.src, p.dst, p.payload) for p in world.log[start:]]
    assert (R, B, wire.data(path.allocation, b"to b")) in hops
    assert (R, A, wire.data(path.allocation, b"to a")) in hops
    assert world.of(B, RelayedData) == [RelayedData(path, b"to b", 0.2)]
    assert world.of(A, RelayedData) == [RelayedData(path, b"to a", 0.2)]
    # C, not permitted, cannot send through it, and its DATA reaches nobody
    start = len(world.log)
    out = world.inject(wire.data(path.allocation, b"from c"), C)
    assert [p.src for p in out] == [C]
    assert world.relay.drop_counts()["not_permitted"] == 1
    # a new permission replaces the old: exactly one peer (C proves its address first)
    world.knock(C, path, 0.3)
    world.at(A).permit(path, C, 0.3)
    world.settle(0.3)
    world.inject(wire.data(path.allocation, b"from b"), B)
    assert world.relay.drop_counts()["not_permitted"] == 2


@pytest.mark.parametrize("peer, reason", [
    (("0.0.0.0", 5004), "forbidden_peer"),
    (("0.1.2.3", 5004), "forbidden_peer"),
    (("127.0.0.1", 5004), "forbidden_peer"),
    (("127.8.9.10", 53), "forbidden_peer"),
    (("224.0.0.1", 5004), "forbidden_peer"),
    (("239.255.255.250", 1900), "forbidden_peer"),
    (("255.255.255.255", 5004), "forbidden_peer"),
    (("240.0.0.1", 5004), "forbidden_peer"),
    (("169.254.1.1", 5004), "forbidden_peer"),
    (("10.0.0.1", 5004), "forbidden_private"),
    (("192.168.1.1", 5004), "forbidden_private"),
    (("100.64.0.1", 5004), "forbidden_private"),
    (R, "forbidden_self"),
    ((R[0], 22), "forbidden_self"),  # any port of the relay's own IP
    (A, "forbidden_self"),  # the owner itself
])
def test_permission_to_a_special_address_is_refused_and_counted(peer, reason):
    world = World()
    world.relay.set_public([R])
    path = world.granted(A, 0.0).path
    raw = socket.inet_aton(peer[0]) + peer[1].to_bytes(2, "big")
    out = world.inject(wire.permit(path.allocation, raw), A)
    assert world.relay.drop_counts() == {reason: 1}
    assert [p.payload for p in out[1:]] == [wire.error(wire.PERMIT, wire.FORBIDDEN_PEER,
                                                       path.allocation)]
    assert world.relay.server.allocations[path.allocation].peer is None
    # and nothing is ever sent there
    world.inject(wire.data(path.allocation, b"x" * 40), A)
    assert world.relay.drop_counts()["no_permission"] == 1
    assert not [p for p in world.log if p.src == R and p.dst == peer and p.payload[1] == wire.DATA]


def test_private_peers_are_allowed_when_the_relay_serves_a_lan():
    world = World(RelaySettings(serve="always", forward_private=True))
    path = world.granted(A, 0.0).path
    lan = ("10.0.0.7", 5004)
    world.attach(lan, RelayLayer(identity("lan"), SERVE))
    world.knock(lan, path, 0.0)
    world.at(A).permit(path, lan, 0.0)
    world.settle(0.0)
    assert world.of(A, PermissionGranted)[0].peer == lan


def test_the_client_refuses_to_ask_for_a_non_address():
    world = World()
    path = world.granted(A, 0.0).path
    with pytest.raises(ValueError):
        world.at(A).permit(path, "somewhere", 0.0)


def test_the_relays_answer_to_a_refused_permission_is_an_event():
    world = World()
    path = world.granted(A, 0.0).path
    world.at(A).permit(path, ("127.0.0.1", 5004), 0.0)
    world.settle(0.0)
    assert world.of(A, PermissionRefused) == [
        PermissionRefused(path, ("127.0.0.1", 5004), "forbidden_peer", 0.0)]


def test_forged_refreshes_and_permissions_are_refused_and_counted():
    world = World()
    path = world.granted(A, 0.0).path
    number = path.allocation
    before = world.relay.server.allocations[number].expires
    for forged, src in ((wire.refresh(number, 0), C), (wire.refresh(number, 3600), C),
                        (wire.permit(number, bytes((203, 0, 113, 9, 0, 1))), C),
                        (wire.refresh(bytes(8), 600), A), (wire.permit(bytes(8), bytes(6)), A)):
        out = world.inject(forged, src)
        assert len(out) == 1  # no answer to anyone
    assert world.relay.drop_counts() == {"not_owner": 3, "unknown_allocation": 2}
    alloc = world.relay.server.allocations[number]
    assert alloc.expires == before and alloc.peer is None


def test_lifetime_refresh_release_and_expiry_with_explicit_time():
    world = World(RelaySettings(serve="always", lifetime=60, min_lifetime=30, keepalive=1000.0))
    path = world.granted(A, 0.0).path
    server = world.relay.server
    assert server.allocations[path.allocation].expires == 60.0
    world.settle(29.0)
    assert server.allocations[path.allocation].expires == 60.0
    world.settle(30.0)  # the client refreshes at half the lifetime
    assert server.allocations[path.allocation].expires == 90.0
    # the relay forgets it when no refresh comes: A goes silent
    world.detach(A)
    world.settle(89.9)
    assert path.allocation in server.allocations
    world.settle(90.0)
    assert server.allocations == {} and world.relay.stats["expired"] == 1
    # release: REFRESH with lifetime 0 ends it at once
    layer = RelayLayer(identity("a"), SERVE)
    world.attach(A, layer)
    path = world.granted(A, 100.0).path
    layer.release(path, 100.0)
    world.settle(100.0)
    assert server.allocations == {}
    assert world.of(A, AllocationExpired) == [AllocationExpired(path, "released", 100.0)]


def test_requested_lifetimes_are_clamped_to_the_relays_bounds():
    settings = RelaySettings(serve="always", max_lifetime=1000, lifetime=5000)
    world = World(settings)
    assert world.granted(A, 0.0).lifetime == 1000
    world2 = World(RelaySettings(serve="always", min_lifetime=100, default_lifetime=100,
                                 lifetime=10))
    assert world2.granted(A, 0.0).lifetime == 100


def test_per_allocation_and_total_bandwidth_caps():
    settings = RelaySettings(serve="always", allocation_rate=1000, allocation_burst=1000,
                             total_rate=1500, total_burst=1500)
    world = World(settings)
    path = world.linked(0.0).path
    payload = b"x" * 90  # 100 bytes a DATA
    world.settle(1.0)  # the clock first: a node serviced early would send these early
    second = world.granted(C, 1.0).path  # a second allocation, with B proven and permitted
    world.knock(B, second, 1.0)
    world.at(C).permit(second, B, 1.0)
    world.settle(1.0)
    for _ in range(15):
        world.at(A).send(path, payload, 1.0)
    world.settle(1.0)
    assert world.relay.stats["forwarded"] == 10
    assert world.relay.drop_counts()["over_allocation_rate"] == 5
    world.settle(1.5)  # half a second later: 500 bytes more
    for _ in range(10):
        world.at(B).send(path, payload, 1.5)
    world.settle(1.5)
    assert world.relay.stats["forwarded"] == 15
    # the relay's total: the second allocation gets only what is left of it
    for _ in range(10):
        world.at(C).send(second, payload, 1.5)
    world.settle(1.5)
    # the relay's bucket: full (1,500) at 1 s, 1,000 taken, +750 by 1.5 s, 500 taken by B:
    # 750 left for C's 1,000 bytes
    assert world.relay.drop_counts()["over_relay_rate"] == 3
    assert world.relay.stats["forwarded"] == 15 + 7


def test_caps_in_all_per_identity_and_per_host():
    settings = RelaySettings(serve="always", max_allocations=3, max_per_identity=1,
                             max_per_host=2, verify_rate=1000, verify_burst=1000,
                             source_rate=1000, source_burst=1000)
    world = World(settings)
    # one identity at two addresses: the second is over its quota
    world.granted(A, 0.0)
    world.attach(("203.0.113.1", 6000), RelayLayer(identity("a"), settings))
    world.at(("203.0.113.1", 6000)).allocate(R, 0.0)
    world.settle(0.0)
    assert world.relay.drop_counts()["quota"] == 1
    assert world.events[("203.0.113.1", 6000)][-1].reason == "quota"
    # another identity on the same host: allowed (2 per host), a third identity there is not
    world.attach(("203.0.113.1", 6001), RelayLayer(identity("x"), settings))
    world.granted(("203.0.113.1", 6001), 0.0)
    world.attach(("203.0.113.1", 6002), RelayLayer(identity("y"), settings))
    world.at(("203.0.113.1", 6002)).allocate(R, 0.0)
    world.settle(0.0)
    assert world.relay.drop_counts()["quota"] == 2
    # in all: the third allocation fills the relay, the fourth is refused
    world.granted(B, 0.0)
    world.at(C).allocate(R, 0.0)
    world.settle(0.0)
    assert world.relay.drop_counts()["relay_full"] == 1
    assert world.events[C][-1].reason == "relay_full"
    assert len(world.relay.server.allocations) == 3


def test_no_answer_is_larger_than_its_request_and_forwarding_keeps_the_size():
    world = World()
    path = world.linked(0.0).path
    world.settle(1.0)
    for size in (0, 1, 100, 1500):
        world.at(A).send(path, b"y" * size, 1.0)
        world.at(B).send(path, b"z" * size, 1.0)
    world.at(A).release(path, 2.0)
    world.settle(2.0)
    by_src = [p for p in world.log if p.src == R]
    assert by_src
    for answer in by_src:
        # what the relay sent is never more than what came in just before from its peer
        asked = [p for p in world.log if p.dst == R and p.src != R]
        assert len(answer.payload) <= max(len(p.payload) for p in asked)
    for p in world.log:
        if p.src == R and p.payload[1] == wire.DATA:
            assert any(q.payload == p.payload and q.dst == R for q in world.log)  # unchanged
    sizes = {wire.HELLO: wire.CHALLENGE, wire.REFRESH: wire.REFRESHED,
             wire.PERMIT: wire.PERMITTED}
    for request, answer in sizes.items():
        assert wire.SIZES[answer] <= wire.SIZES[request]
    assert wire.SIZES[wire.ERROR] <= min(wire.SIZES[wire.REFRESH], wire.SIZES[wire.PERMIT])
    assert wire.SIZES[wire.ALLOCATED] <= 38  # the smallest ALLOCATE is larger


def test_a_node_that_does_not_serve_never_answers_requests():
    for settings, public in ((RelaySettings(), ()), (RelaySettings(serve="never"), (R,))):
        layer = RelayLayer(identity("relay"), settings)
        layer.set_public(public)
        layer.receive_datagram(wire.hello(bytes(16)), A, 0.0)
        assert layer.datagrams_to_send(0.0) == [] and layer.server is None
        assert layer.drop_counts() == {"not_serving": 1}
    layer = RelayLayer(identity("relay"))  # auto: serves once it knows it is public
    layer.set_public([R])
    layer.receive_datagram(wire.hello(bytes(16)), A, 0.0)
    assert [d[1] for d, _ in layer.datagrams_to_send(0.0)] == [wire.CHALLENGE]


def test_an_identity_can_be_made_of_any_supported_key_type():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    world = World()
    world.detach(A)
    world.attach(A, RelayLayer(Identity.from_private_key(ed25519.Ed25519PrivateKey.generate()),
                               SERVE))
    assert world.granted(A, 0.0).reflexive == A


def test_two_relays_permitting_each_other_cannot_loop():
    """A owns an allocation at R permitting relay Y, and one at Y permitting R (each relay made
    to knock, so proven): a DATA from A reaches Y once and stops there (Y holds no allocation
    of that number: it is a path Y knocked at, so Y takes it as its own)."""
    y = ("198.51.100.2", 5004)
    world = World(RelaySettings(serve="always", max_per_identity=4, max_per_host=4))
    world.attach(y, RelayLayer(identity("relay y"), RelaySettings(serve="always")))
    at_r = world.granted(A, 0.0).path
    world.knock(y, at_r, 0.0)  # (a relay never knocks by itself: the test makes them)
    world.at(A).permit(at_r, y, 0.0)
    world.settle(0.0)
    # A's second allocation, at Y, from another port (one allocation per relay and client)
    a2 = ("203.0.113.1", 6000)
    world.attach(a2, RelayLayer(identity("a"), SERVE))
    world.at(a2).allocate(y, 0.0)
    world.settle(0.0)
    at_y = world.events[a2][-1].path
    world.knock(R, at_y, 0.0)
    world.at(a2).permit(at_y, R, 0.0)
    world.settle(0.0)
    start = len(world.log)
    world.at(A).send(at_r, b"loop?", 1.0)
    world.settle(1.0)
    hops = [(p.src, p.dst) for p in world.log[start:] if p.payload[1] == wire.DATA]
    assert hops == [(A, R), (R, y)]  # and no further: Y's allocation has another number
    assert [e.payload for e in world.of(y, RelayedData)] == [b"loop?"]  # Y knocked: its own
