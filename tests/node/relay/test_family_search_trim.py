"""A family search's allocations (node/stack.py `_family_search`, `_trim_searched`) do not
outlive what they were for (review R1, session 8): once no call waits for a relay of its
callee's family, those not offered to a live call are released, whether the search found a
dual-stack relay, timed out, or no call needed it; the search leaves `RelayClient.wanted`
alone (its own HELLOs are allocated whatever `wanted` says)."""

from __future__ import annotations

import collections

from kadtalk.node.relay import RelaySettings, wire
from kadtalk.node.relay.client import RelayClient

from .conftest import identity
from .dht import Call
from .test_families import D4, P4, Q4, V6, world


def held(net, addr) -> dict:
    return {a: h.state for a, h in net.nodes[addr].relay.client.held.items()}


def test_a_failed_family_search_holds_nothing_once_it_timed_out():
    net, hops = world()
    net.nodes[D4].set_relay_settings(RelaySettings(serve="never"))  # no dual-stack relay
    caller = net.nodes[P4]
    assert not caller.needs_relay
    Call(net, a=P4, b=V6).connect(limit=20.0)
    assert caller._upper.paths.stats["family_relay_timeout"] == 1
    assert Q4 in caller._upper.searched  # the search asked the IPv4-only relay
    net.run_until(net.now + 1300.0)  # beyond a 600 s lifetime: it would have been refreshed
    assert not held(net, P4)
    assert not caller._upper.search_held


def test_the_relay_a_found_search_offered_is_released_when_the_call_ends():
    net, hops = world()
    call = Call(net, a=P4, b=V6)
    assert call.connect() == "talking"
    assert held(net, P4) == {D4: "granted"}  # the IPv4-only relay Q4's was released
    net.nodes[P4].hang_up(net.now, call.sid_a)
    net.service(P4)
    net.run_until(net.now + 700.0)
    assert not held(net, P4)


def test_a_search_no_call_waits_for_leaves_nothing_held():
    """A search started alongside a call lookup (the callee named in IPv6 first) whose callee
    then had an IPv4 entry after all: no call waits, so its allocations go."""
    net, hops = world()
    caller = net.nodes[P4]
    caller.relay  # made on first need
    caller._family_search([], net.now)
    assert caller._upper.search_held
    net.service(P4)
    net.run_until(net.now + 700.0)
    assert not held(net, P4)


def test_the_search_leaves_wanted_alone():
    net, hops = world()
    caller = net.nodes[P4]
    caller.relay.client.wanted = 1  # as a NATed node's hold upkeep sets it
    call = Call(net, a=P4, b=V6)
    assert call.connect() == "talking"
    assert caller.relay.client.wanted == 1


def test_an_always_hello_is_allocated_past_wanted_and_a_spare_one_is_not():
    sent = []
    client = RelayClient(identity("owner"), RelaySettings(), collections.Counter(),
                         lambda d, a: sent.append((d, a)), collections.deque(),
                         random_bytes=lambda n: bytes(n))
    client.wanted = 0  # enough held already
    for relay, always in ((("198.51.100.1", 1), True), (("198.51.100.2", 1), False)):
        client.allocate(relay, 0.0, always=always)
        nonce = client.held[relay].nonce
        client.on_answer(bytes((wire.RELAY, wire.CHALLENGE)) + nonce + bytes(16), relay, 0.01)
    assert {a: h.state for a, h in client.held.items()} == {("198.51.100.1", 1): "allocating"}
    assert client.stats["hello_spare"] == 1
    client.allocate(("198.51.100.3", 1), 0.0)
    client.cancel(("198.51.100.3", 1))
    assert ("198.51.100.3", 1) not in client.held


def test_a_natted_node_keeps_of_a_search_only_what_it_lacks_of_its_call_relays():
    net, hops = world()
    caller = net.nodes[P4]
    caller.set_relay_settings(RelaySettings(call_relays=1))
    caller.relay
    caller._upper.named[1] = [None, []]  # a call lookup runs: nothing is trimmed meanwhile
    caller._family_search([], net.now)
    net.service(P4)
    net.run_until(net.now + 1.0)
    assert held(net, P4) == {D4: "granted", Q4: "granted"}
    caller.set_nat("cone", None)  # now it holds relays for its own calls: one
    del caller._upper.named[1]
    caller._trim_searched(net.now)
    client = caller.relay.client
    releasing = [a for a, h in client.held.items()
                 if h.request is not None and h.request.kind == "release"]
    assert len(releasing) == 1 and not caller._upper.search_held
    net.run_until(net.now + 700.0)
    assert sum(h.state == "granted" for h in client.held.values()) == 1
