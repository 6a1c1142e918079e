"""A request flood on loopback: do honest lookups through the flooded node keep working?

A swarm of real UDP nodes runs in this process; one of them (the server) is the only contact of
each honest client, so every honest lookup starts with a request to it. Another process floods
the server from one UDP socket with bare 41-byte ROUTE_REQs (random origin IDs, so each would
be a new table entry) at `--rate` datagrams a second. Honest find-peer lookups for random swarm
members run one after another, first without the flood (the baseline), then during it.

Figures (ours = under flood, baseline = no flood; medians over `--repeat` repetitions):
success rate of honest lookups, their median and p90 latency, and, as context, what the server
did with the flood: datagrams received, answered, refused by the per-source limit.

    python -m benchmarks.flood                 # 20,000 datagrams/s, 5 s phases, 3 repetitions
    python -m benchmarks.flood --quick         # smoke run, a few seconds
    python -m benchmarks.flood --rate 50000 --json out.json

`--mode key-req` (root only: a raw socket) floods a callee instead with valid KEY_REQs (a few
identities, a fresh ephemeral key and timestamp each) from forged source addresses all over
127.0.0.0/8, hand-made IPv4 + UDP headers on an IPPROTO_RAW socket, while an honest caller on
127.0.0.1 calls it again and again (issue 17, attack 4). Figures: honest call set-up time (call
to IncomingCall at the callee) and success without and during the flood, cookie replies a second,
and the CPU the flooded process used (callee and caller share it; the flooder is apart):

    sudo python -m benchmarks.flood --mode key-req --rate 20000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
import struct
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/flood.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    HIGHER,
    LOWER,
    Figure,
    add_common_options,
    emit_json,
    environment,
    figures_payload,
    median,
    percentile,
    positive_int,
    print_table,
    resolve_repeat,
)
from kadtalk.node.routing.layer import RoutingSettings  # noqa: E402
from kadtalk.node.routing.messages import RouteRequest, encode_request  # noqa: E402
from kadtalk.transport.udp import udp_receive_buffer_drops  # noqa: E402

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=1.0)


def udp_over_ipv4(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP datagram for an IPPROTO_RAW socket (the kernel fills in the IP checksum and
    total length; a zero UDP checksum means none, RFC 768)."""
    length = 8 + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + struct.pack(">HHHH", src[1], dst[1], length, 0) + payload


def forged_source(i: int) -> tuple[str, int]:
    """The i-th forged source: distinct hosts over 127.1.0.0-127.254.255.255, never 127.0.0.x."""
    return f"127.{1 + (i >> 16) % 254}.{(i >> 8) & 255}.{i & 255}", 1024 + i % 60000


def make_key_reqs(callee_id: bytes, count: int, wall_ms: int, identities: int = 8) -> list[bytes]:
    """`count` valid KEY_REQs to `callee_id`: `identities` callers, each KEY_REQ with a fresh
    ephemeral key and its own timestamp (about 70 µs each to make)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from kadtalk.node.identity import Identity
    from kadtalk.node.session.handshake import ephemeral_spki, make_key_req

    senders = [Identity.generate() for _ in range(identities)]
    out = []
    for i in range(count):
        me = senders[i % identities]
        eph = ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
        out.append(make_key_req(me.sign, me.public_der, me.node_id, callee_id, eph, wall_ms + i))
    return out


def spoofed_flood(
    target: tuple[str, int], packets: list[bytes], rate: float, seconds: float,
    ready: Any = None, sent_total: Any = None,
) -> None:
    """The flooding process: `packets` in turn, each from the next forged 127/8 source, `rate` a
    second, through one raw socket (needs root / CAP_NET_RAW)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setblocking(False)
    start = time.perf_counter()
    sent = ok = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            data = udp_over_ipv4(forged_source(sent), target, packets[sent % len(packets)])
            try:
                sock.sendto(data, (target[0], 0))
                ok += 1
            except (BlockingIOError, OSError):
                pass  # the kernel's buffer is full: the flood is as fast as the host allows
            sent += 1
        if sent_total is not None:
            sent_total.value = ok  # datagrams the kernel took
        if ready is not None and sent >= rate / 10:
            ready.set()
            ready = None
        time.sleep(0.001)
    sock.close()


