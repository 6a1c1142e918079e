"""IPv6-only hosts' tables in a simulated world with address families (the routing fix of
docs/protocol.md section 23, "The other address"): with dual-stack hosts naming themselves at
their IPv6 address in their answers over IPv4 and responders naming proven IPv6 addresses to
requests over IPv6, IPv6-only joiners end with larger tables, and fewer with a single contact,
with the responders' setting on (`RoutingSettings.other_addresses`, the study's
`DualStackWorld.other_addresses`) than off (no announce taken; the self-entries still cost a
contact in those answers, so off is no longer session 10's routing exactly; docs/results.md,
"IPv6-only hosts' tables", at 500 and 1,000)."""

from __future__ import annotations

import statistics

from kadtalk.experiments import reach
from kadtalk.experiments.calls import CallStudy, _CallStudyRun
from kadtalk.experiments.harness.dualstack import DualStackWorld
from kadtalk.node.addresses import is_ipv6
from kadtalk.sim.nat import V6_ONLY


def _study() -> CallStudy:
    return CallStudy(nodes=100, calls=4, seed=1, settle=60.0, call_rate=4.0, relays=False,
                     bootstrap="protocol", wire="bytes", v6_only=0.2, dual_stack=0.4,
                     v6_firewall=1.0, **reach.mix(0.3))


def tables(monkeypatch, on: bool = True):
    monkeypatch.setattr(DualStackWorld, "other_addresses", on)  # the study's switch
    run = _CallStudyRun(_study(), None)
    run.run()
    world = run.world
    v6_only, kept = [], 0
    for addr, node in enumerate(world.driver.nodes):
        if node is None:
            continue
        routing = node.routing
        if world.nat.families[addr] == V6_ONLY:
            entries = list(routing.table.handles())
            assert all(is_ipv6(routing.registry.addrs[h]) for h in entries)
            v6_only.append(len(routing.table))
        kept += len(routing._others) if routing._others is not None else 0
    return v6_only, kept


def test_ipv6_only_joiners_keep_tables_when_dual_stack_hosts_announce(monkeypatch):
    with monkeypatch.context() as m:
        sizes, kept = tables(m)
    assert kept > 0  # dual-stack responders proved other addresses
    with monkeypatch.context() as m:  # the setting off: no announce taken
        before, kept_before = tables(m, on=False)
    assert kept_before == 0
    assert len(sizes) == len(before) >= 10
    # seed 1, session 12's authenticated announce: medians 22.5 against 10.5, 1 table of one
    # entry against 6 (session 10's routing: 12 and 6; session 11's announce in requests, 19
    # against 12 and 3 against 6; before R1's fix, 31 against 9.5, 1 against 7)
    assert statistics.median(sizes) >= statistics.median(before) + 5, (sizes, before)
    assert sum(n <= 1 for n in sizes) < sum(n <= 1 for n in before) - 2
