"""kadtalk's routing over real UDP on 127.0.0.1, against bmuller's `kademlia` from PyPI.

Two parts, both run for kadtalk and for `kademlia` (2.2.3, asyncio, over rpcudp), set up the
same way (k = 20, α = 3), in one invocation so that the ratios hold on a noisy, shared machine:

(a) throughput: one server node in its own process (multiprocessing, spawn), pre-filled with
    `--contacts` contacts so that every answer carries 20 of them. A load generator in this
    process sends find-node requests from one plain UDP socket, in each system's own wire format
    (kadtalk: 41-byte ROUTE_REQ; kademlia: rpcudp's `0x00 + msgid(20) + msgpack(['find_node',
    [sender_id, key]])`), from `--origins` distinct fake sender IDs, keeping `--window` requests
    outstanding so it measures the server, not the client, and counts answers per second over a
    fixed time after a warm-up.

(b) lookups: a 64-node swarm of each system (each swarm in its own process), then fresh client
    nodes in this process join it and look up every swarm node's ID:
      kadtalk  find_peer     stops as soon as the target's own entry is learned (a call's lookup);
      kadtalk  find_closest  ends when the k closest have answered (like-for-like with kademlia);
      kademlia NodeSpiderCrawl(protocol, node, peers, 20, 3).find(): the library's lookup of a
               node ID, a find-closest crawl with no early stop.
    Reported: median lookup time, mean RPCs (find-node requests sent), success (target found /
    target among the k closest returned).

Every figure is the median over `--repeat` repetitions (the two systems interleaved); the ratio
column is kadtalk / kademlia: above 1 is better for answers/s, below 1 for time and RPCs.

    python -m benchmarks.udp_routing                 # full run (about a minute)
    python -m benchmarks.udp_routing --quick         # smoke run, well under 20 s
    python -m benchmarks.udp_routing --json out.json # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import math
import multiprocessing
import os
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

if __package__ in (None, ""):  # run as a file: python benchmarks/udp_routing.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    HIGHER,
    LOWER,
    Figure,
    add_common_options,
    busy_udp_ports,
    emit_json,
    environment,
    figures_payload,
    mean,
    median,
    percentile,
    positive_float,
    positive_int,
    print_table,
    resolve_repeat,
)

HOST = "127.0.0.1"
K = 20
ALPHA = 3
KADEMLIA_VERSION = "2.2.3"  # the wire format below was checked against this version
REQUEST_POOL = 4096  # distinct prebuilt requests the load generator cycles through
EXPIRY = 0.5  # seconds after which an unanswered load request is written off
SYSTEMS = ("kadtalk", "kademlia")

log = logging.getLogger("benchmarks.udp_routing")


# -- options ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.udp_routing",
        description=(
            "Kademlia routing over real UDP on 127.0.0.1: (a) find-node requests per second one "
            "server node answers, (b) lookup time and RPCs in a 64-node swarm; for kadtalk and "
            "for bmuller's `kademlia` package (PyPI, 2.2.3), both with k = 20 and α = 3. Prints "
            "both and the ratio kadtalk/kademlia: above 1 is better for answers/s, below 1 is "
            "better for lookup time and RPCs. Figures are medians over --repeat repetitions."
        ),
        epilog=(
            "The kademlia lookup is NodeSpiderCrawl, a find-closest crawl without early stop; "
            "kadtalk's find_peer stops as soon as the target is learned, so compare the "
            "find_closest rows like-for-like. Needs `pip install kademlia==2.2.3` (the dev extra)."
        ),
    )
    add_common_options(parser)
    parser.add_argument("--only", choices=("throughput", "lookups"),
                        help="run one part only (default: both)")
    parser.add_argument("--port-base", type=int, default=21000, metavar="PORT",
                        help="first UDP port used; kadtalk's range comes first, kademlia's right "
                        "after it (default 21000; the ports are checked to be free)")
    g = parser.add_argument_group("(a) throughput")
    g.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="seconds measured per repetition (default 3, 1 with --quick)")
    g.add_argument("--window", type=positive_int, default=64, metavar="W",
                   help="requests kept outstanding by the load generator (default 64)")
    g.add_argument("--origins", type=positive_int, default=1024, metavar="N",
                   help="distinct fake sender IDs in the load (default 1024)")
    g.add_argument("--contacts", type=positive_int, default=200, metavar="N",
                   help="contacts pre-filled into the server node (default 200)")
    g = parser.add_argument_group("(b) lookups")
    g.add_argument("--nodes", type=positive_int, default=64, metavar="N",
                   help="swarm size (default 64)")
    g.add_argument("--lookups", type=positive_int, default=None, metavar="N",
                   help="targets looked up per client and repetition (default: every swarm "
                   "node; 16 with --quick)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed for contact IDs, sender IDs and target order (default 1)")
    return parser


@dataclass
class Plan:
    """Everything one invocation does, with the ports it needs."""

    repeat: int
    quick: bool
    duration: float
    warmup: float  # once per server, before the first repetition
    lead_in: float  # per repetition, before counting starts
    window: int
    origins: int
    contacts: int
    nodes: int
    lookups: int
    seed: int
    parts: tuple[str, ...]
    port_base: int
    span: int = 0
    bases: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # per system: server, then the contacts' (never bound) ports, then the swarm
        self.span = int(math.ceil((1 + self.contacts + self.nodes) / 100.0) * 100)
        self.bases = {name: self.port_base + i * self.span for i, name in enumerate(SYSTEMS)}
        if self.port_base < 1024 or self.port_base + 2 * self.span > 65536:
            raise SystemExit(
                f"--port-base {self.port_base}: need {2 * self.span} ports in 1024-65535")

    def server_port(self, system: str) -> int:
        return self.bases[system]

    def contact_ports(self, system: str) -> range:
        base = self.bases[system] + 1
        return range(base, base + self.contacts)

    def swarm_ports(self, system: str) -> range:
        base = self.bases[system] + 1 + self.contacts
        return range(base, base + self.nodes)

    def ports(self, system: str) -> list[int]:
        wanted: list[int] = []
        if "throughput" in self.parts:
            wanted.append(self.server_port(system))
            wanted.extend(self.contact_ports(system))  # kademlia pings them: nobody may be there
        if "lookups" in self.parts:
            wanted.extend(self.swarm_ports(system))
        return wanted

    def describe(self) -> dict[str, Any]:
        return {
            "k": K, "alpha": ALPHA, "host": HOST, "repeat": self.repeat, "quick": self.quick,
            "duration_s": self.duration, "warmup_s": self.warmup, "lead_in_s": self.lead_in,
            "window": self.window, "origins": self.origins, "contacts": self.contacts,
            "nodes": self.nodes, "lookups_per_client": self.lookups, "seed": self.seed,
            "parts": list(self.parts),
            "ports": {s: [self.bases[s], self.bases[s] + self.span - 1] for s in SYSTEMS},
        }


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    parts = (args.only,) if args.only else ("throughput", "lookups")
    lookups = args.lookups
    if lookups is None:
        lookups = min(16, args.nodes) if quick else args.nodes
    return Plan(
        repeat=resolve_repeat(args),
        quick=quick,
        duration=args.duration if args.duration is not None else (1.0 if quick else 3.0),
        warmup=0.5 if quick else 1.0,
        lead_in=0.1 if quick else 0.25,
        window=args.window,
        origins=args.origins,
        contacts=args.contacts,
        nodes=args.nodes,
        lookups=min(lookups, args.nodes),
        seed=args.seed,
        parts=parts,
        port_base=args.port_base,
    )


def check_kademlia() -> None:
    try:
        from importlib.metadata import version

        import kademlia  # noqa: F401
        import umsgpack  # noqa: F401
    except ImportError:
        raise SystemExit(
            "the baseline needs bmuller's kademlia: pip install kademlia==2.2.3 "
            "(it is in kadtalk's dev extras: pip install -e '.[dev]')"
        ) from None
    installed = version("kademlia")
    if installed != KADEMLIA_VERSION:
        print(f"warning: kademlia {installed} installed; this benchmark was written against "
              f"{KADEMLIA_VERSION}", file=sys.stderr)


def quiet_logging() -> None:
    """kademlia and rpcudp log every unanswered ping; keep their noise out of the output."""
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.ERROR)


# -- child processes ----------------------------------------------------------------------------


def _child_main(role: str, conn: Any, *args: Any) -> None:
    """Entry point of every child process (spawned): run `role`, report, wait for 'stop'."""
    quiet_logging()
    try:
        asyncio.run(ROLES[role](conn, *args))
    except BaseException as error:  # report anything, so the parent fails with a message
        try:
            conn.send(("error", f"{role}: {type(error).__name__}: {error}"))
        except Exception:
            pass
        raise


async def _wait_for_stop(conn: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)


Contacts = list[tuple[int, tuple[str, int]]]  # (node ID, (host, port))


async def _kadtalk_server(conn: Any, port: int, contacts: Contacts) -> None:
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.transport.udp import start_node

    driver = await start_node(host=HOST, port=port, settings=RoutingSettings(k=K, alpha=ALPHA))
    now = asyncio.get_running_loop().time()
    for contact_id, addr in contacts:
        driver.node.add_contact(contact_id, addr, now)
    conn.send(("ready", {"table": len(driver.node.routing.table)}))
    await _wait_for_stop(conn)
    conn.send(("done", {"table": len(driver.node.routing.table),
                        "drops": dict(driver.node.drop_counts())}))
    driver.close()


def _kademlia_table_size(protocol: Any) -> int:
    return sum(len(bucket) for bucket in protocol.router.buckets)


def _kademlia_stop(server: Any) -> None:
    """Server.stop(), and cancel rpcudp's pending reply timers: left running, they fire after the
    loop has cancelled their futures and log InvalidStateError tracebacks."""
    server.stop()
    protocol = server.protocol
    if protocol is not None:
        for future, timer in list(protocol._outstanding.values()):
            timer.cancel()
            future.cancel()
        protocol._outstanding.clear()


async def _kademlia_server(conn: Any, port: int, contacts: Contacts) -> None:
    from kademlia.network import Server
    from kademlia.node import Node

    server = Server(ksize=K, alpha=ALPHA)
    await server.listen(port, HOST)
    router = server.protocol.router
    for contact_id, (host, contact_port) in contacts:
        router.add_contact(Node(contact_id.to_bytes(20, "big"), host, contact_port))
    conn.send(("ready", {"table": _kademlia_table_size(server.protocol)}))
    await _wait_for_stop(conn)
    conn.send(("done", {"table": _kademlia_table_size(server.protocol)}))
    _kademlia_stop(server)


async def _kadtalk_swarm(conn: Any, port_base: int, nodes: int) -> None:
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.transport.udp import start_swarm

    started = time.perf_counter()
    drivers = await start_swarm(nodes, port_base, HOST, RoutingSettings(k=K, alpha=ALPHA))
    await _kadtalk_settle(drivers)
    built = time.perf_counter() - started
    members = [(d.node.node_id, (HOST, d.address[1])) for d in drivers]
    tables = [len(d.node.routing.table) for d in drivers]
    conn.send(("ready", {"members": members, "build_s": built, "table_mean": mean(tables)}))
    await _wait_for_stop(conn)
    conn.send(("done", {}))
    for driver in drivers:
        driver.close()


async def _kademlia_swarm(conn: Any, port_base: int, nodes: int) -> None:
    """`nodes` Servers on consecutive ports, joined in waves like kadtalk's start_swarm."""
    from kademlia.network import Server

    rng = random.Random()
    started = time.perf_counter()
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
            if not _kademlia_table_size(server.protocol):
                raise RuntimeError("a kademlia swarm node could not bootstrap")
        servers.extend(new)
    await asyncio.sleep(0.2)  # let welcome pings and stray answers die down
    built = time.perf_counter() - started
    members = [(s.node.long_id, (HOST, port_base + i)) for i, s in enumerate(servers)]
    tables = [_kademlia_table_size(s.protocol) for s in servers]
    conn.send(("ready", {"members": members, "build_s": built, "table_mean": mean(tables)}))
    await _wait_for_stop(conn)
    conn.send(("done", {}))
    for server in servers:
        _kademlia_stop(server)


