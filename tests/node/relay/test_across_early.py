"""An IPv4-only caller's call lookup need not run to its end once an answer named the callee in
IPv6 only (node/stack.py `_across_due`): after `ACROSS_GRACE` smoothed round trips with no
IPv4 entry, the call goes across families through a dual-stack relay, and the lookup runs on
unheard. Before, the call waited for the lookup's end: every contact near the target answered
or timed out (the testbed's IPv4-only -> IPv6-only cells: 2.2-6.9 s, symmetric and NATed
contacts named at ports that never answer). Explicit time on MemoryNet (test_families.py)."""

from __future__ import annotations

from kadtalk.node.relay import RelayPath
from kadtalk.node.routing.events import LookupCompleted

from .dht import Call
from .test_families import D4, P4, V6, world

SILENT = [("203.0.113.%d" % i, 5004) for i in (1, 2, 3)]  # near the callee's ID, never answer


def slow_world():
    net, hops = world()
    caller, callee = net.nodes[P4], net.nodes[V6]
    for i, addr in enumerate(SILENT):
        assert caller.add_contact(callee.node_id ^ (1 + i), addr, net.now)
    return net, hops


def test_the_call_goes_across_families_before_the_lookup_ends():
    net, hops = slow_world()
    caller = net.nodes[P4]
    call = Call(net, a=P4, b=V6)
    assert call.connect() == "talking"
    assert type(call.path(P4)) is RelayPath and call.path(P4).relay == D4
    assert caller._upper.paths.stats["across_early"] == 1
    # set-up: the lookup's first answers, the grace, the relay's chain; not the silent
    # contacts' timeouts (request_timeout 1 s, each tried again): before, over 2 s
    assert call.talking_at - call.placed < 0.6
    net.run_until(net.now + 10.0)  # the lookup ends meanwhile: nobody hears of it
    assert not net.of(P4, LookupCompleted)
    assert not caller._upper.detached and not caller._upper.across_at


def test_without_silent_contacts_the_lookup_ends_first_as_before():
    net, hops = world()
    call = Call(net, a=P4, b=V6)
    assert call.connect() == "talking"
    stats = net.nodes[P4]._upper.paths.stats
    assert stats["across_families"] == 1 and "across_early" not in stats
