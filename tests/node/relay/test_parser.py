"""Hypothesis over the relay's parser: arbitrary bytes never raise, a malformed datagram is one
counted drop and draws nothing, an answer is never larger than the datagram that drew it, and
a datagram to anyone else is a DATA forwarded unchanged."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.layer import Layer
from kadtalk.node.relay import RelayLayer, wire
from kadtalk.node.relay.addresses import IPV4
from kadtalk.node.relay.server import KNOCKED_AGAIN
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node

from .conftest import A, B, C, R, SERVE, World, echo_limited, identity

V6 = [("2001:db8:b::7", 6000), ("2001:db8:b::8", 6000), ("2001:db8:a::1", 5004)]
SOURCES = st.sampled_from([A, B, C, ("192.0.2.1", 1), ("0.0.0.0", 0), "sim-address", 7,
                           ("::1", 5004), ("999.1.1.1", 5004), ("::ffff:1.2.3.4", 1), *V6])
RELAY_BYTES = st.one_of(
    st.binary(max_size=1600),
    st.builds(lambda op, body: bytes((wire.RELAY, op)) + body, st.integers(0, 17),
              st.binary(max_size=120)),
    st.builds(lambda op, n: bytes((wire.RELAY, op)) + bytes(n), st.sampled_from(
        sorted(wire.SIZES)), st.integers(0, 40)),
    st.builds(lambda op, body: bytes((wire.RELAY, op)) + body[:wire.SIZES6[op] - 2].ljust(
        wire.SIZES6[op] - 2, b"\0"), st.sampled_from(sorted(wire.SIZES6)),
        st.binary(max_size=44)),  # the IPv6 sizes, random fields
)


def linked_world() -> tuple[World, bytes]:
    world = World()
    return world, world.linked(0.0).path.allocation


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(RELAY_BYTES, SOURCES, st.booleans()), max_size=12))
def test_arbitrary_datagrams_never_raise_and_malformed_ones_are_one_counted_drop(items):
    world, number = linked_world()
    check_arbitrary(world.relay, number, items)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(RELAY_BYTES, SOURCES, st.booleans()), max_size=12))
def test_the_same_holds_for_a_dual_stack_relay_with_an_ipv6_peer(items):
    from .test_ipv6 import Relay, packed

    relay = Relay()  # an IPv4 owner (A) and an IPv6 peer, linked by hand
    number = relay.allocate(A)
    relay.prove(number, V6[0])
    relay.send(wire.permit(number, packed(V6[0])), A)
    check_arbitrary(relay.layer, number, items)


def check_arbitrary(relay: RelayLayer, number: bytes, items: list) -> None:
    now = 1.0
    for data, src, aimed in items:
        if aimed and len(data) >= 10 and data[:1] == bytes((wire.RELAY,)):
            data = data[:2] + number + data[10:]  # name the live allocation
        before = sum(relay.drop_counts().values())
        relay.receive_datagram(data, src, now)
        out = relay.datagrams_to_send(now)
        if not wire.well_formed(data):
            assert sum(relay.drop_counts().values()) == before + 1
            assert out == []
        for sent, dst in out:
            if dst == src:
                assert len(sent) <= len(data)
            elif sent[1] == wire.KNOCKED:  # a knock, reported to the allocation's owner only
                alloc = relay.server.allocations.get(sent[2:10])
                assert data[1] == wire.KNOCK and len(sent) <= len(data)
                assert alloc is not None and dst == alloc.owner
            else:
                assert sent == data and data[1] == wire.DATA
        now += 0.1


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200), SOURCES)
def test_a_node_with_relays_on_never_raises_on_0x08(body, src):
    me = identity("node")
    node = Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), random.Random(1), identity=me)
    node.relay.set_public([("198.51.100.9", 5004)])
    node.receive_datagram(bytes((wire.RELAY,)) + body, src, 0.0)
    node.datagrams_to_send(0.0)
    assert sum(node.drop_counts().values()) <= 1


def test_every_fixed_size_layout_is_well_formed_only_at_its_size():
    for op, size in wire.SIZES.items():
        assert wire.well_formed(bytes((wire.RELAY, op)) + bytes(size - 2))
        assert not wire.well_formed(bytes((wire.RELAY, op)) + bytes(size - 1))
        assert not wire.well_formed(bytes((wire.RELAY, op)) + bytes(size - 3))
    for op, size in wire.SIZES6.items():  # the IPv6 sizes: 12 bytes more, nothing between
        assert size == wire.SIZES[op] + 12
        assert wire.well_formed(bytes((wire.RELAY, op)) + bytes(size - 2))
        assert not any(wire.well_formed(bytes((wire.RELAY, op)) + bytes(n - 2))
                       for n in range(wire.SIZES[op] + 1, size)
                       if not (op == wire.KNOCK and n == wire.KNOCK_TOKEN))
    for size in (wire.KNOCK_TOKEN, wire.KNOCK6_TOKEN):  # an echo with a HOLD's token: 24, 36
        assert wire.well_formed(bytes((wire.RELAY, wire.KNOCK)) + bytes(size - 2))
        assert not wire.well_formed(bytes((wire.RELAY, wire.KNOCK)) + bytes(size - 1))
        assert not wire.well_formed(bytes((wire.RELAY, wire.KNOCK)) + bytes(size - 3))
    for op in (wire.HOLD, wire.CLAIM):  # allocation, token, then any length (a CLAIM's pad)
        head = bytes((wire.RELAY, op)) + bytes(16)
        assert wire.well_formed(head) and wire.well_formed(head + bytes(wire.MAX_PAYLOAD))
        assert not wire.well_formed(head[:-1])
        assert not wire.well_formed(head + bytes(wire.MAX_PAYLOAD + 1))
    assert len(wire.claim(bytes(8), bytes(8))) == wire.CLAIM_SIZE == 94
    assert wire.CLAIM_FACTOR * wire.CLAIM_SIZE == wire.HEADER + 272  # the largest KEY_REQ held
    assert wire.well_formed(wire.data(bytes(8), b""))
    assert not wire.well_formed(wire.data(bytes(8), bytes(wire.MAX_PAYLOAD + 1)))
    assert not wire.well_formed(bytes((wire.RELAY, 0x0B)) + bytes(10))
    assert not wire.well_formed(bytes((wire.RELAY,)))
    me = identity("a")
    good = wire.allocate(bytes(16), bytes(16), 60, me.public_der, me.sign(b"x"))
    assert wire.parse_allocate(good).spki == me.public_der
    for bad in (good[:38], good[:38 + len(me.public_der)], good[:36] + b"\xff\xff" + good[38:],
                good[:36] + b"\x00\x00" + good[38:]):
        assert not wire.well_formed(bad)


def test_a_layer_alone_satisfies_the_layer_protocol():
    layer = RelayLayer(identity("a"), SERVE)
    assert isinstance(layer, Layer)


def test_events_are_frozen_dataclasses_on_one_base():
    import dataclasses

    from kadtalk.node.layer import Event
    from kadtalk.node.relay import events

    kinds = [events.AllocationGranted, events.AllocationFailed, events.AllocationExpired,
             events.PermissionGranted, events.PermissionRefused, events.RelayedData]
    for kind in kinds:
        assert issubclass(kind, events.RelayEvent) and issubclass(kind, Event)
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen


ADDRESSES = st.sampled_from([A, B, C, ("192.0.2.1", 1), ("198.18.0.9", 40000), V6[0], V6[1]])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(ADDRESSES, ADDRESSES, st.binary(min_size=6, max_size=6),
                          st.integers(0, 2), st.floats(0.0, 300.0)), max_size=10))
def test_a_knock_proves_exactly_the_address_its_cookie_was_sent_to(items):
    """KNOCK's cookie field: a bare KNOCK draws a 16-byte KNOCK_COOKIE to its source only; a
    KNOCK proves its source (KNOCKED to the owner, the address among the proven) only when its
    cookie is the one minted for that source and allocation (an arbitrary guess, or a cookie
    minted for another address or allocation, is a counted drop; every cookie first takes a
    token of the allocation's echo bucket; an address told within KNOCKED_AGAIN is not told
    again); permissions follow."""
    world = World()
    relay = world.relay
    alloc_a = world.granted(A).path.allocation
    alloc_c = world.granted(C).path.allocation
    server = relay.server
    now = 0.0
    for src, minted_for, guess, kind, dt in items:
        now += dt
        number = (alloc_a, alloc_c)[len(guess) % 2 if kind else 0]
        v6 = ":" in src[0]  # an IPv6 knocker pads (V6[0] and V6[1] share a /64, not a proof)
        if kind == 0:
            data = wire.knock(number, ipv6=v6)
        elif kind == 1:
            data = wire.knock(number, server._knock_cookies.mint(minted_for, number, now),
                              ipv6=v6)
        else:
            data = wire.knock(number, guess, ipv6=v6)
        server.expire(now)  # (the clients do not refresh here: allocations end at 600 s)
        alloc = server.allocations.get(number)
        before = set(alloc.proven) if alloc is not None else set()
        told = alloc.proven.get(src) if alloc is not None else None
        limited = echo_limited(relay.stats)
        relay.receive_datagram(data, src, now)
        out = relay.datagrams_to_send(now)
        owner = alloc.owner if alloc is not None else None
        for sent, dst in out:
            assert len(sent) <= len(data) == (28 if v6 else 16)
            if dst == src:
                assert sent[1] == wire.KNOCK_COOKIE and data[10:16] == wire.NO_COOKIE
                assert server._knock_cookies.valid(src, number, sent[10:16], now)
            else:
                assert dst == owner and sent == wire.knocked(number, IPV4.to_wire(src))
        proved = any(dst == owner for _, dst in out)
        minted = kind == 1 and minted_for == src or (
            kind == 2 and server._knock_cookies.valid(src, number, guess, now))
        if src in (owner, R) or alloc is None:
            assert not proved
        else:
            metered = echo_limited(relay.stats) == limited  # the echo bucket had a token
            again = told is not None and now - told < KNOCKED_AGAIN  # the owner knows already
            assert proved == (minted and data[10:16] != wire.NO_COOKIE and metered and not again)
            assert (src in alloc.proven) == (proved or src in before)
            assert len(alloc.proven) <= 4


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from([R, R, A, ("198.51.100.1", 5005), "sim-address"]),
                          st.binary(min_size=14, max_size=14), st.booleans(),
                          st.floats(0.0, 4.0)), max_size=12))
def test_a_knocker_echoes_only_cookies_from_the_relay_it_knocked_at_and_once_per_knock(items):
    """The client's side of KNOCK_COOKIE: arbitrary ones, from anywhere, draw nothing but
    16-byte KNOCKs to the relay knocked at, at most one per bare KNOCK sent (no timer runs
    here, so no retry: one), never after 10 s."""
    from kadtalk.node.relay import RelayPath

    layer = RelayLayer(identity("b"), SERVE)
    path = RelayPath(R, bytes(range(8)))
    layer.knock(path, 0.0)
    layer.datagrams_to_send(0.0)
    now, echoes = 0.0, 0
    for src, body, aimed, dt in items:
        now += dt
        data = bytes((wire.RELAY, wire.KNOCK_COOKIE)) + (
            path.allocation + body[8:] if aimed else body)
        layer.receive_datagram(data, src, now)
        for sent, dst in layer.datagrams_to_send(now):
            echoes += 1
            assert dst == R == src and aimed and now < 10.0
            assert sent == wire.knock(path.allocation, data[10:16])
    t, due = 0.0, 0
    for src, _, aimed, dt in items:
        t += dt
        due += src == R and aimed and t < 10.0
    assert echoes == min(due, 1)  # the first cookie from the relay in time is echoed