ROLES: dict[str, Callable[..., Any]] = {
    "kadtalk-server": _kadtalk_server,
    "kademlia-server": _kademlia_server,
    "kadtalk-swarm": _kadtalk_swarm,
    "kademlia-swarm": _kademlia_swarm,
}


class Child:
    """A spawned child process running one role; `ready()` returns what it reported."""

    def __init__(self, role: str, *args: Any):
        ctx = multiprocessing.get_context("spawn")
        self.role = role
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(role, child_conn, *args),
                                   name=f"udp_routing-{role}", daemon=True)
        self.process.start()
        child_conn.close()
        self.info: dict[str, Any] = {}
        self.final: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            state = "exited" if not self.process.is_alive() else "did not answer"
            raise RuntimeError(f"{self.role} {state} within {timeout:.0f} s")
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.role} exited (code {self.process.exitcode})") from None
        if message[0] == "error":
            raise RuntimeError(message[1])
        return message

    def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        _, self.info = self._receive(timeout)
        return self.info

    def stop(self) -> dict[str, Any]:
        if self.process.is_alive():
            try:
                self.conn.send("stop")
                _, self.final = self._receive(10.0)
            except (OSError, RuntimeError, EOFError):
                pass
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)
        self.conn.close()
        return self.final


# -- (a) throughput -----------------------------------------------------------------------------


