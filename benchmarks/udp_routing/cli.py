"""main(): parse the options, check the systems and the ports, run the parts, report."""

from __future__ import annotations

import os
import time

from benchmarks.common import busy_udp_ports
from benchmarks.sim_scale import heapq_events_per_s
from benchmarks.udp_routing.config import HOST, SYSTEMS, build_parser, make_plan
from benchmarks.udp_routing.lookups import run_lookups
from benchmarks.udp_routing.processes import quiet_logging
from benchmarks.udp_routing.report import report
from benchmarks.udp_routing.system import adapter
from benchmarks.udp_routing.throughput import run_throughput

HEAPQ_EVENTS = 500_000  # the machine's speed, as benchmarks.sim_scale measures it


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    for system in SYSTEMS:
        adapter(system).check()
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

    machine = {"load_before": os.getloadavg(),
               "heapq_events_per_s": heapq_events_per_s(HEAPQ_EVENTS, 2000, plan.seed)}
    started = time.perf_counter()
    throughput = run_throughput(plan, say) if "throughput" in plan.parts else None
    lookups = run_lookups(plan, say) if "lookups" in plan.parts else None
    wall = time.perf_counter() - started
    machine["load_after"] = os.getloadavg()
    report(plan, throughput, lookups, wall, args.json, machine)
    return 0

