"""bmuller's `kademlia` (PyPI, asyncio over rpcudp) behind the benchmark's `System` interface.

Its lookup of a node ID is NodeSpiderCrawl(protocol, node, peers, k, α).find(): a find-closest
crawl with no early stop. Its find_node answers leave out the node whose ID is the key, so the
crawl never returns the target itself (success 0 % by construction).
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from benchmarks.common import mean
from benchmarks.udp_routing.config import ALPHA, HOST, K
from benchmarks.udp_routing.load import REQUEST_POOL, LoadSpec
from benchmarks.udp_routing.system import Address, Contacts, Running

KADEMLIA_VERSION = "2.2.3"  # the wire format below was checked against this version
LOOKUP_MODES = {"crawl": 2}


def check() -> None:
    try:
        from importlib.metadata import version as installed_version

        import kademlia  # noqa: F401
        import umsgpack  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the baseline needs bmuller's kademlia: pip install kademlia==2.2.3 "
            "(it is in kadtalk's dev extras: pip install -e '.[dev]')"
        ) from None
    installed = installed_version("kademlia")
    if installed != KADEMLIA_VERSION:
        print(f"warning: kademlia {installed} installed; this benchmark was written against "
              f"{KADEMLIA_VERSION}", file=sys.stderr)


def version() -> str:
    import kademlia

    return kademlia.__version__


def table_size(protocol: Any) -> int:
    return sum(len(bucket) for bucket in protocol.router.buckets)


def stop_server(server: Any) -> None:
    """Server.stop(), and cancel rpcudp's pending reply timers: left running, they fire after the
    loop has cancelled their futures and log InvalidStateError tracebacks."""
    server.stop()
    protocol = server.protocol
    if protocol is not None:
        for future, timer in list(protocol._outstanding.values()):
            timer.cancel()
            future.cancel()
        protocol._outstanding.clear()


def limits_allow(sources: int) -> float:
    """kademlia has no flood or amplification limits: it answers whatever it can."""
    return float("inf")


async def start_server(port: int, contacts: Contacts, limits: bool) -> Running:
    """`limits` is ignored: kademlia has none."""
    from kademlia.network import Server
    from kademlia.node import Node

    server = Server(ksize=K, alpha=ALPHA)
    await server.listen(port, HOST)
    router = server.protocol.router
    for contact_id, (host, contact_port) in contacts:
        router.add_contact(Node(contact_id.to_bytes(20, "big"), host, contact_port))

    def stop() -> dict[str, Any]:
        final = {"table": table_size(server.protocol)}
        stop_server(server)
        return final

    return Running({"table": table_size(server.protocol)}, stop)


async def start_swarm(port_base: int, nodes: int) -> Running:
    """`nodes` Servers on consecutive ports, joined in waves of up to 32 at once (kadtalk's
    start_swarm paces its joins instead, at most 8 at once)."""
    from kademlia.network import Server

    rng = random.Random()
    servers = [Server(ksize=K, alpha=ALPHA)]
    await servers[0].listen(port_base, HOST)
    while len(servers) < nodes:
        wave = min(len(servers), nodes - len(servers), 32)
        new = []
        for i in range(wave):
            server = Server(ksize=K, alpha=ALPHA)
            await server.listen(port_base + len(servers) + i, HOST)
            new.append(server)
        await asyncio.gather(*(
            s.bootstrap([(HOST, port_base + rng.randrange(len(servers)))]) for s in new
        ))
        for server in new:
            if not table_size(server.protocol):
                raise RuntimeError("a kademlia swarm node could not bootstrap")
        servers.extend(new)
    await asyncio.sleep(0.2)  # let welcome pings and stray answers die down
    members = [(s.node.long_id, (HOST, port_base + i)) for i, s in enumerate(servers)]
    tables = [table_size(s.protocol) for s in servers]

    def stop() -> dict[str, Any]:
        for server in servers:
            stop_server(server)
        return {}

    return Running({"members": members, "table_mean": mean(tables)}, stop)


def load_spec(rng: random.Random, origins: list[int]) -> LoadSpec:
    """rpcudp 5's request: 0x00, message id (20), msgpack([name, [args...]]).

    `KademliaProtocol.call_find_node` calls `self.find_node(address, own_id, key)`, which rpcudp's
    `RPCProtocol.__getattr__` turns into `b"\\x00" + msg_id + umsgpack.packb(["find_node",
    (own_id, key)])` (a tuple packs as a msgpack array, as a list does); the server calls
    `rpc_find_node(sender, nodeid, key)` and answers `b"\\x01" + msg_id + umsgpack.packb(
    [(id, ip, port), ...])`.
    """
    import umsgpack

    requests = []
    for i in range(REQUEST_POOL):
        msg_id = rng.randbytes(20)
        sender = origins[i % len(origins)].to_bytes(20, "big")
        key = rng.randbytes(20)
        requests.append((b"\x00" + msg_id + umsgpack.packb(["find_node", [sender, key]]), msg_id))
    return LoadSpec("kademlia", requests, slice(1, 21),
                    lambda data: len(umsgpack.unpackb(data[21:])))


class Client:
    """A kademlia Server on an ephemeral port that counts the find-node requests it sends."""

    def __init__(self, server: Any):
        self.server = server
        self.table = 0
        self.rpcs = self.timeouts = 0

    async def join(self, bootstrap: Address) -> None:
        await self.server.bootstrap([bootstrap])
        protocol = self.server.protocol
        self.table = table_size(protocol)
        if not self.table:
            raise RuntimeError("a kademlia client could not bootstrap into the swarm")
        call_find_node = protocol.call_find_node

        async def counting_find_node(node_to_ask: Any, node_to_find: Any) -> Any:
            self.rpcs += 1
            result = await call_find_node(node_to_ask, node_to_find)
            if not result[0]:
                self.timeouts += 1
            return result

        protocol.call_find_node = counting_find_node  # the crawl looks it up on the instance

    async def lookup(self, target: int, mode: str) -> tuple[int, bool, int]:
        from kademlia.crawling import NodeSpiderCrawl
        from kademlia.node import Node

        protocol = self.server.protocol
        key = target.to_bytes(20, "big")
        self.rpcs = self.timeouts = 0
        node = Node(key)
        peers = protocol.router.find_neighbors(node)  # as Server.get / Server.set_digest do
        result = await NodeSpiderCrawl(protocol, node, peers, K, ALPHA).find()
        return self.rpcs, any(n.id == key for n in result), self.timeouts

    def close(self) -> None:
        stop_server(self.server)


async def start_client() -> Client:
    from kademlia.network import Server

    server = Server(ksize=K, alpha=ALPHA)
    await server.listen(0, HOST)
    return Client(server)
