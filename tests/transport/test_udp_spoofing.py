"""Address spoofing played on real UDP sockets (127.0.0.1): a raw attacker socket claims a victim
node's ID to every node of a swarm. The victim is still found at its real address; after it goes
away, a claim is checked with a request to the claimed address, and only the victim's answer
from its new address moves its entry."""

from __future__ import annotations

import asyncio
import socket

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ipv4_from_wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import ROUTE_REQ, RouteRequest, decode, encode_request
from kadtalk.transport.udp import start_node, start_swarm

from .test_udp import free_port_range

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=0.3, address_check_spacing=2.0)


def entry(driver, node_id: int):
    table = driver.node.routing.table
    handle = table.find(node_id)
    return None if handle < 0 else driver.node.routing.registry.addrs[handle]


async def lookup_through(server, node_id: int):
    """A fresh node that knows only `server` looks `node_id` up; the address it finds."""
    client = await start_node(host="127.0.0.1", settings=SETTINGS)
    try:
        client.node.add_contact(server.node.node_id, server.address, client.loop.time())
        result = await client.find_peer(node_id)
        return None if result.peer is None else result.peer[1]
    finally:
        client.close()


def test_spoofed_claims_on_real_sockets():
    async def scenario():
        loop = asyncio.get_running_loop()
        base = free_port_range(12)
        swarm = await start_swarm(12, base, settings=SETTINGS)
        identity = Identity.generate()
        victim_id = int.from_bytes(identity.node_id, "big")
        victim = await start_node(identity, host="127.0.0.1", settings=SETTINGS)
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        attacker.settimeout(5)
        moved = None
        try:
            assert (await victim.join([swarm[0].address])).success
            await victim.find_closest(victim_id ^ 1)  # outlasts the probes its requests drew
            server = min(swarm, key=lambda d: d.node.node_id ^ victim_id)
            assert entry(server, victim_id) == victim.address

            # 1. the victim is alive: claims from the attacker's own address change nothing
            for _ in range(3):
                for d in swarm:
                    attacker.sendto(
                        encode_request(RouteRequest(victim_id, victim_id), 146), d.address
                    )
            probes = answers = 0
            attacker.settimeout(1.0)
            try:
                while True:
                    reply = await loop.run_in_executor(None, attacker.recv, 2048)
                    if reply[0] == ROUTE_REQ:  # a bare probe of the claimed address, unanswered
                        assert len(reply) == 41
                        probes += 1
                    else:
                        answers += 1
            except TimeoutError:
                pass
            attacker.settimeout(5)
            assert answers == 3 * len(swarm)
            assert probes <= len(swarm)  # one per node: the claims came within one second
            assert sum(d.node.routing.table.address_checks for d in swarm) == 0  # never answered
            assert all(entry(d, victim_id) == victim.address for d in swarm)
            assert await lookup_through(server, victim_id) == victim.address

            # 2. the victim goes away; the server's request to it fails
            victim.close()
            await server.find_closest(victim_id)
            assert (
                server.node.routing.table.failures(server.node.routing.table.find(victim_id)) >= 1
            )
            # a claim now is checked with a bare request to the claimed address, left unanswered
            attacker.sendto(encode_request(RouteRequest(victim_id, 1), 146), server.address)
            got = [await loop.run_in_executor(None, attacker.recv, 2048) for _ in range(2)]
            [probe] = [decode(g, ipv4_from_wire)[0] for g in got if g[0] == ROUTE_REQ]
            assert probe.target != victim_id and probe.size == 41  # target: a keyed hash
            await server.find_closest(victim_id)  # outlasts the probe's timeout
            assert entry(server, victim_id) == victim.address

            # 3. the victim comes back at a new port and speaks to the server: it is probed,
            #    answers, and is found there
            moved = await start_node(identity, host="127.0.0.1", settings=SETTINGS)
            moved.node.add_contact(server.node.node_id, server.address, loop.time())
            await moved.find_closest(victim_id)
            await moved.find_closest(victim_id ^ 1)  # outlasts the probe's round trip
            assert entry(server, victim_id) == moved.address
            assert await lookup_through(server, victim_id) == moved.address
        finally:
            attacker.close()
            for d in [*swarm, victim] + ([moved] if moved else []):
                d.close()

    asyncio.run(scenario())


def test_a_node_restarted_on_another_port_is_found_there_with_no_failure_first():
    """H2's defect on real sockets: the victim stops (nobody asks its old port anything) and
    starts again on another port with the same ID; its first lookup makes the server probe the
    new port and check the old one (address_check_probes probes spaced 0.5x-1.5x
    address_check_spacing): within that window the server holds, and lookups find, the new port. (Before: the old port for ever, as nothing sent it a request to fail.)"""
    async def scenario():
        loop = asyncio.get_running_loop()
        swarm = await start_swarm(8, free_port_range(8), settings=SETTINGS)
        identity = Identity.generate()
        victim_id = int.from_bytes(identity.node_id, "big")
        victim = await start_node(identity, host="127.0.0.1", settings=SETTINGS)
        moved = None
        try:
            assert (await victim.join([swarm[0].address])).success
            await victim.find_closest(victim_id ^ 1)  # outlasts the probes its requests drew
            server = min(swarm, key=lambda d: d.node.node_id ^ victim_id)
            assert entry(server, victim_id) == victim.address
            victim.close()
            await asyncio.sleep(1.1)  # a restart: the server's probe meter allows one a second
            moved = await start_node(identity, host="127.0.0.1", settings=SETTINGS)
            assert moved.address != victim.address
            assert server.node.routing.table.failures(server.node.routing.table.find(victim_id)) == 0
            started = loop.time()
            moved.node.add_contact(server.node.node_id, server.address, loop.time())
            await moved.find_closest(victim_id)
            window = (SETTINGS.address_check_probes - 1) * 1.5 * SETTINGS.address_check_spacing
            bound = 1 + window + 3 * SETTINGS.request_timeout
            while entry(server, victim_id) != moved.address and loop.time() < started + bound + 5:
                await asyncio.sleep(0.05)
            assert entry(server, victim_id) == moved.address
            assert loop.time() - started < bound
            assert server.node.routing.table.address_checks == 1
            assert await lookup_through(server, victim_id) == moved.address
        finally:
            for d in [*swarm, victim] + ([moved] if moved else []):
                d.close()

    asyncio.run(scenario())