@dataclass
class LoadSpec:
    """What the load generator sends to one system and how it recognises an answer."""

    system: str
    requests: list[tuple[bytes, bytes]]  # (datagram, key the answer carries)
    key_slice: slice  # where an answer carries the key
    contacts_in: Callable[[bytes], int]  # contacts in one answer (for the sanity check)


def kadtalk_load(rng: random.Random, origins: list[int]) -> LoadSpec:
    from kadtalk.node.routing.messages import (
        CONTACT_SIZE,
        RESPONSE_HEADER,
        RouteRequest,
        encode_request,
        id_to_bytes,
    )

    requests = []
    for i in range(REQUEST_POOL):
        target = rng.getrandbits(160)
        datagram = encode_request(RouteRequest(origins[i % len(origins)], target))
        requests.append((datagram, id_to_bytes(target)))
    # ROUTE_RES: type, responder id (20), target id (20), contacts of 26 bytes
    return LoadSpec("kadtalk", requests, slice(21, 41),
                    lambda data: (len(data) - RESPONSE_HEADER) // CONTACT_SIZE)


def kademlia_load(rng: random.Random, origins: list[int]) -> LoadSpec:
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


def probe(sock: socket.socket, spec: LoadSpec, count: int = 8) -> list[int]:
    """Send a few requests one at a time; return the contacts in each answer."""
    found = []
    sock.settimeout(1.0)
    for datagram, key in spec.requests[-count:]:
        sock.send(datagram)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionRefusedError):
                continue
            if data[:1] == b"\x01" and data[spec.key_slice] == key:
                found.append(spec.contacts_in(data))
                break
    if not found:
        raise RuntimeError(f"the {spec.system} server did not answer the load generator's requests")
    return found


