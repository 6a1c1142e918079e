"""Answers encoded from the shared registry's entry bytes (issue 15 item 2): a simulated node's
answer waits as handles and is encoded from entries the registry keeps once for every node
(`SharedRegistry.answer_format`). The datagram is the one the node sent before, when it built
a RouteResponse of (ID, address) pairs and encoded it: the same for every responder sharing
the registry, in either answer format, with IPv6 contacts (left out of ROUTE_RES), and after
the kept entries were emptied at their bound."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kadtalk.sim.registry as shared
from kadtalk.node.routing.layer import RoutingLayer, RoutingSettings
from kadtalk.node.routing.messages import REQUEST_SIZE
from kadtalk.node.routing.route6 import MARKER, ROUTE6_REQUEST_SIZE
from kadtalk.node.routing.route6 import encode as encode_any
from kadtalk.sim.dualstack import DualStackRegistry, v6_address
from kadtalk.sim.registry import SharedRegistry

NODES = 60


def world(seed: int, dual: bool) -> tuple[SharedRegistry, list[RoutingLayer]]:
    """Three layers (nodes 0-2) sharing one registry, each knowing every other node (at IPv6
    too, some of them, in a dual-stack registry) and one forged pair (an extra handle)."""
    rng = Random(seed)
    ids = [rng.getrandbits(160) for _ in range(NODES)]
    registry = DualStackRegistry(ids) if dual else SharedRegistry(ids)
    layers = []
    for own in range(3):
        layer = RoutingLayer(ids[own], registry, Random(seed + own),
                             RoutingSettings(limits=False, ipv6=dual))
        for node in range(NODES):
            if node != own:
                layer.add_contact(ids[node], node, 0.0)
                if dual and node % 3 == 0:
                    layer.add_contact(ids[node] ^ 1, v6_address(node), 0.0)
        layer.add_contact(ids[own] ^ (1 << 150), 1 << 20, 0.0)  # an ID claimed elsewhere
        layers.append(layer)
    return registry, layers


def request(origin: int, target: int, six: bool) -> bytes:
    head = bytes((0,)) + origin.to_bytes(20, "big") + target.to_bytes(20, "big")
    return head + MARKER + bytes(ROUTE6_REQUEST_SIZE - REQUEST_SIZE - len(MARKER)) if six else head


def served(seed: int, dual: bool, asks: list[tuple[int, int, bool]], objects: bool) -> list:
    """What the three layers send for `asks` (responder, target, six), from node 10 (sender)."""
    registry, layers = world(seed, dual)
    sender = registry.ids[10]
    out = []
    for responder, target, six in asks:
        layer = layers[responder]
        layer.receive_datagram(request(sender, target, six), 10, 0.0)
        if objects:  # the RouteResponse of (ID, address) pairs, encoded as before
            out += [(encode_any(msg, registry.addr_to_wire, layer.settings.ipv6), addr)
                    for msg, addr in layer.messages_to_send(0.0)]
        else:
            out += layer.datagrams_to_send(0.0)
    return out


ASKS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**160 - 1), st.booleans()),
                min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1000), st.booleans(), ASKS)
def test_an_answer_from_kept_entries_is_the_encoded_route_response(seed, dual, asks):
    datagrams = served(seed, dual, asks, objects=False)
    assert datagrams == served(seed, dual, asks, objects=True)
    assert len([d for d, _ in datagrams if d[0] in (0x01, 0x0B)]) == len(asks)


@pytest.mark.parametrize("dual", [False, True])
def test_the_kept_entries_are_emptied_at_their_bound_and_answers_stay_the_same(dual):
    rng = Random(3)  # 12 answers to targets spread over the ID space: ~50 contacts named
    asks = [(i % 3, rng.getrandbits(160), i % 2 == 1) for i in range(12)]
    bound = shared.ENTRY_CACHE
    shared.ENTRY_CACHE = 7
    try:
        datagrams = served(1, dual, asks, objects=False)
        registry, layers = world(1, dual)
        for responder, target, six in asks:
            layers[responder].receive_datagram(request(registry.ids[10], target, six), 10, 0.0)
            layers[responder].datagrams_to_send(0.0)
            # each format's entries: under the bound before an answer, then its k entries
            assert all(len(entries) < 7 + 20 for _, entries in registry._kept)
    finally:
        shared.ENTRY_CACHE = bound
    assert datagrams == served(1, dual, asks, objects=True)