def can_spoof() -> bool:
    """Whether this process may open a raw socket (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except PermissionError:
        return False
    return True


class _Waiter:
    """A node's events; `wait(predicate)` resolves when one matches."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Any, asyncio.Future]] = []

    def __call__(self, event: Any) -> None:
        for item in list(self.waiting):
            if item[0](event) and not item[1].done():
                item[1].set_result(event)
                self.waiting.remove(item)

    async def wait(self, predicate: Any, timeout: float) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((predicate, future))
        return await asyncio.wait_for(future, timeout)


async def honest_calls(caller: Any, callee: Any, events: dict, count: int, seconds: float,
                       timeout: float = 16.0) -> list[tuple[bool, float]]:
    """Calls one after another from `caller` to `callee` (address known): at least `count` and
    for at least `seconds`; each (rang, seconds from call to the callee's IncomingCall)."""
    from kadtalk.node.session import CallEnded, IncomingCall

    results = []
    start = time.perf_counter()
    while len(results) < count or time.perf_counter() - start < seconds:
        started = time.perf_counter()
        incoming = asyncio.ensure_future(
            events["callee"].wait(lambda e: type(e) is IncomingCall, timeout))
        ended = asyncio.ensure_future(events["caller"].wait(lambda e: type(e) is CallEnded, 60))
        session = caller.call(callee.node.node_id, callee.address)
        try:
            await incoming
            results.append((True, time.perf_counter() - started))
        except asyncio.TimeoutError:
            results.append((False, time.perf_counter() - started))
        caller.hang_up(session)
        await ended
    return results


async def run_key_req_flood(
    count: int, rate: float, seed: int, seconds: float, distinct: int = 20_000,
) -> dict[str, Any]:
    """Honest calls to a callee without, then during, a spoofed KEY_REQ flood."""
    from kadtalk.transport.udp import start_node

    events = {"caller": _Waiter(), "callee": _Waiter()}
    callee = await start_node(host="127.0.0.1", on_event=events["callee"])
    caller = await start_node(host="127.0.0.1", on_event=events["caller"])
    try:
        callee_id = callee.node.node_id.to_bytes(20, "big")
        made = time.perf_counter()
        packets = make_key_reqs(callee_id, distinct, round(time.time() * 1000))
        made = time.perf_counter() - made
        baseline = await honest_calls(caller, callee, events, count, 0.0)
        before = callee.node.drop_counts()
        context = multiprocessing.get_context("spawn")
        ready, sent = context.Event(), context.Value("q", 0)
        flooder = context.Process(
            target=spoofed_flood,
            args=(callee.address, packets, rate, 3600.0, ready, sent), daemon=True,
        )
        flooder.start()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, ready.wait, 60.0):
            raise RuntimeError("the flooding process did not start")
        started, cpu = time.perf_counter(), time.process_time()
        sent_before, kernel_drops = sent.value, udp_receive_buffer_drops()
        flooded = await honest_calls(caller, callee, events, count, seconds)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        offered = sent.value - sent_before
        if kernel_drops is not None:
            kernel_drops = udp_receive_buffer_drops() - kernel_drops
        flooder.terminate()
        flooder.join()
        drops = callee.node.drop_counts() - before
        pending = callee.node.session.pending_handshakes if callee.node.session else 0
    finally:
        callee.close()
        caller.close()
    return {
        "baseline": baseline,
        "flooded": flooded,
        "seconds": elapsed,
        "offered_per_s": offered / elapsed,
        "cookie_replies_per_s": drops.get("cookie_sent", 0) / elapsed,
        "cpu_share": cpu / elapsed,
        "kernel_drops_per_s": None if kernel_drops is None else kernel_drops / elapsed,
        "drops": dict(drops),
        "pending_handshakes": pending,  # begun, not yet ended (drops count the ended ones)
        "make_key_reqs_s": made,
    }