def drive(
    sock: socket.socket, spec: LoadSpec, window: int, lead_in: float, seconds: float,
    server_pid: int | None = None, cursor: list[int] | None = None,
) -> dict[str, float]:
    """Keep `window` requests outstanding; count answers during `seconds` after `lead_in`."""
    import psutil

    requests = spec.requests
    pool = len(requests)
    key_slice = spec.key_slice
    cursor = cursor if cursor is not None else [0]
    index = cursor[0]
    server = psutil.Process(server_pid) if server_pid else None
    send = sock.send
    recv = sock.recv
    clock = time.perf_counter
    outstanding: dict[bytes, float] = {}
    sent_order: collections.deque[tuple[float, bytes]] = collections.deque()
    sock.settimeout(0.05)

    start = clock()
    count_from = start + lead_in
    end = count_from + seconds
    counting = False
    answered = expired = sent = 0
    cpu0 = pcpu0 = t0 = 0.0
    now = start
    while True:
        while len(outstanding) < window:
            datagram, key = requests[index]
            index = index + 1 if index + 1 < pool else 0
            try:
                send(datagram)
            except (BlockingIOError, ConnectionRefusedError):
                break
            stamp = clock()
            outstanding[key] = stamp
            sent_order.append((stamp, key))
            sent += 1
        try:
            data = recv(65536)
        except (TimeoutError, ConnectionRefusedError):
            data = b""
        now = clock()
        if data and data[0] == 1 and outstanding.pop(data[key_slice], None) is not None:
            answered += counting
        if not counting and now >= count_from:
            counting = True
            answered = expired = sent = 0
            t0 = now
            pcpu0 = time.process_time()
            if server is not None:
                times = server.cpu_times()
                cpu0 = times.user + times.system
        if now >= end:
            break
        limit = now - EXPIRY
        while sent_order and sent_order[0][0] < limit:
            stamp, key = sent_order.popleft()
            if outstanding.get(key) == stamp:
                del outstanding[key]
                expired += 1
    elapsed = now - t0
    result = {
        "answers_per_s": answered / elapsed,
        "answered": answered,
        "sent": sent,
        "expired": expired,
        "seconds": elapsed,
        "client_cpu": (time.process_time() - pcpu0) / elapsed,
    }
    if server is not None:
        times = server.cpu_times()
        result["server_cpu"] = (times.user + times.system - cpu0) / elapsed
    # drain stragglers so the next repetition starts clean
    sock.settimeout(0.05)
    try:
        while True:
            sock.recv(65536)
    except (TimeoutError, ConnectionRefusedError):
        pass
    cursor[0] = index
    return result


