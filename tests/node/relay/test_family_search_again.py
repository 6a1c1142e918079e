"""A dual-stack relay a family search found is asked again at once by the next call across
families (node/stack.py `_family_search`): the first call's allocation there is released
when it ends (`_trim_searched`), and the search's "each contact at most once per RETRY_RELAY"
must not hold back a relay that served us. Before, the second call across families within
600 s found no contact left to ask and ended `unreachable` after the key-exchange timeout
(the namespace testbed's pairs table, session 8: v6-only -> filtering and -> symmetric, the
cells after the first v6-only cross-family call)."""

from __future__ import annotations

from kadtalk.node.relay import RelayPath

from .dht import Call
from .test_families import D4, D6, P4, V6, world


def hang_up(net, addr, sid) -> None:
    net.nodes[addr].hang_up(net.now, sid)
    net.service(addr)
    net.run_until(net.now + 5.0)  # the release goes and is answered


def test_a_second_call_across_families_asks_the_dual_stack_relay_again():
    """Since session 10 (H3, `Node.v6_only`) the IPv6-only caller holds relays for its calls
    as a NATed node does: the dual-stack relay D6 is its own from the start, named by its IPv4
    side (ALLOCATED's other address), so neither call needs a search, and it stays held after
    the first. The released-and-asked-again case is the IPv4 side's, below."""
    net, hops = world()
    caller = net.nodes[V6]
    assert caller.v6_only and caller.relay.client.held[D6].state == "granted"
    first = Call(net, a=V6, b=P4)
    assert first.connect() == "talking"
    assert first.path(V6).relay == D6
    hang_up(net, V6, first.sid_a)
    assert caller.relay.client.held[D6].state == "granted"  # kept: its call relay
    second = Call(net, a=V6, b=P4)
    assert second.connect() == "talking"  # (before session 9: unreachable, 15.5 s)
    assert type(second.path(V6)) is RelayPath and second.path(V6).relay == D6
    stats = caller._upper.paths.stats
    assert stats["across_families"] == 2 and not stats.get("family_relay_timeout")


def test_the_ipv4_side_asks_it_again_too():
    net, hops = world()
    for _ in range(2):
        call = Call(net, a=P4, b=V6)
        assert call.connect() == "talking"
        assert call.path(P4).relay == D4
        hang_up(net, P4, call.sid_a)
    stats = net.nodes[P4]._upper.paths.stats
    assert stats["family_relay_found"] == 2 and not stats.get("family_relay_timeout")


def test_a_relay_that_never_answered_still_waits_retry_relay():
    """Only a relay that granted the search an allocation naming its other address is asked
    again at once; a contact that did not answer keeps its RETRY_RELAY stamp."""
    net, hops = world()
    caller = net.nodes[P4]
    first = Call(net, a=P4, b=V6)
    assert first.connect() == "talking"
    hang_up(net, P4, first.sid_a)
    searched = caller._upper.searched
    assert D4 not in searched  # asked again at once next time
    assert any(a != D4 for a in searched)  # the IPv4-only relay Q4 (no other address) stays