def key_req_main(args: argparse.Namespace) -> int:
    repeat = resolve_repeat(args, quick_repeat=1)
    count = 3 if args.quick and args.lookups == 60 else min(args.lookups, 10)
    seconds = 1.0 if args.quick and args.seconds == 5.0 else args.seconds
    distinct = 2000 if args.quick else 20_000
    runs = [asyncio.run(run_key_req_flood(count, args.rate, args.seed + r, seconds, distinct))
            for r in range(repeat)]

    def setup(r: dict, phase: str, q: float) -> float:
        return percentile([t * 1000 for ok, t in r[phase] if ok], q)

    def success(r: dict, phase: str) -> float:
        return sum(ok for ok, _ in r[phase]) / len(r[phase])

    figures = [
        Figure("honest calls that ring", median(success(r, "flooded") for r in runs),
               median(success(r, "baseline") for r in runs), better=HIGHER, digits=2),
        Figure("median call set-up", median(setup(r, "flooded", 50) for r in runs),
               median(setup(r, "baseline", 50) for r in runs), unit=" ms", better=LOWER),
        Figure("worst call set-up", median(setup(r, "flooded", 100) for r in runs),
               median(setup(r, "baseline", 100) for r in runs), unit=" ms", better=LOWER),
        Figure("honest calls per phase", median(len(r["flooded"]) for r in runs),
               median(len(r["baseline"]) for r in runs), digits=0),
        Figure("flood offered", median(r["offered_per_s"] for r in runs), 0,
               unit=" /s", digits=0, note="valid KEY_REQs from forged 127/8 sources"),
        Figure("cookie replies", median(r["cookie_replies_per_s"] for r in runs), 0,
               unit=" /s", digits=0, note="datagrams the kernel did not drop first"),
        Figure("dropped by the kernel", median(r["kernel_drops_per_s"] or 0 for r in runs), 0,
               unit=" /s", digits=0, note="receive buffer full, all UDP sockets (RcvbufErrors)"),
        Figure("CPU of the flooded process", median(r["cpu_share"] * 100 for r in runs), 0,
               unit=" %", digits=0, note="callee + caller, one core = 100 %"),
    ]
    print_table(
        f"Spoofed KEY_REQ flood on loopback: {args.rate:,.0f}/s offered, honest calls to the "
        f"flooded node ({repeat} repetition{'s' if repeat > 1 else ''})",
        figures, "under flood", "no flood",
    )
    emit_json(args.json, {
        "benchmark": "flood-key-req",
        "config": {"calls": count, "rate": args.rate, "seconds": seconds, "repeat": repeat,
                   "distinct_key_reqs": distinct, "seed": args.seed},
        "figures": figures_payload(figures),
        "runs": [{k: v for k, v in r.items() if k not in ("baseline", "flooded")}
                 | {"baseline": r["baseline"], "flooded": r["flooded"]} for r in runs],
        "environment": environment(),
    })
    return 0 if all(ok for r in runs for ok, _ in r["flooded"]) else 1


def flood(
    target: tuple[str, int], rate: float, seconds: float, seed: int, ready: Any = None
) -> None:
    """The flooding process: bare requests with random origins, `rate` a second, from one socket."""
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    packets = [
        encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 0)
        for _ in range(1024)
    ]
    start = time.perf_counter()
    sent = 0
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            try:
                sock.sendto(packets[sent % 1024], target)
            except (BlockingIOError, OSError):
                pass  # the kernel's buffer is full: the flood is as fast as the host allows
            sent += 1
        if ready is not None and sent >= rate / 10:
            ready.set()  # a tenth of a second of flood is on its way
            ready = None
        time.sleep(0.001)
    sock.close()


async def lookups(
    swarm: list[Any], server: Any, count: int, rng: random.Random, seconds: float
) -> list[tuple[bool, float]]:
    """Find-peer lookups one after another, each from a fresh client whose only contact is the
    server: at least `count`, and for at least `seconds`."""
    from kadtalk.transport.udp import start_node

    results = []
    start = time.perf_counter()
    while len(results) < count or time.perf_counter() - start < seconds:
        member = swarm[rng.randrange(1, len(swarm))]
        client = await start_node(host="127.0.0.1", settings=SETTINGS)
        try:
            client.node.add_contact(server.node.node_id, server.address, client.loop.time())
            started = time.perf_counter()
            result = await client.find_peer(member.node.node_id)
            ok = result.peer is not None and result.peer[1] == member.address
            results.append((ok, (time.perf_counter() - started) * 1000.0))
        finally:
            client.close()
    return results


async def run_once(
    nodes: int, count: int, rate: float, seed: int, port_base: int, seconds: float
) -> dict[str, Any]:
    from kadtalk.transport.udp import start_swarm

    rng = random.Random(seed)
    # the kernel's socket buffers, as a `kadtalk node` has: a swarm's larger ones would queue
    # more of the flood ahead of honest requests
    swarm = await start_swarm(nodes, port_base, settings=SETTINGS, buffer=None)
    server = swarm[0]
    try:
        baseline = await lookups(swarm, server, count, rng, seconds)
        before = server.node.drop_counts()
        answered_before = server.node.routing.limited_answers
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        flooder = context.Process(
            target=flood, args=(server.address, rate, 3600.0, seed, ready), daemon=True
        )
        flooder.start()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, ready.wait, 30.0):
            raise RuntimeError("the flooding process did not start")
        started = time.perf_counter()
        flooded = await lookups(swarm, server, count, rng, seconds)
        seconds = time.perf_counter() - started
        flooder.terminate()
        flooder.join()
        drops = server.node.drop_counts() - before
    finally:
        for d in swarm:
            d.close()
    return {
        "baseline": baseline,
        "flooded": flooded,
        "seconds": seconds,
        "refused_source": drops.get("rate_limited_source", 0),
        "refused_global": drops.get("rate_limited", 0),
        "limited_answers": server.node.routing.limited_answers - answered_before,
    }