def run_throughput(plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(plan.seed)
    contact_ids = [rng.getrandbits(160) for _ in range(plan.contacts)]
    origins = [rng.getrandbits(160) for _ in range(plan.origins)]
    specs = {"kadtalk": kadtalk_load(random.Random(plan.seed + 1), origins),
             "kademlia": kademlia_load(random.Random(plan.seed + 2), origins)}
    children: dict[str, Child] = {}
    sockets: dict[str, socket.socket] = {}
    out: dict[str, Any] = {s: {"reps": []} for s in SYSTEMS}
    try:
        for system in SYSTEMS:
            ports = plan.contact_ports(system)
            contacts = [(cid, (HOST, port)) for cid, port in zip(contact_ids, ports)]
            children[system] = Child(f"{system}-server", plan.server_port(system), contacts)
        for system in SYSTEMS:
            info = children[system].ready()
            out[system]["table_at_start"] = info["table"]
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((HOST, 0))
            sock.connect((HOST, plan.server_port(system)))
            sockets[system] = sock
            out[system]["contacts_per_answer"] = probe(sock, specs[system])
        cursors = {s: [0] for s in SYSTEMS}
        for system in SYSTEMS:  # warm up: the tables fill with the fake senders
            drive(sockets[system], specs[system], plan.window, 0.0, plan.warmup,
                  cursor=cursors[system])
        for rep in range(plan.repeat):
            order = SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]
            for system in order:
                result = drive(sockets[system], specs[system], plan.window, plan.lead_in,
                               plan.duration, children[system].pid, cursors[system])
                out[system]["reps"].append(result)
            say(f"(a) repetition {rep + 1}/{plan.repeat}: " + ", ".join(
                f"{s} {out[s]['reps'][-1]['answers_per_s']:,.0f}/s" for s in SYSTEMS))
    finally:
        for sock in sockets.values():
            sock.close()
        for system, child in children.items():
            out[system]["server_at_end"] = child.stop()
    return out


# -- (b) lookups --------------------------------------------------------------------------------


@dataclass
class LookupRecord:
    ms: float
    rpcs: int
    success: bool
    timeouts: int


def summarize(records: list[LookupRecord]) -> dict[str, float]:
    latencies = [r.ms for r in records]
    return {
        "lookups": len(records),
        "median_ms": median(latencies),
        "p90_ms": percentile(latencies, 90),
        "mean_rpcs": mean(float(r.rpcs) for r in records),
        "success": 100.0 * sum(r.success for r in records) / len(records) if records else math.nan,
        "timeouts": sum(r.timeouts for r in records),
    }


