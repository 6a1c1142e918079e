"""kadtalk behind the benchmark's `System` interface: its UDP driver, ROUTE_REQ load and the
two lookups (find_peer stops once the target's entry is learned; find_closest ends when the k
closest have answered, like-for-like with kademlia's crawl)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from benchmarks.common import mean
from benchmarks.udp_routing.config import ALPHA, HOST, K
from benchmarks.udp_routing.load import REQUEST_POOL, LoadSpec
from benchmarks.udp_routing.system import Address, Contacts, Running

LOOKUP_MODES = {"find_peer": 1, "find_closest": 1}


def check() -> None:
    pass  # the project itself


def version() -> str:
    import kadtalk

    return kadtalk.__version__


def settings(limits: bool = True) -> Any:
    """The routing settings of every kadtalk node here (server, swarm, clients); `limits`
    False lifts the flood and amplification limits (RoutingSettings.limits)."""
    from kadtalk.node.routing.layer import RoutingSettings

    return RoutingSettings(k=K, alpha=ALPHA, limits=limits)


def limits_allow(sources: int) -> float:
    """Requests a second the default limits answer in steady state, from `sources` busy
    source addresses: the node's budget, or the sources' together if that is less."""
    limits = settings()
    return min(limits.request_rate, sources * limits.source_request_rate)


async def settle(drivers: list[Any], limit: float = 5.0) -> None:
    """Wait until the nodes' background lookups (refresh after join) are over."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline and any(d.node.routing.lookups_running for d in drivers):
        await asyncio.sleep(0.01)


async def start_server(port: int, contacts: Contacts, limits: bool) -> Running:
    from kadtalk.transport.udp import start_node

    driver = await start_node(host=HOST, port=port, settings=settings(limits))
    now = asyncio.get_running_loop().time()
    for contact_id, addr in contacts:
        driver.node.add_contact(contact_id, addr, now)

    def stop() -> dict[str, Any]:
        from kadtalk.transport.udp import socket_drops

        routing = driver.node.routing
        final = {"table": len(routing.table), "drops": dict(driver.node.drop_counts()),
                 "limited_answers": routing.limited_answers,
                 "validated": len(routing._validated or ()),
                 # requests the kernel dropped at the full socket buffer (a starved server)
                 "socket_drops": socket_drops([driver.address])}
        driver.close()
        return final

    return Running({"table": len(driver.node.routing.table)}, stop)


async def start_swarm(port_base: int, nodes: int) -> Running:
    from kadtalk.transport.udp import start_swarm as start

    drivers = await start(nodes, port_base, HOST, settings())
    await settle(drivers)
    members = [(d.node.node_id, (HOST, d.address[1])) for d in drivers]
    tables = [len(d.node.routing.table) for d in drivers]

    def stop() -> dict[str, Any]:
        for driver in drivers:
            driver.close()
        return {}

    return Running({"members": members, "table_mean": mean(tables)}, stop)


def load_spec(rng: random.Random, origins: list[int]) -> LoadSpec:
    from kadtalk.node.routing.contacts import ipv4_to_wire
    from kadtalk.node.routing.messages import (
        CONTACT_SIZE,
        REQUEST_SIZE,
        RESPONSE_HEADER,
        ROUTE_REQ,
        RouteResponse,
        RouteRequest,
        encode_request,
        encode_response,
        id_to_bytes,
    )

    requests = []
    for i in range(REQUEST_POOL):
        target = rng.getrandbits(160)
        datagram = encode_request(RouteRequest(origins[i % len(origins)], target))
        requests.append((datagram, id_to_bytes(target)))

    def reply(data: bytes, source: int) -> bytes | None:
        """Answer an address or validation probe (a bare ROUTE_REQ) as the peer source `source`
        is: by its ID, echoing the target, so that the server validates the source's address."""
        if len(data) != REQUEST_SIZE or data[0] != ROUTE_REQ:
            return None
        target = int.from_bytes(data[21:41], "big")
        return encode_response(RouteResponse(origins[source % len(origins)], target, ()),
                               ipv4_to_wire)

    # ROUTE_RES: type, responder id (20), target id (20), contacts of 26 bytes
    return LoadSpec("kadtalk", requests, slice(21, 41),
                    lambda data: (len(data) - RESPONSE_HEADER) // CONTACT_SIZE, reply)


class Client:
    """A kadtalk node on an ephemeral port; it answers requests until closed."""

    def __init__(self, driver: Any):
        self.driver = driver
        self.table = 0

    async def join(self, bootstrap: Address) -> None:
        joined = await self.driver.join([bootstrap])
        if not joined.success:
            raise RuntimeError("a kadtalk client could not join the swarm")
        await settle([self.driver])
        self.table = len(self.driver.node.routing.table)

    async def lookup(self, target: int, mode: str) -> tuple[int, bool, int]:
        if mode == "find_peer":
            event = await self.driver.find_peer(target)
            success = event.peer is not None and event.peer[0] == target
        else:
            event = await self.driver.find_closest(target)
            success = any(node_id == target for node_id, _ in event.closest)
        return event.rpcs, success, event.timeouts

    def close(self) -> None:
        self.driver.close()


async def start_client() -> Client:
    from kadtalk.transport.udp import start_node

    return Client(await start_node(host=HOST, port=0, settings=settings()))
