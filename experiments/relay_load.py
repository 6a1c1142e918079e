"""Relay load at scale (issue 13): one call study with relays, talking calls and IPv6 hosts.

`kadtalk sim calls --relays --out DIR` gives the relays' load for IPv4 worlds; this runs the
same study (experiments/calls.py) with what that command does not expose: relayed calls that
carry media for a while (`--talk`, `CallStudy.relayed_talk`: bytes per relay, its busiest
second, drops over its caps) and hosts with IPv6 (`--v6-only`, `--dual-stack`, `--firewall`;
protocol joins and the byte codec, as such worlds need). It writes the files `sim calls
--out` writes (calls.csv, relays.csv, params.json: `python -m kadtalk.experiments.reach load
DIR` draws them) and logs each progress step with the process's CPU time (progress.log), so
a run stopped before its end still says how fast it went; `--heartbeat S` also logs, every S
wall-clock seconds, the simulated time, CPU and peak RSS (the settling has no progress steps).
The heartbeat only reads: the run's results are the same with it or without.

    python -m kadtalk.experiments.relay_load --nodes 100000 --calls 2000 --talk 60 --out DIR
    python -m kadtalk.experiments.relay_load --nodes 10000 --v6-only 0.1 --dual-stack 0.4 \\
        --bootstrap protocol --talk 60 --out DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import threading
import time
from pathlib import Path
from typing import Sequence

from kadtalk.experiments.calls import (
    FAMILY_FIELDS, PER_RELAY_FIELDS, RELAY_FIELDS, ROW_FIELDS, TALK_RELAY_FIELDS, CallStudy,
    _CallStudyRun, study_parameters)


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def study_from(args: argparse.Namespace) -> CallStudy:
    families = args.v6_only > 0 or args.dual_stack > 0
    return CallStudy(
        nodes=args.nodes, calls=args.calls, seed=args.seed, call_rate=args.call_rate,
        settle=args.settle, relays=True, relayed_talk=args.talk,
        bootstrap=args.bootstrap or ("protocol" if families else "fast"),
        wire="bytes" if families else "auto", nat_full_cone=args.full_cone,
        nat_filtering=args.filtering, nat_symmetric=args.symmetric, v6_only=args.v6_only,
        dual_stack=args.dual_stack, v6_firewall=args.firewall)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kadtalk.experiments.relay_load",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--call-rate", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=120.0)
    p.add_argument("--full-cone", type=float, default=0.2)
    p.add_argument("--filtering", type=float, default=0.1)
    p.add_argument("--symmetric", type=float, default=0.3)
    p.add_argument("--v6-only", type=float, default=0.0)
    p.add_argument("--dual-stack", type=float, default=0.0)
    p.add_argument("--firewall", type=float, default=1.0)
    p.add_argument("--talk", type=float, default=0.0,
                   help="s a relayed call carries media both ways (0: hang up at the first packet)")
    p.add_argument("--bootstrap", choices=["fast", "protocol"],
                   help="default fast, protocol with IPv6 hosts (which need it)")
    p.add_argument("--heartbeat", type=float, default=0.0,
                   help="log simulated time, CPU and RSS every S wall-clock seconds (0: off)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    study = study_from(args)
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "progress.log", "w", buffering=1)
    started, last = time.perf_counter(), [None, -1]

    def progress(phase: str, done: int, total: int) -> None:
        step = 100 * done // max(total, 1)
        if [phase, step] != last:  # one line a percent of each phase
            last[:] = [phase, step]
            log.write(f"{phase} {done}/{total} cpu_s={cpu_s():.1f} "
                      f"wall_s={time.perf_counter() - started:.1f}\n")

    run = _CallStudyRun(study, progress)
    stop = threading.Event()
    if args.heartbeat > 0:
        env = run.world.env

        def beat() -> None:
            while not stop.wait(args.heartbeat):
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                log.write(f"heartbeat sim_s={env.now:.1f} cpu_s={cpu_s():.1f} "
                          f"peak_rss_mb={rss:.0f} wall_s={time.perf_counter() - started:.1f}\n")

        beating = threading.Thread(target=beat, daemon=True)
        beating.start()
    try:
        result = run.run()
    finally:
        stop.set()
        if args.heartbeat > 0:
            beating.join()  # its last line before the results
    summary = result.summary | {"cpu_s": round(cpu_s(), 1)}
    fields = ROW_FIELDS + RELAY_FIELDS + (FAMILY_FIELDS if study.families else ())
    with open(args.out / "calls.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(result.rows)
    with open(args.out / "relays.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PER_RELAY_FIELDS + (
            TALK_RELAY_FIELDS if study.relayed_talk else ()))
        writer.writeheader()
        writer.writerows(result.relays)
    (args.out / "params.json").write_text(json.dumps(
        {"study": study_parameters(study), "summary": summary,
         "environment": result.environment}, indent=2) + "\n")
    log.write("done\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
