"""The second punch round's IPv6 punch (docs/protocol.md §20, a45b1ff): `Node._second_punch`
sends PUNCH6_REQs only for a callee it reaches over IPv6. An IPv4-only caller's call across
families has an IPv6 callee address too, but its PUNCH6_REQs would find no route; the round's
lookup may still name IPv6 neighbours (a ROUTE6_RES). Whole nodes of tests/node/relay/
test_families.py (MemoryNet, explicit time); the round's lookup result is given directly."""

from __future__ import annotations

import dataclasses

from kadtalk.node.routing.events import LookupCompleted
from kadtalk.node.routing.lookup import Mode
from kadtalk.node.traversal import PUNCH6_REQ, TRAVERSAL

from .relay.test_families import D6, P4, V6, world


def second_round(caller_ipv6: bool) -> tuple[int, list]:
    """P4 (IPv4-only) calls V6 (IPv6-only); once the callee's address is known, before any
    KEY_RES, the second round's lookup ends naming two IPv6 neighbours of the callee: the
    PUNCH6_REQs P4 sends, and the callee's address. `caller_ipv6`: P4's socket takes IPv6
    (RoutingSettings.ipv6, as the daemon's driver finds) from then on."""
    net, _ = world()
    a, target = net.nodes[P4], net.nodes[V6].node_id
    sid = a.call(target, net.now)
    net.service(P4)
    s = a._upper.session.sessions[sid]
    net.run(until=lambda: s.addr is not None, limit=net.now + 5.0)
    assert s.rx is None  # no KEY_RES yet: the round goes ahead
    a.datagrams_to_send(net.now)  # what the call sent so far: not this round's
    if caller_ipv6:
        a.routing.settings = dataclasses.replace(a.routing.settings, ipv6=True)
    a._upper.punch_lookups[999] = (sid, (), None)
    near = ((target ^ 1, ("2001:db8:3::1", 5004)), (target ^ 2, D6))
    a._second_punch(LookupCompleted(999, target, Mode.FIND_CLOSEST, None, near, net.now,
                                    net.now, rpcs=2, timeouts=0, hops=1), net.now)
    sent = [to for data, to in a.datagrams_to_send(net.now)
            if data[:2] == bytes((TRAVERSAL, PUNCH6_REQ))]
    return s.addr, sent


def test_an_ipv4_only_caller_sends_no_ipv6_punch_across_families():
    callee, sent = second_round(caller_ipv6=False)
    assert callee == V6  # the callee's address is IPv6 ...
    assert sent == []  # ... but we cannot reach IPv6: no PUNCH6_REQ (before a45b1ff: two)


def test_a_caller_reaching_the_callee_over_ipv6_punches_it_over_ipv6():
    callee, sent = second_round(caller_ipv6=True)
    assert callee == V6 and sorted(sent) == sorted([("2001:db8:3::1", 5004), D6])
