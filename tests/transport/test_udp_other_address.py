"""A dual-stack node's other address on real sockets (docs/protocol.md section 23, "The other
address"): P, dual-stack, is known to A over IPv4 and names itself at its IPv6 address (::1),
as `Node.set_nat`'s own addresses say (the daemon's start), in its answer to the keyed query its
marked request to A draws; A proves it with an announce probe, and Q,
IPv6-only, finds P at ::1 through A (without the announce, A would name P at 127.0.0.1, which
Q's IPv6 socket cannot reach)."""

from __future__ import annotations

import asyncio

from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.transport.udp import start_node

from .test_udp_ipv6 import needs_ipv6
from .test_udp_session import in_table


async def _others(driver, node_id: int) -> None:
    """Until `driver` keeps an other address for `node_id`'s entry."""
    routing = driver.node.routing
    while routing._others is None or routing.table.find(node_id) not in routing._others._of:
        await asyncio.sleep(0.005)


@needs_ipv6
def test_an_ipv6_only_node_finds_a_dual_stack_peer_at_the_ipv6_address_it_announced():
    async def scenario():
        a = await start_node(ipv6=True, settings=RoutingSettings(other_addresses=True))  # "::"
        p = await start_node(ipv6=True)
        q = await start_node(host="::1")  # IPv6 only
        try:
            a_port, p_port = a.address[1], p.address[1]
            p.node.set_nat("unknown", None, own=[("127.0.0.1", p_port), ("::1", p_port)])
            assert (await p.join([("127.0.0.1", a_port)])).success  # A learns P over IPv4
            await asyncio.wait_for(in_table(a, p.node.node_id), 5)
            routing = a.node.routing
            held = routing.registry.addrs[routing.table.find(p.node.node_id)]
            await p.find_peer(q.node.node_id ^ 1)  # a request to A over IPv4: A queries P
            await asyncio.wait_for(_others(a, p.node.node_id), 5)
            assert (await q.join([("::1", a_port)])).success
            found = await q.find_peer(p.node.node_id)
            return held, found.peer, p_port
        finally:
            for x in (a, p, q):
                x.close()

    held, found, p_port = asyncio.run(scenario())
    assert held == ("127.0.0.1", p_port)  # A holds P at IPv4 (and keeps it there)
    assert found is not None and found[1] == ("::1", p_port)
