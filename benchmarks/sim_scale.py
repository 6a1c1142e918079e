"""How far the simulator scales: converged networks of 10^4 .. 10^7 real nodes, then lookups.

For each N, in a fresh child process (so peak memory is that N's alone): the network converges by
the fast bootstrap (sim/bootstrap.py), then `--lookups` find-peer lookups run at Poisson times.
Above 10^5 nodes they are built on first use (sim/lazy.py): a node untouched by the lookups
stays a row of the bootstrap's arrays. Reported per N (medians over --repeat runs):

- build time (IDs, latency model, tables' draws, driver) and peak resident memory;
- bytes per node: resident memory of the converged network (measured when the first lookup
  ends) less the process's memory before the build, divided by N;
- nodes built: how many the lookups reached (the others stayed rows; all of them up to 10^5);
- wall time per lookup and per request/response pair during the lookup phase, and the CPU
  seconds of the build, the lookup phase and the whole run (the machine is shared: CPU time
  is what a busy neighbour does not inflate);
- SimPy events per CPU second in the lookup phase, and the ratio to a bare heapq event loop run
  in the same child right after, also in CPU time: it pops the earliest event and pushes a
  successor with a random delay, as many times as the simulation processed events, over a heap
  holding as many pending entries as SimPy's queue did when lookups began. The ratio says how
  much of an event's cost is the node code and SimPy rather than the event queue itself;
- the load average when the run ended.

    python -m benchmarks.sim_scale                         # 10^4, 10^5, 10^6; a few minutes
    python -m benchmarks.sim_scale --sizes 10000 100000 --repeat 3 --json sim_scale.json
    python -m benchmarks.sim_scale --quick                 # smoke run, a few seconds
    python -m benchmarks.sim_scale --huge                  # 10^7 too (opt-in: ~8 GB, minutes)
    python -m benchmarks.sim_scale --join 2000            # the join phase alone (below)

A child is stopped (and the run fails) when the machine's available memory falls below
`--min-free-gib` (3 GiB by default): a 10^7 network shares the machine with others.

`--join N` measures the other phase instead, in this process: N nodes joining by the protocol
(the lookup study's default world, seed --seed, wire form as `kadtalk sim lookup` picks it),
up to the moment lookups would start. It prints the datagrams, SimPy events, CPU seconds and
µs per datagram of that phase, and the same heapq ratio, both rates in CPU time (docs/simulation.md "Where a join
phase's time goes").
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from random import Random
from typing import Any

from benchmarks.common import (
    add_common_options,
    emit_json,
    environment,
    format_ratio,
    format_value,
    median,
    resolve_repeat,
)

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
HUGE = 10_000_000
QUICK_SIZES = (2_000, 10_000)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sim_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N",
                        help=f"network sizes (default {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--lookups", type=int, default=10_000,
                        help="find-peer lookups per run (default 10,000; 500 with --quick)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--huge", action="store_true",
                        help=f"add {HUGE:,} nodes to the sizes (opt-in: ~8 GB, tens of minutes)")
    parser.add_argument("--min-free-gib", type=float, default=3.0, metavar="GIB",
                        help="stop a child when the machine's available memory falls below this")
    parser.add_argument("--join", type=int, metavar="N",
                        help="measure N nodes joining by the protocol instead (one run, no table)")
    parser.add_argument("--wire", choices=("auto", "bytes", "objects"), default="auto",
                        help="with --join: the driver's wire form (auto: bytes up to 2,000 nodes)")
    parser.add_argument("--child", type=int, metavar="N", help=argparse.SUPPRESS)
    add_common_options(parser, default_repeat=1)
    return parser


# -- one run, in a child process ---------------------------------------------------------------


def rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def heapq_events_per_s(events: int, pending: int, seed: int, clock: Any = time.perf_counter) -> float:
    """A bare event loop: pop the earliest event, push one successor; `pending` far entries.
    Timed by `clock` (CPU time, `time.process_time`, for a ratio on a shared machine)."""
    rng = Random(seed)
    heap: list[tuple[float, int]] = [(1e9 + i, i) for i in range(pending)]
    for i in range(64):  # a few dozen events in flight, like lookups' datagrams
        heap.append((rng.random() * 0.1, pending + i))
    heapq.heapify(heap)
    push, pop, random = heapq.heappush, heapq.heappop, rng.random
    seq = pending + 64
    started = clock()
    for _ in range(events):
        when, _ = pop(heap)
        seq += 1
        push(heap, (when + random() * 0.1, seq))
    return events / (clock() - started)


def child(nodes: int, lookups: int, seed: int) -> dict[str, Any]:
    import kadtalk.experiments.lookup as lookup_module
    from kadtalk.experiments.lookup import LookupStudy, run_lookup_study

    before = rss_bytes()
    cpu_start = time.process_time()
    converged: dict[str, float] = {}
    worlds: list[Any] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "lookups" and "rss" not in converged:
            converged["rss"] = rss_bytes()
            converged["cpu"] = time.process_time()

    class World(lookup_module.SimWorld):  # the study's world, kept to count the nodes built
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            worlds.append(self)

    plain, lookup_module.SimWorld = lookup_module.SimWorld, World
    try:
        study = LookupStudy(nodes=nodes, lookups=lookups, seed=seed, bootstrap="fast")
        summary = run_lookup_study(study, progress).summary
    finally:
        lookup_module.SimWorld = plain
    cpu_end = time.process_time()
    built_cpu = converged.get("cpu", cpu_end)
    driver_nodes = worlds[0].driver.nodes if worlds else []
    built = nodes - getattr(driver_nodes, "dormant", 0)
    rpcs = summary["rpcs_mean"] * summary["lookups"]
    events = summary["sim_events"]
    # the first lookup's progress comes when it ends: the lookup phase's CPU from there on is
    # a hair short, its events all counted; wall time as the study measured it
    lookup_cpu = cpu_end - built_cpu
    sim_rate = events / lookup_cpu
    heap_rate = heapq_events_per_s(events, summary["sim_queue"], seed, time.process_time)
    return {
        "nodes": nodes,
        "lookups": summary["lookups"],
        "success_rate": summary["success_rate"],
        "median_ms": summary["median_ms"],
        "hops_mean": summary["hops_mean"],
        "build_s": summary["build_s"],
        "peak_rss_mb": summary["peak_rss_mb"],
        "bytes_per_node": (converged.get("rss", before) - before) / nodes,
        "ms_per_lookup": summary["lookup_s"] * 1000 / summary["lookups"],
        "us_per_rpc": summary["lookup_s"] * 1e6 / rpcs if rpcs else float("nan"),
        "nodes_built": built,
        "events": events,
        "events_per_s": sim_rate,
        "heapq_events_per_s": heap_rate,
        "ratio_to_heapq": sim_rate / heap_rate,
        "build_cpu_s": built_cpu - cpu_start,
        "lookup_cpu_s": lookup_cpu,
        "cpu_s": cpu_end - cpu_start,
        "wall_s": summary["wall_s"],
        "load": os.getloadavg()[0],
    }


def join_phase(nodes: int, seed: int, wire: str = "auto") -> dict[str, Any]:
    """The protocol join of `nodes` (the lookup study's world and schedule), timed in CPU."""
    from kadtalk.experiments.harness.world import SimWorld
    from kadtalk.experiments.lookup import LookupStudy

    study = LookupStudy(nodes=nodes, lookups=0, seed=seed, wire=wire)
    world = SimWorld(study)
    start = world.converge()
    env = world.env
    cpu = time.process_time()
    env.run(until=start)
    cpu = time.process_time() - cpu
    events, datagrams = env.processed, world.network.sent
    sim_rate = events / cpu
    heap_rate = heapq_events_per_s(events, env.pending, seed, time.process_time)
    return {
        "nodes": nodes,
        "wire": study.wire_mode,
        "datagrams": datagrams,
        "events": events,
        "cpu_s": round(cpu, 2),
        "us_per_datagram": round(cpu * 1e6 / datagrams, 2),
        "events_per_s": round(sim_rate),
        "heapq_events_per_s": round(heap_rate),
        "ratio_to_heapq": round(sim_rate / heap_rate, 4),
    }


def run_child(nodes: int, lookups: int, seed: int, min_free_gib: float = 3.0) -> dict[str, Any]:
    """One run in a child process, stopped if the machine's available memory falls below
    `min_free_gib`; the child's peak RSS as the kernel counted it (ru_maxrss) is added."""
    import psutil

    command = [sys.executable, "-m", "benchmarks.sim_scale", "--child", str(nodes),
               "--lookups", str(lookups), "--seed", str(seed)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True,
                                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        lowest = math.inf
        while True:
            try:
                _, status, usage = os.wait4(process.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if _:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            free = psutil.virtual_memory().available / 2**30
            lowest = min(lowest, free)
            if free < min_free_gib:
                process.kill()
                process.wait()
                raise SystemExit(f"the run of {nodes} nodes was stopped: {free:.1f} GiB free "
                                 f"(--min-free-gib {min_free_gib})")
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"the run of {nodes} nodes failed:\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["max_rss_mb"] = usage.ru_maxrss / 1024  # kB on Linux
    result["lowest_free_gib"] = lowest
    return result


# -- the table ---------------------------------------------------------------------------------

COLUMNS = (
    ("build_s", "build s", 1, ""),
    ("max_rss_mb", "peak MB", 0, ""),
    ("bytes_per_node", "bytes/node", 0, ""),
    ("nodes_built", "nodes built", 0, ""),
    ("ms_per_lookup", "ms/lookup", 2, ""),
    ("us_per_rpc", "µs/RPC pair", 1, ""),
    ("events_per_s", "events/CPU s", 0, ""),
    ("heapq_events_per_s", "heapq events/CPU s", 0, ""),
    ("ratio_to_heapq", "sim/heapq", 3, "ratio"),
    ("median_ms", "lookup median ms", 1, ""),
    ("hops_mean", "hops", 2, ""),
    ("build_cpu_s", "build CPU s", 1, ""),
    ("lookup_cpu_s", "lookups CPU s", 1, ""),
    ("cpu_s", "CPU s", 1, ""),
    ("wall_s", "wall s", 1, ""),
    ("load", "load", 1, ""),
)


def print_results(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("N", justify="right")
    for _, header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    for row in rows:
        cells = []
        for key, _, digits, kind in COLUMNS:
            value = row[key]
            cells.append(format_ratio(value) if kind == "ratio" else format_value(value, digits))
        table.add_row(f"{row['nodes']:,}", *cells)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.lookups, args.seed)))
        return 0
    if args.join:
        result = join_phase(args.join, args.seed, args.wire)
        print(json.dumps(result))
        emit_json(args.json, {"benchmark": "sim_scale_join", "results": [result],
                              "environment": environment()})
        return 0
    repeat = resolve_repeat(args, quick_repeat=1)
    sizes = list(args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES))
    if args.huge and HUGE not in sizes:
        sizes.append(HUGE)
    lookups = 500 if args.quick and args.lookups == 10_000 else args.lookups
    from rich.progress import Progress

    results: list[dict[str, Any]] = []
    runs: dict[int, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task("simulating", total=len(sizes) * repeat)
        for nodes in sizes:
            runs[nodes] = []
            for r in range(repeat):
                runs[nodes].append(run_child(nodes, lookups, args.seed + r, args.min_free_gib))
                bar.advance(task)
            merged = {key: median(run[key] for run in runs[nodes]) for key, *_ in COLUMNS}
            results.append({"nodes": nodes, "lookups": lookups} | merged)
    wall = time.perf_counter() - started
    print_results(results, f"Simulator scale: fast bootstrap, then {lookups:,} find-peer lookups "
                  f"(medians of {repeat} run{'s' if repeat > 1 else ''}; wall {wall:.0f} s)")
    emit_json(args.json, {
        "benchmark": "sim_scale",
        "baseline": "bare heapq event loop, same events and queue size, same child process",
        "config": {"sizes": list(sizes), "lookups": lookups, "repeat": repeat, "seed": args.seed},
        "results": results,
        "runs": {str(n): rs for n, rs in runs.items()},
        "wall_s": wall,
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
