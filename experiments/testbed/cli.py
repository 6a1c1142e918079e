"""`kadtalk testbed ...`: build a namespace testbed and run a command in it, or run the
simulator-vs-testbed comparison (experiments/testbed_study.py). Needs root (docs/testbed.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import pairs
from .delays import CoordinateDelays
from .tools import TestbedError, cleanup_stale
from .topology import Testbed

EPILOG = """examples (as root):
  kadtalk testbed run --public 2 --nat filtering --nat full-cone --delay 25 -- ip netns list
  kadtalk testbed run --public 2 --delay coordinate:1 --on pub1 -- \\
      python -m kadtalk.experiments.testbed probe --to 198.18.2.2:7   # (an echo must run there)
  kadtalk testbed run --public 3 --loss 0.1 -- sh -c 'cat "$KADTALK_TESTBED"'
  kadtalk testbed compare --quick
  kadtalk testbed compare --hosts 8 --nodes 256 --lookups 400 --out results/sim_vs_testbed
  kadtalk testbed pairs --out results/testbed_pairs    # the who-can-call-whom table
  kadtalk testbed cleanup

Hosts: public hosts pub1..pubN get 198.18.<site>.2; NAT I is natI (its outside address
198.18.<site>.2) with hosts natIh1.. behind it (192.168.<j>.2). Without --on, the command runs
in this machine's namespace with $KADTALK_TESTBED naming a JSON file that describes the testbed
(namespaces, addresses, delays), so a script can `ip netns exec` into the hosts.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options describing a testbed (`kadtalk testbed run`)."""
    parser.add_argument("--public", type=int, default=2, metavar="N",
                        help="public hosts pub1..pubN (default 2)")
    parser.add_argument("--nat", action="append", default=[], metavar="KIND[:HOSTS]",
                        help="a NAT of KIND filtering|full-cone|symmetric with HOSTS private hosts behind it "
                        "(default 1), named natI and natIhJ; repeatable. Behind a full-cone NAT, "
                        "host J of H is forwarded the J-th of H equal slices of ports 1024-65535")
    parser.add_argument("--delay", default="0", metavar="MS|coordinate[:SEED]",
                        help="one-way delay between sites: a constant in ms, or the simulator's "
                        "coordinate model (median RTT ~100 ms) placed with SEED (default 0: none)")
    parser.add_argument("--loss", type=float, default=0.0, metavar="P",
                        help="probability that a datagram crossing the core is dropped (default 0)")


def from_arguments(args: argparse.Namespace) -> Testbed:
    """The testbed `add_arguments` describes: pub1..pubN, natI with hosts natIh1..."""
    if args.delay.startswith("coordinate"):
        _, _, seed = args.delay.partition(":")
        delay: Any = CoordinateDelays(int(seed or 1))
    else:
        delay = float(args.delay) / 1000.0
    tb = Testbed(delay=delay, loss=args.loss)
    for i in range(1, args.public + 1):
        tb.public(f"pub{i}")
    for i, spec in enumerate(args.nat, 1):
        kind, _, count_text = spec.partition(":")
        tb.nat(f"nat{i}", kind)
        count = int(count_text or 1)
        share = (65535 - 1024 + 1) // count  # a full-cone NAT forwards each host a slice of ports
        for j in range(count):
            low = 1024 + j * share
            tb.private(f"nat{i}h{j + 1}", f"nat{i}", ports=(low, low + share - 1))
    return tb


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "testbed", help="multi-host testbed in network namespaces (root): run commands, compare "
        "the simulator with real UDP",
        description="Build hosts in Linux network namespaces (public hosts, NATs, delay through an "
        "NFQUEUE relay, random loss) and run a command in them, or run the simulator-vs-testbed "
        "lookup comparison. Everything is torn down on exit, also after errors and SIGTERM.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="build a testbed, run a command, tear it down",
                       description="Build the described testbed, run COMMAND (inside host --on, or "
                       "here with $KADTALK_TESTBED describing the testbed), tear down; exit with "
                       "COMMAND's status.")
    add_arguments(r)
    r.add_argument("--on", metavar="HOST", help="run COMMAND inside this host's namespace")
    r.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    c = sub.add_parser("compare", help="the same lookup workload on the testbed and in the simulator",
                       description="Real UDP nodes spread over --hosts namespaces with coordinate-model "
                       "delays, against the simulator configured with the delays measured on the "
                       "testbed: lookup latency, RPCs and hops (medians, KS distance, CDF plot).")
    c.add_argument("--hosts", type=int, default=8)
    c.add_argument("--nodes", type=int, default=256)
    c.add_argument("--lookups", type=int, default=400)
    c.add_argument("--seed", type=int, default=1, help="node IDs and lookup pairs (default 1)")
    c.add_argument("--delay-seed", type=int, default=1, help="placement of the hosts (default 1)")
    c.add_argument("--k", type=int, default=None, help="bucket size (default 20; 8 with --quick)")
    c.add_argument("--alpha", type=int, default=3)
    c.add_argument("--loss", type=float, default=0.0)
    c.add_argument("--quick", action="store_true", help="64 nodes on 4 hosts, k = 8, 60 lookups (~17 s)")
    c.add_argument("--out", type=Path, metavar="DIR",
                   help="write comparison.json, testbed.csv, sim.csv and cdf.png")
    c.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    pr = sub.add_parser("pairs", help="who can call whom: a real call for every pair of host kinds",
                        description="Real daemons in every host kind (public IPv4/IPv6, NATs, "
                        "IPv6-only, dual-stack); a call with audio checked both ways for every "
                        "ordered pair; a markdown table and JSON (docs/testbed.md).")
    pairs.add_arguments(pr)
    sub.add_parser("cleanup", help="remove namespaces left by crashed testbed runs")


def quick_config(**overrides: Any) -> Any:
    from kadtalk.experiments.testbed_study import Comparison

    # k = 8: with k = 20, tables of 64 nodes hold nearly everyone and most lookups need no request
    base = dict(hosts=4, nodes=64, k=8, lookups=60, join_interval=0.04, settle=2.0, lookup_rate=12.0)
    return Comparison(**(base | {key: value for key, value in overrides.items() if value is not None}))


def main(args: argparse.Namespace) -> int:
    try:
        if args.testbed_command == "cleanup":
            removed = cleanup_stale()
            print(f"removed {len(removed)} stale namespaces" + (": " + " ".join(removed) if removed else ""))
            return 0
        if args.testbed_command == "run":
            return _run(args, from_arguments(args))
        if args.testbed_command == "pairs":
            return pairs.main(args)
        return _compare(args)
    except TestbedError as error:
        print(f"kadtalk: testbed: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, tb: Any) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        print("kadtalk: testbed run: give a command after --", file=sys.stderr)
        return 2
    if args.on and args.on not in tb.hosts:
        print(f"kadtalk: testbed run: no host {args.on!r} (hosts: {', '.join(tb.hosts)})", file=sys.stderr)
        return 2
    with tb, tempfile.TemporaryDirectory(prefix="kadtalk-testbed-") as tmp:
        description = Path(tmp) / "testbed.json"
        description.write_text(json.dumps(tb.describe(), indent=2) + "\n")
        for host in tb.hosts.values():
            extra = f" behind {host.nat} ({host.public_address})" if host.nat else ""
            print(f"testbed: {host.name} = {host.address}{extra} in netns {host.namespace}",
                  file=sys.stderr, flush=True)
        env = os.environ | {"KADTALK_TESTBED": str(description)}
        if args.on:
            return tb.run(args.on, argv, timeout=None, check=False, capture_output=False, env=env).returncode
        return subprocess.run(argv, env=env).returncode


def _compare(args: argparse.Namespace) -> int:
    import csv

    from kadtalk.experiments.lookup import ROW_FIELDS
    from kadtalk.experiments.testbed_study import Comparison, run_comparison

    fields = dict(seed=args.seed, delay_seed=args.delay_seed, k=args.k, alpha=args.alpha,
                  loss=args.loss)
    if args.quick:
        config = quick_config(**fields)
    else:
        fields["k"] = args.k or 20
        config = Comparison(hosts=args.hosts, nodes=args.nodes, lookups=args.lookups, **fields)
    figure = args.out / "cdf.png" if args.out else None
    result = run_comparison(config, figure)
    print_comparison(result)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for side in ("testbed", "sim"):
            with open(args.out / f"{side}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=ROW_FIELDS)
                writer.writeheader()
                writer.writerows(result["rows"][side])
        (args.out / "comparison.json").write_text(
            json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2) + "\n")
        print(f"wrote {args.out}/comparison.json, testbed.csv, sim.csv, cdf.png")
    if args.json:
        print(json.dumps(result["figures"]))
    return 0


def print_comparison(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    config = result["config"]
    figures = result["figures"]
    table = Table(title=f"find-peer lookups, {config['nodes']} nodes on {config['hosts']} hosts: "
                  "testbed (real UDP) vs simulator", title_justify="left")
    for column in ("figure", "testbed", "simulator", "sim/testbed", "KS (5% crit.)"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for metric, label in (("network_latency_ms", "latency, lookups with requests (ms)"),
                          ("cross_host_latency_ms", "latency, answered across hosts (ms)"),
                          ("latency_ms", "latency, all (ms)"), ("rpcs", "RPCs"), ("hops", "hops")):
        f = figures[metric]
        for stat in ("median", "mean", "p90"):
            a, b = f[f"{stat}_testbed"], f[f"{stat}_sim"]
            ratio = f"{b / a:.3f}" if a else "–"
            ks = f"{f['ks']:.3f} ({f['ks_critical_5pct']:.3f})" if stat == "median" else ""
            table.add_row(f"{label}: {stat}", f"{a:.2f}", f"{b:.2f}", ratio, ks)
    for key, label in (("success", "success rate"), ("local_share", "answered from own table"),
                       ("timeouts_mean", "timeouts per lookup")):
        a, b = figures[f"{key}_testbed"], figures[f"{key}_sim"]
        table.add_row(label, f"{a:.3f}", f"{b:.3f}", f"{b / a:.3f}" if a else "–", "")
    Console(width=110).print(table)
    tb = result["testbed"]
    print(f"testbed: joined in {tb['join_s']} s ({tb['join_retries']} retries), {tb['wall_s']} s in all; "
          f"datagrams dropped by nodes: {tb['drops'] or 'none'}; simulator: {result['sim']['wall_s']} s")
