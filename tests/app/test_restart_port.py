"""A daemon restarted on another port (same identity) is reached there again (session 8: H2
found the old port kept in tables and lookups 8 minutes later). Real daemons on loopback."""

from __future__ import annotations

import asyncio
from functools import partial

from kadtalk.node.routing.layer import RoutingSettings

from .conftest import joined_pair

SPACING = 2.0  # the address check's probes (default 10 s apart): a shorter test
WINDOW = (RoutingSettings().address_check_probes - 1) * 1.5 * SPACING


def entry(daemon, node_id: int):
    node = daemon.driver.node
    handle = node.routing.table.find(node_id)
    return None if handle < 0 else node.routing.registry.addrs[handle]


def test_a_daemon_restarted_on_another_port_is_found_there(tmp_path, monkeypatch):
    # the daemon's settings come from its config (02d6e46): patched at the UDP driver only, the
    # default 10 s spacing applied: the move took 15-24 s and 4 runs of 4 failed (session 12)
    monkeypatch.setattr("kadtalk.app.config.RoutingSettings",
                        partial(RoutingSettings, address_check_spacing=SPACING))

    async def scenario():
        loop = asyncio.get_running_loop()
        async with joined_pair(tmp_path) as pair:
            b_id = pair.b.driver.node.node_id
            old = pair.b.driver.address
            assert entry(pair.a, b_id) == old
            await pair.stop_b()
            await asyncio.sleep(1.1)  # a restart; a probes one address at most once a second
            started = loop.time()
            await pair.start_b()  # same config dir and identity, a new free port
            new = pair.b.driver.address
            assert new != old and pair.b.driver.node.node_id == b_id
            while entry(pair.a, b_id) != new and loop.time() < started + 10 + WINDOW:
                await asyncio.sleep(0.05)
            table = pair.a.driver.node.routing.table
            assert entry(pair.a, b_id) == new, (old, new, loop.time() - started,
                                                table.address_checks, table._checks)
            print(f"moved {loop.time() - started:.1f} s after b's restart began")
            assert loop.time() - started < 5 + WINDOW  # its join, a probe and the check
            result = await pair.a.driver.find_peer(b_id)  # a knows only b: it asks b's entry
            assert result.peer is not None and result.peer[1] == new
            assert pair.a.driver.node.routing.table.address_checks == 1

    asyncio.run(scenario())
