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
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import socket
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

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=1.0)


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
    swarm = await start_swarm(nodes, port_base, settings=SETTINGS)
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
    parser.add_argument("--seed", type=int, default=1)
    add_common_options(parser, default_repeat=3)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import busy_udp_ports

    args = build_parser().parse_args(argv)
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
