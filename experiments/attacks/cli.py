"""`kadtalk sim attack {sybil,partition,figures}`: one study from the command line, or the
standard figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .partition import PartitionStudy, run_partition_study, success_series
from .plots import figures
from .results import frame, json_default
from .sybil import SHARES, TABLES, TARGETS, SybilStudy, run_sybil_study

DESCRIPTION = (
    "Attack studies in the simulator: Sybil / eclipse against one ID, and a region going dark."
)
# the SybilStudy fields `kadtalk sim attack sybil` takes as options
SYBIL_OPTIONS = (
    "nodes", "share", "ids", "keys_per_id", "impersonate", "target", "tables", "paths", "verify",
    "subnet_limit", "attacker_subnets", "lookups", "seed",
)
# the PartitionStudy fields `kadtalk sim attack partition` takes as options
PARTITION_OPTIONS = (
    "nodes", "region", "dark_at", "dark_for", "duration", "lookup_rate", "bin", "seed",
)


def add_parser(sim: Any) -> None:
    """`kadtalk sim attack {sybil,partition,figures}`."""
    import argparse

    attack = sim.add_parser(
        "attack",
        help="attack studies: Sybil / eclipse, a region going dark",
        description=DESCRIPTION,
    ).add_subparsers(dest="attack_command", metavar="ATTACK", required=True)
    p = attack.add_parser(
        "sybil", help="one Sybil study: lookups against an attacker's share of nodes"
    )
    defaults = SybilStudy()
    p.add_argument("--nodes", type=int, default=defaults.nodes, help="honest nodes")
    p.add_argument(
        "--share", type=float, default=defaults.share, help="attacker's share of all nodes"
    )
    p.add_argument("--ids", choices=["random", "free", "keygen"], default=defaults.ids)
    p.add_argument("--keys-per-id", type=float, default=defaults.keys_per_id)
    p.add_argument(
        "--no-impersonate",
        dest="impersonate",
        action="store_false",
        help="attacker nodes never hand out a fake entry for the target",
    )
    p.add_argument("--target", choices=TARGETS, default=defaults.target)
    p.add_argument("--tables", choices=TABLES, default=defaults.tables)
    p.add_argument("--paths", type=int, default=defaults.paths, help="disjoint lookup paths")
    p.add_argument("--verify", action="store_true", help="check the target entry by its key")
    p.add_argument(
        "--subnet-limit", type=int, default=0, help="entries of one /24 per bucket (0: off)"
    )
    p.add_argument("--attacker-subnets", type=int, default=defaults.attacker_subnets)
    p.add_argument("--lookups", type=int, default=defaults.lookups)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, metavar="DIR", help="write lookups.csv and summary.json")
    p.add_argument("--json", action="store_true", help="last output line is the summary as JSON")
    p = attack.add_parser("partition", help="a region of the plane goes dark and returns")
    defaults_p = PartitionStudy()
    for name in PARTITION_OPTIONS:
        kind = type(getattr(defaults_p, name))
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults_p, name))
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="write lookups.csv, series.csv, summary.json"
    )
    p.add_argument("--json", action="store_true", help="last output line is the summary as JSON")
    p = attack.add_parser(
        "figures",
        help="run the standard attack studies; tables and PNG figures",
        description=figures.__doc__,
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    del argparse


def run_cli(args: Any) -> int:
    if args.attack_command == "figures":
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done)

            written = figures(
                args.out, args.nodes, args.lookups, args.seed, args.shares, progress=progress
            )
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    if args.attack_command == "sybil":
        study = SybilStudy(**{name: getattr(args, name) for name in SYBIL_OPTIONS})
        result = run_sybil_study(study)
        keys = (
            "sybils",
            "success_rate",
            "reached_rate",
            "intercepted_rate",
            "rpcs_mean",
            "tables_with_attacker",
            "attacker_share_near_victim",
            "victim_prefix_honest",
            "victim_prefix_attacker",
        )
    else:
        study = PartitionStudy(**{name: getattr(args, name) for name in PARTITION_OPTIONS})
        result = run_partition_study(study)
        keys = (
            "lookups",
            "success_before",
            "success_dark",
            "success_dark_outside",
            "success_after",
            "success_after_region_target",
            "recovery_s",
        )
    for key in keys:
        value = result.summary[key]
        print(f"{key:28} {value:.3f}" if isinstance(value, float) else f"{key:28} {value}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        frame(result.rows).to_csv(args.out / "lookups.csv", index=False)
        if isinstance(study, PartitionStudy):
            frame(success_series(result.rows, study.bin, study.duration)).to_csv(
                args.out / "series.csv", index=False
            )
        (args.out / "summary.json").write_text(
            json.dumps(result.summary, indent=1, default=json_default)
        )
    if args.json:
        print(json.dumps(result.summary, default=json_default))
    return 0