async def _kadtalk_settle(drivers: list[Any], limit: float = 5.0) -> None:
    """Wait until the nodes' background lookups (refresh after join) are over."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline and any(d.node.routing.lookups_running for d in drivers):
        await asyncio.sleep(0.01)


async def kadtalk_client(
    members: list[tuple[int, tuple[str, int]]], targets: list[int], mode: str,
    rng: random.Random, keep: list[Callable[[], None]],
) -> tuple[list[LookupRecord], int]:
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.transport.udp import start_node

    driver = await start_node(host=HOST, port=0, settings=RoutingSettings(k=K, alpha=ALPHA))
    keep.append(driver.close)  # stays up (answering) until the end: no dead contacts in the swarm
    joined = await driver.join([members[rng.randrange(len(members))][1]])
    if not joined.success:
        raise RuntimeError("a kadtalk client could not join the swarm")
    await _kadtalk_settle([driver])
    table = len(driver.node.routing.table)
    lookup = driver.find_peer if mode == "find_peer" else driver.find_closest
    records = []
    clock = time.perf_counter
    for target in targets:
        started = clock()
        event = await lookup(target)
        ms = (clock() - started) * 1000.0
        if mode == "find_peer":
            success = event.peer is not None and event.peer[0] == target
        else:
            success = any(node_id == target for node_id, _ in event.closest)
        records.append(LookupRecord(ms, event.rpcs, success, event.timeouts))
    return records, table


async def kademlia_client(
    members: list[tuple[int, tuple[str, int]]], targets: list[int], rng: random.Random,
    keep: list[Callable[[], None]],
) -> tuple[list[LookupRecord], int]:
    from kademlia.crawling import NodeSpiderCrawl
    from kademlia.network import Server
    from kademlia.node import Node

    server = Server(ksize=K, alpha=ALPHA)
    await server.listen(0, HOST)
    keep.append(lambda: _kademlia_stop(server))
    await server.bootstrap([members[rng.randrange(len(members))][1]])
    protocol = server.protocol
    table = _kademlia_table_size(protocol)
    if not table:
        raise RuntimeError("a kademlia client could not bootstrap into the swarm")

    counts = {"rpcs": 0, "timeouts": 0}
    call_find_node = protocol.call_find_node

    async def counting_find_node(node_to_ask: Any, node_to_find: Any) -> Any:
        counts["rpcs"] += 1
        result = await call_find_node(node_to_ask, node_to_find)
        if not result[0]:
            counts["timeouts"] += 1
        return result

    protocol.call_find_node = counting_find_node  # the crawl looks it up on the instance

    records = []
    clock = time.perf_counter
    for target in targets:
        key = target.to_bytes(20, "big")
        counts["rpcs"] = counts["timeouts"] = 0
        started = clock()
        node = Node(key)
        peers = protocol.router.find_neighbors(node)  # as Server.get / Server.set_digest do
        crawl = NodeSpiderCrawl(protocol, node, peers, K, ALPHA)
        result = await crawl.find()
        ms = (clock() - started) * 1000.0
        success = any(n.id == key for n in result)
        records.append(LookupRecord(ms, counts["rpcs"], success, counts["timeouts"]))
    return records, table


async def lookup_repetitions(
    plan: Plan, swarms: dict[str, list[tuple[int, tuple[str, int]]]], say: Callable[[str], None],
) -> dict[str, Any]:
    """Per repetition: kadtalk find_peer and find_closest clients, two kademlia crawl clients.

    Each client is a fresh node that joins through a random swarm node, then looks up the
    same number of swarm nodes. Every side adds two live nodes to its swarm per repetition.
    """
    rng = random.Random(plan.seed + 3)
    keep: list[Callable[[], None]] = []
    modes = ("kadtalk find_peer", "kadtalk find_closest", "kademlia crawl")
    out: dict[str, Any] = {m: {"reps": [], "tables": []} for m in modes}
    try:
        for rep in range(plan.repeat):
            jobs: list[tuple[str, Callable[[], Any]]] = []
            for mode in modes:
                clients = 2 if mode == "kademlia crawl" else 1
                for _ in range(clients):
                    system = mode.split()[0]
                    members = swarms[system]
                    targets = [m[0] for m in rng.sample(members, plan.lookups)]
                    if system == "kadtalk":
                        job = (lambda mem=members, t=targets, m=mode.split()[1]:
                               kadtalk_client(mem, t, m, rng, keep))
                    else:
                        job = lambda mem=members, t=targets: kademlia_client(mem, t, rng, keep)
                    jobs.append((mode, job))
            if rep % 2:
                jobs.reverse()
            collected: dict[str, list[LookupRecord]] = collections.defaultdict(list)
            for mode, job in jobs:
                records, table = await job()
                collected[mode].extend(records)
                out[mode]["tables"].append(table)
            for mode in modes:
                out[mode]["reps"].append(summarize(collected[mode]))
            say(f"(b) repetition {rep + 1}/{plan.repeat}: " + ", ".join(
                f"{m} {out[m]['reps'][-1]['median_ms']:.2f} ms / "
                f"{out[m]['reps'][-1]['mean_rpcs']:.1f} RPCs" for m in modes))
    finally:
        for close in keep:
            close()
        await asyncio.sleep(0.05)
    return out


def run_lookups(plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    children: dict[str, Child] = {}
    try:
        for system in SYSTEMS:
            children[system] = Child(f"{system}-swarm", plan.swarm_ports(system).start, plan.nodes)
        infos = {system: children[system].ready(timeout=120.0) for system in SYSTEMS}
        say("(b) swarms ready: " + ", ".join(
            f"{s} {len(infos[s]['members'])} nodes in {infos[s]['build_s']:.1f} s, "
            f"{infos[s]['table_mean']:.1f} contacts a table" for s in SYSTEMS))
        swarms = {s: infos[s]["members"] for s in SYSTEMS}
        result = asyncio.run(lookup_repetitions(plan, swarms, say))
        result["swarms"] = {
            s: {"build_s": infos[s]["build_s"], "table_mean": infos[s]["table_mean"]}
            for s in SYSTEMS
        }
        return result
    finally:
        for child in children.values():
            child.stop()


# -- report -------------------------------------------------------------------------------------


def _rep_values(reps: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in reps]


def build_figures(plan: Plan, throughput: dict[str, Any] | None,
                  lookups: dict[str, Any] | None) -> list[Figure]:
    figures: list[Figure] = []

    def add(name: str, ours: list[float], baseline: list[float], **kw: Any) -> None:
        figures.append(Figure(name, median(ours), median(baseline),
                              samples={"kadtalk": ours, "kademlia": baseline}, **kw))

    if throughput:
        kt, kd = throughput["kadtalk"]["reps"], throughput["kademlia"]["reps"]
        add("(a) find-node answers/s, one node", _rep_values(kt, "answers_per_s"),
            _rep_values(kd, "answers_per_s"), unit="/s", better=HIGHER, digits=0)
        add("(a) server CPU while measured", [100 * v for v in _rep_values(kt, "server_cpu")],
            [100 * v for v in _rep_values(kd, "server_cpu")], unit="%", digits=0)
        add("(a) load-generator CPU", [100 * v for v in _rep_values(kt, "client_cpu")],
            [100 * v for v in _rep_values(kd, "client_cpu")], unit="%", digits=0)
        per_answer = {s: [float(c) for c in throughput[s]["contacts_per_answer"]] for s in SYSTEMS}
        add("(a) contacts per answer", per_answer["kadtalk"], per_answer["kademlia"], digits=1)
    if lookups:
        crawl = lookups["kademlia crawl"]["reps"]
        for mode in ("find_peer", "find_closest"):
            ours = lookups[f"kadtalk {mode}"]["reps"]
            note = "kademlia: crawl" if mode == "find_peer" else "like-for-like"
            add(f"(b) {mode} median time", _rep_values(ours, "median_ms"),
                _rep_values(crawl, "median_ms"), unit="ms", better=LOWER, digits=2, note=note)
            add(f"(b) {mode} p90 time", _rep_values(ours, "p90_ms"),
                _rep_values(crawl, "p90_ms"), unit="ms", better=LOWER, digits=2)
            add(f"(b) {mode} mean RPCs", _rep_values(ours, "mean_rpcs"),
                _rep_values(crawl, "mean_rpcs"), better=LOWER, digits=1)
            add(f"(b) {mode} success", _rep_values(ours, "success"),
                _rep_values(crawl, "success"), unit="%", better=HIGHER, digits=0)
        tables_kt = (lookups["kadtalk find_peer"]["tables"]
                     + lookups["kadtalk find_closest"]["tables"])
        add("(b) client table after join", [float(t) for t in tables_kt],
            [float(t) for t in lookups["kademlia crawl"]["tables"]], digits=1)
    return figures


def notes(plan: Plan) -> list[str]:
    lines = [
        f"medians over {plan.repeat} repetition(s), kadtalk and kademlia interleaved; ratio = "
        "kadtalk/kademlia; 'better' says which direction wins and who wins it",
        "k = 20, α = 3 for both, all on 127.0.0.1; CPU rows are context: the share of one core "
        "each process used while measured (a server below 100 % with a load generator well "
        "below it means other processes were competing for the cores)",
    ]
    if "throughput" in plan.parts:
        lines.append(
            f"(a) server in its own process with {plan.contacts} contacts pre-filled; load "
            f"generator keeps {plan.window} requests outstanding from {plan.origins} fake sender "
            f"IDs, counts answers for {plan.duration:g} s per repetition after a "
            f"{plan.warmup:g} s warm-up; kademlia's server pings a full bucket's head for every "
            "new sender (its protocol)")
    if "lookups" in plan.parts:
        lines.append(
            f"(b) {plan.nodes}-node swarms, each in its own process; per repetition fresh clients "
            f"join and look up {plan.lookups} swarm nodes each (two clients for kademlia's crawl)")
        lines.append(
            "(b) kademlia's lookup of a node ID is NodeSpiderCrawl: a find-closest crawl with no "
            "early stop; kadtalk's find_peer stops as soon as the target's entry is learned (0 "
            "RPCs when the client already holds it), so the find_peer rows compare against the "
            "same crawl and the find_closest rows are the like-for-like comparison")
        lines.append(
            "(b) success = target found (find_peer) or among the k closest returned; kademlia "
            "2.2.3's find_node answers leave out the node whose ID is the key "
            "(RoutingTable.find_neighbors skips neighbor.id == node.id), so its crawl never "
            "returns the target itself: 0 % by construction, not a network fault")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    check_kademlia()
    quiet_logging()
    from rich.console import Console

    console = Console(stderr=True)
    def say(text: str) -> None:
        console.print(f"[dim]{text}[/dim]", highlight=False, soft_wrap=True)

    for system in SYSTEMS:
        busy = busy_udp_ports(HOST, plan.ports(system))
        if busy:
            raise SystemExit(
                f"UDP ports in use on {HOST} ({system}'s range {plan.bases[system]}-"
                f"{plan.bases[system] + plan.span - 1}): {busy[:10]}"
                f"{' ...' if len(busy) > 10 else ''}; choose another --port-base")

    started = time.perf_counter()
    throughput = run_throughput(plan, say) if "throughput" in plan.parts else None
    lookups = run_lookups(plan, say) if "lookups" in plan.parts else None
    figures = build_figures(plan, throughput, lookups)
    wall = time.perf_counter() - started

    import kademlia

    print_table(
        f"UDP routing on {HOST}: kadtalk vs kademlia {kademlia.__version__} "
        f"(k = {K}, α = {ALPHA}){' — QUICK smoke run' if plan.quick else ''}",
        figures, "kadtalk", "kademlia", notes(plan) + [f"wall time {wall:.1f} s"],
    )
    emit_json(args.json, {
        "benchmark": "udp_routing",
        "baseline": f"kademlia {kademlia.__version__}",
        "ratio": "kadtalk/kademlia",
        "config": plan.describe(),
        "figures": figures_payload(figures),
        "details": {"throughput": throughput, "lookups": _lookup_details(lookups)},
        "wall_s": wall,
        "environment": environment(),
    })
    return 0


def _lookup_details(lookups: dict[str, Any] | None) -> dict[str, Any] | None:
    if lookups is None:
        return None
    return {key: value for key, value in lookups.items()}


if __name__ == "__main__":
    sys.exit(main())
