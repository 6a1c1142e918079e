"""The simulator against reality: one find-peer lookup workload on real UDP nodes in network
namespaces (kadtalk.experiments.testbed) and in the simulator configured with the delays
measured on that testbed (kadtalk.experiments.testbed_study).

Testbed: `--hosts` namespaces behind a core router whose NFQUEUE relay delays every datagram by
the simulator's coordinate model (median RTT ~100 ms between random hosts); one worker process
per namespace runs its share of `--nodes` real UDP nodes (the study's node IDs, k, α). The
simulator runs the same LookupStudy (same seed: same IDs, same lookup pairs and start times) with
a SiteMatrixLatency of the measured one-way delays (~0 inside a namespace).

Figures: simulator and testbed side by side, ratio sim/testbed (1.0 is perfect agreement), and
the two-sample Kolmogorov–Smirnov distance. Each repetition is a fresh testbed and simulation
with seed + i; figures are medians over repetitions. Needs root (network namespaces, iptables)
and the NetfilterQueue package.

    python -m benchmarks.sim_vs_testbed                  # 256 nodes on 8 hosts, ~3 min
    python -m benchmarks.sim_vs_testbed --quick          # 64 nodes on 4 hosts, k = 8, ~20 s
    python -m benchmarks.sim_vs_testbed --json out.json --figure docs/figures/sim_vs_testbed.png
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/sim_vs_testbed.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    Figure,
    add_common_options,
    emit_json,
    environment,
    figures_payload,
    median,
    positive_int,
    print_table,
    resolve_repeat,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sim_vs_testbed",
        description="Lookup latency, RPCs and hops of real UDP nodes on a namespace testbed "
        "against the simulator configured with the testbed's measured delays (root only).",
    )
    add_common_options(parser, default_repeat=1)
    parser.add_argument("--hosts", type=positive_int, default=8, help="namespaces (default 8)")
    parser.add_argument("--nodes", type=positive_int, default=256, help="real nodes (default 256)")
    parser.add_argument("--lookups", type=positive_int, default=400, help="lookups (default 400)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--delay-seed", type=int, default=1, help="placement of the hosts")
    parser.add_argument("--k", type=positive_int, default=None, help="bucket size (default 20; 8 with --quick)")
    parser.add_argument("--alpha", type=positive_int, default=3)
    parser.add_argument("--loss", type=float, default=0.0, help="loss in the core (default 0)")
    parser.add_argument("--figure", type=Path, metavar="PNG", help="CDF plot of the first repetition")
    return parser


def configs(args: argparse.Namespace) -> list[Any]:
    from kadtalk.experiments.testbed.cli import quick_config
    from kadtalk.experiments.testbed_study import Comparison

    out = []
    for i in range(resolve_repeat(args, quick_repeat=1)):
        fields = dict(seed=args.seed + i, delay_seed=args.delay_seed, k=args.k, alpha=args.alpha,
                      loss=args.loss)
        if args.quick:
            out.append(quick_config(**fields))
        else:
            fields["k"] = args.k or 20
            out.append(Comparison(hosts=args.hosts, nodes=args.nodes, lookups=args.lookups, **fields))
    return out


def figures_from(results: list[dict[str, Any]]) -> list[Figure]:
    def fig(name: str, metric: str, stat: str, unit: str = "", digits: int = 1) -> Figure:
        sims = [r["figures"][metric][f"{stat}_sim"] for r in results]
        beds = [r["figures"][metric][f"{stat}_testbed"] for r in results]
        ks = [r["figures"][metric]["ks"] for r in results]
        return Figure(name, median(sims), median(beds), unit, None,
                      note=f"KS {median(ks):.3f}" if stat == "median" else "", digits=digits,
                      samples={"sim": sims, "testbed": beds, "ks": ks})

    figures = [
        fig("lookup latency, answered across hosts: median", "cross_host_latency_ms", "median", "ms"),
        fig("lookup latency, answered across hosts: p90", "cross_host_latency_ms", "p90", "ms"),
        fig("lookup latency, lookups with requests: median", "network_latency_ms", "median", "ms"),
        fig("lookup latency, lookups with requests: p90", "network_latency_ms", "p90", "ms"),
        fig("lookup latency, all: mean", "latency_ms", "mean", "ms"),
        fig("RPCs per lookup: mean", "rpcs", "mean", "", 2),
        fig("RPCs per lookup: median", "rpcs", "median", "", 1),
        fig("hops: mean", "hops", "mean", "", 2),
    ]
    for key, name in (("local_share", "answered from own table"), ("success", "success rate"),
                      ("timeouts_mean", "timeouts per lookup")):
        sims = [r["figures"][f"{key}_sim"] for r in results]
        beds = [r["figures"][f"{key}_testbed"] for r in results]
        figures.append(Figure(name, median(sims), median(beds), "", None, digits=3,
                              samples={"sim": sims, "testbed": beds}))
    return figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kadtalk.experiments.testbed import netfilterqueue_reason, unavailable_reason
    from kadtalk.experiments.testbed_study import run_comparison

    reason = unavailable_reason() or netfilterqueue_reason()
    if reason:
        print(f"sim_vs_testbed: cannot run here: {reason}", file=sys.stderr)
        return 2
    results = []
    for i, config in enumerate(configs(args)):
        results.append(run_comparison(config, args.figure if i == 0 else None))
    figures = figures_from(results)
    first = results[0]
    notes = [
        f"{first['config']['nodes']} nodes on {first['config']['hosts']} hosts, k = {first['config']['k']}, "
        f"α = {args.alpha}, loss {args.loss:g}, {len(results)} repetition(s); ratio = simulator / "
        "testbed (1.00 = agreement); KS = two-sample Kolmogorov–Smirnov distance "
        f"(5% critical value {first['figures']['cross_host_latency_ms']['ks_critical_5pct']:.3f} "
        "across hosts); 'answered across hosts' = latency at least the smallest one-way delay between "
        "two hosts (answers from a node on the source's own host take ~0.02 ms simulated, ~0.5 ms real)",
        f"testbed: joined in {first['testbed']['join_s']} s, {first['testbed']['wall_s']} s in all; "
        f"simulator {first['sim']['wall_s']} s; intra-host one-way delay {first['delays_ms']['intra']} ms",
    ]
    if args.figure:
        notes.append(f"wrote {args.figure}")
    print_table("simulator vs testbed: find-peer lookups", figures, "simulator", "testbed", notes)
    emit_json(args.json, {
        "benchmark": "sim_vs_testbed",
        "figures": figures_payload(figures),
        "comparisons": [{k: v for k, v in r.items() if k != "rows"} for r in results],
        "environment": environment(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