def summarize(results: list[tuple[bool, float]]) -> dict[str, float]:
    ok = [ms for good, ms in results if good]
    return {
        "success": len(ok) / len(results) if results else float("nan"),
        "median_ms": median(ok),
        "p90_ms": percentile(ok, 90),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=positive_int, default=24, help="swarm size (default 24)")
    parser.add_argument(
        "--lookups",
        type=positive_int,
        default=60,
        help="honest lookups per phase (default 60; 15 with --quick)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="each phase lasts at least this long (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--rate", type=float, default=20_000.0, help="flood datagrams per second (default 20,000)"
    )
    parser.add_argument("--port-base", type=int, default=41000)
    parser.add_argument(
        "--mode", choices=("lookups", "key-req"), default="lookups",
        help="lookups: ROUTE_REQ flood, honest lookups (default); key-req: spoofed KEY_REQ flood "
        "from forged 127/8 sources (root), honest calls (--lookups = calls per phase, at most 10)",
    )
    parser.add_argument("--seed", type=int, default=1)
    add_common_options(parser, default_repeat=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import busy_udp_ports

    args = build_parser().parse_args(argv)
    if args.mode == "key-req":
        if not can_spoof():
            print("--mode key-req needs a raw socket: run as root (or with CAP_NET_RAW)",
                  file=sys.stderr)
            return 2
        return key_req_main(args)
    repeat = resolve_repeat(args, quick_repeat=1)
    count = 15 if args.quick and args.lookups == 60 else args.lookups
    nodes = min(args.nodes, 12) if args.quick else args.nodes
    base = args.port_base
    while busy_udp_ports("127.0.0.1", range(base, base + nodes)):
        base += nodes + 7
    seconds = 1.0 if args.quick and args.seconds == 5.0 else args.seconds
    runs = [
        asyncio.run(run_once(nodes, count, args.rate, args.seed + r, base, seconds))
        for r in range(repeat)
    ]
    ours = [summarize(r["flooded"]) for r in runs]
    theirs = [summarize(r["baseline"]) for r in runs]
    flood_s = median(r["seconds"] for r in runs)
    figures = [
        Figure(
            "honest lookups that succeed",
            median(o["success"] for o in ours),
            median(t["success"] for t in theirs),
            better=HIGHER,
            digits=2,
        ),
        Figure(
            "median latency",
            median(o["median_ms"] for o in ours),
            median(t["median_ms"] for t in theirs),
            unit=" ms",
            better=LOWER,
        ),
        Figure(
            "p90 latency",
            median(o["p90_ms"] for o in ours),
            median(t["p90_ms"] for t in theirs),
            unit=" ms",
            better=LOWER,
        ),
        Figure(
            "honest lookups per phase",
            median(len(r["flooded"]) for r in runs),
            median(len(r["baseline"]) for r in runs),
            digits=0,
        ),
        Figure(
            "flood requests refused (per-source limit)",
            median(r["refused_source"] for r in runs),
            0,
            note=f"in {flood_s:.1f} s at {args.rate:,.0f}/s offered",
            digits=0,
        ),
    ]
    print_table(
        f"Flood on loopback: {nodes} nodes, {count} honest lookups per phase through the "
        f"flooded node ({repeat} repetition{'s' if repeat > 1 else ''})",
        figures,
        "under flood",
        "no flood",
    )
    emit_json(
        args.json,
        {
            "benchmark": "flood",
            "config": {
                "nodes": nodes,
                "lookups": count,
                "rate": args.rate,
                "repeat": repeat,
                "seed": args.seed,
            },
            "figures": figures_payload(figures),
            "runs": [
                {k: v for k, v in r.items() if k not in ("baseline", "flooded")}
                | {"baseline": summarize(r["baseline"]), "flooded": summarize(r["flooded"])}
                for r in runs
            ],
            "environment": environment(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
