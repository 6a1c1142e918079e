"""Routing-table poisoning with forged IDs (issue 17, attack 1) played on real UDP sockets
(127.0.0.1): a plain attacker socket that never answers sends a swarm node 80 bare ROUTE_REQs
(3.3 KB) whose origin IDs fill one bucket of its table, all closer to a node that joins later
than anything else. Before the fix they filled the bucket and its cache (and were what the
daemon saved to peers.json); the newcomer reached only the cache. Now nothing forged is held,
the newcomer answers the victim's probe and enters, and a lookup through the victim finds it."""

from __future__ import annotations

import asyncio
import random
import socket
from types import SimpleNamespace

from kadtalk.app.daemon import Daemon
from kadtalk.node.identity import Identity
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import ID_BITS, ROUTE_REQ, RouteRequest, encode_request
from kadtalk.transport.udp import start_node, start_swarm

from .test_udp import free_port_range

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=0.3)


def held_ids(driver) -> tuple[set[int], set[int]]:
    """The IDs of the driver's table entries, and of its replacement caches."""
    table, ids = driver.node.routing.table, driver.node.routing.registry.ids
    buckets = range(table.bucket_count())
    return ({ids[h] for i in buckets for h in table.bucket(i)},
            {ids[h] for i in buckets for h in table.replacements(i)})


def test_forged_ids_from_a_silent_socket_never_enter_a_table_on_real_sockets():
    async def scenario():
        loop = asyncio.get_running_loop()
        swarm = await start_swarm(12, free_port_range(12), settings=SETTINGS)
        identity = Identity.generate()
        newcomer_id = int.from_bytes(identity.node_id, "big")
        victim = min(swarm, key=lambda d: d.node.node_id ^ newcomer_id)
        shared = ID_BITS - (victim.node.node_id ^ newcomer_id).bit_length()  # its bucket
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        attacker.settimeout(1.0)
        newcomer = searcher = None
        try:
            # 80 forged IDs in the victim's bucket `shared`, sharing 40 bits with the newcomer
            rng = random.Random(17)
            forged = {newcomer_id ^ rng.getrandbits(ID_BITS - 40) for _ in range(80)}
            assert all(victim.node.routing.table.bucket_index(f) == shared for f in forged)
            datagrams = [encode_request(RouteRequest(f, rng.getrandbits(ID_BITS))) for f in forged]
            assert sum(map(len, datagrams)) == 80 * 41
            for data in datagrams:
                attacker.sendto(data, victim.address)
            got = []
            try:
                while True:
                    got.append(await loop.run_in_executor(None, attacker.recv, 2048))
            except socket.timeout:
                pass
            probes = [len(g) for g in got if g[0] == ROUTE_REQ]
            assert len(got) - len(probes) == 80  # every forged request was answered

            # a node joins later, through another node, by protocol
            newcomer = await start_node(identity, host="127.0.0.1", settings=SETTINGS)
            other = next(d for d in swarm if d is not victim)
            assert (await newcomer.join([other.address])).success
            await newcomer.find_closest(newcomer_id ^ 1)  # outlasts the victim's probe

            # another node that knows only the victim looks the newcomer up
            searcher = await start_node(host="127.0.0.1", settings=SETTINGS)
            searcher.node.add_contact(victim.node.node_id, victim.address, loop.time())
            found = await searcher.find_peer(newcomer_id)
            return forged, probes, found, Daemon.best_peers(SimpleNamespace(driver=victim))
        finally:
            attacker.close()
            for d in [*swarm, newcomer, searcher]:
                if d is not None:
                    d.close()
            entries, cached = held_ids(victim)
            outcome.update(entries=entries, cached=cached, victim_drops=victim.node.drop_counts())

    outcome: dict = {}
    forged, probes, found, saved = asyncio.run(scenario())
    assert not forged & {int(node_id, 16) for node_id, _ in saved}  # nothing forged to peers.json
    assert not forged & outcome["entries"] and not forged & outcome["cached"]
    assert found.peer is not None and found.peer[0] in outcome["entries"]  # the newcomer
    assert found.timeouts == 0
    assert probes == [41]  # one bare probe for the 80 claims, never answered
    assert "probe_busy" not in outcome["victim_drops"]  # skipped within the second, not dropped
