"""Who can call whom, with and without relays, as the NAT mix changes (issue 13, in the simulator).

Each point is a call study (experiments/calls.py) on the same seed: whole nodes, random pairs,
the share of placed calls that set up. The mix keeps `open_share` of the nodes on public
addresses (the relays: `[relay] serve = auto`) and moves the rest between cone NATs (full cone
and filtering, 2:1, the call study's usual 0.4 / 0.2 at no symmetric NAT) and symmetric ones.
Without relays a symmetric caller cannot reach a filtering or a symmetric callee (a symmetric
callee is reached from any other caller at the peer-reflexive address its PUNCH shows,
docs/protocol.md §20); with relays every NATed caller offers its relay (the node's rule,
`Node.needs_relay`), so every pair connects. `expected` is that rule's share of the placed
pairs (calls.reachable): the simulation should meet it.

    python -m kadtalk.experiments.reach sweep --nodes 2000 --calls 300 --out DIR
    python -m kadtalk.experiments.reach load DIR   # a `sim calls --relays --out DIR` run's figure
    python -m kadtalk.experiments.reach timeline --nodes 1000 --calls 300  # a relayed set-up's time
    python -m kadtalk.experiments.reach families --nodes 600 --calls 150 --out DIR  # IPv6 hosts
    python -m kadtalk.experiments.reach families ... --no-other-addresses  # no announce taken

`families` sweeps the hosts' address families (experiments/harness/dualstack.py): shares of
IPv6-only and dual-stack hosts (the rest IPv4-only) at a few symmetric shares, with and without
relays, every host with IPv6 and not on public IPv4 behind a stateful IPv6 firewall
(`--firewall`); protocol joins and the byte codec, as such worlds need. Beside the share of
placed calls that set up: `path`, the share of placed pairs the network lets any path join
(calls.path_exists), and the set-up share per family pair (`by_pair`, caller>callee).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from kadtalk.experiments.calls import NOT_PLACED, CallStudy, run_call_study
from kadtalk.experiments.harness.dualstack import DualStackWorld
from kadtalk.node.relay import wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.traversal import PUNCH_FWD_RELAY, PUNCH_REQ_RELAY, TRAVERSAL

SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
OPEN_SHARE = 0.4
SWEEP_FIELDS = ("symmetric", "relays", "placed", "success", "share", "expected", "relayed",
                "setup_median_ms", "datagrams_per_node", "wall_s")


def mix(symmetric: float, open_share: float = OPEN_SHARE) -> dict[str, float]:
    """The NAT shares of one point: `open_share` public, `symmetric`, the rest cone (2:1)."""
    cone = 1.0 - open_share - symmetric
    if cone < -1e-9:
        raise ValueError("open and symmetric shares add up to more than 1")
    cone = max(cone, 0.0)
    return {"nat_full_cone": cone * 2 / 3, "nat_filtering": cone / 3, "nat_symmetric": symmetric}


def point(nodes: int, calls: int, seed: int, symmetric: float, relays: bool,
          settle: float = 120.0, call_rate: float = 10.0) -> dict[str, Any]:
    """One call study of the sweep and its row."""
    study = CallStudy(nodes=nodes, calls=calls, seed=seed, settle=settle, call_rate=call_rate,
                      relays=relays, **mix(symmetric))
    started = time.perf_counter()
    result = run_call_study(study)
    placed = [r for r in result.rows if r["end_reason"] not in NOT_PLACED]
    ok = [r for r in placed if r["success"]]
    setup = [r["setup_ms"] for r in ok]
    return {
        "symmetric": symmetric, "relays": relays, "placed": len(placed), "success": len(ok),
        "share": len(ok) / len(placed) if placed else math.nan,
        "expected": sum(r["reachable"] for r in placed) / len(placed) if placed else math.nan,
        "relayed": sum(r.get("relay") is not None for r in ok),
        "setup_median_ms": statistics.median(setup) if setup else math.nan,
        "datagrams_per_node": result.summary["datagrams"] / nodes,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def sweep(nodes: int, calls: int, seed: int, shares: Sequence[float] = SHARES,
          settle: float = 120.0, call_rate: float = 10.0, log: Any = None) -> list[dict[str, Any]]:
    rows = []
    for share in shares:
        for relays in (False, True):
            row = point(nodes, calls, seed, share, relays, settle, call_rate)
            rows.append(row)
            if log is not None:
                log(row)
    return rows


FAMILY_MIXES = ((0.0, 0.0), (0.0, 0.5), (0.1, 0.4), (0.2, 0.4), (0.3, 0.3))  # (v6-only, dual)
FAMILY_SYMMETRIC = (0.0, 0.3)
FAMILY_FIELDS = ("v6_only", "dual_stack", "symmetric", "relays", "placed", "success", "share",
                 "path", "relayed", "no_route", "setup_median_ms", "datagrams_per_node", "wall_s",
                 "by_pair")


def family_point(nodes: int, calls: int, seed: int, v6_only: float, dual_stack: float,
                 symmetric: float, relays: bool, firewall: float = 1.0, settle: float = 60.0,
                 call_rate: float = 5.0) -> dict[str, Any]:
    """One call study of the families sweep and its row."""
    study = CallStudy(nodes=nodes, calls=calls, seed=seed, settle=settle, call_rate=call_rate,
                      relays=relays, bootstrap="protocol", wire="bytes", v6_only=v6_only,
                      dual_stack=dual_stack, v6_firewall=firewall, **mix(symmetric))
    started = time.perf_counter()
    result = run_call_study(study)
    placed = [r for r in result.rows if r["end_reason"] not in NOT_PLACED]
    ok = [r for r in placed if r["success"]]
    pairs: dict[str, list[int]] = {}
    for r in placed:
        key = f"{r.get('caller_family', 'v4')}>{r.get('callee_family', 'v4')}"
        pairs.setdefault(key, [0, 0])[0] += r["success"]
        pairs[key][1] += 1
    share = (lambda n: n / len(placed)) if placed else (lambda n: math.nan)
    return {
        "v6_only": v6_only, "dual_stack": dual_stack, "symmetric": symmetric, "relays": relays,
        "placed": len(placed), "success": len(ok), "share": share(len(ok)),
        "path": share(sum(r.get("path", r["reachable"]) for r in placed)),
        "relayed": sum(r.get("relay") is not None for r in ok),
        "no_route": result.summary.get("no_route", 0),
        "setup_median_ms": statistics.median([r["setup_ms"] for r in ok]) if ok else math.nan,
        "datagrams_per_node": result.summary["datagrams"] / nodes,
        "wall_s": round(time.perf_counter() - started, 1),
        "by_pair": {k: f"{a}/{b}" for k, (a, b) in sorted(pairs.items())},
    }


def family_sweep(nodes: int, calls: int, seed: int, mixes: Sequence[tuple[float, float]] = FAMILY_MIXES,
                 symmetric: Sequence[float] = FAMILY_SYMMETRIC, firewall: float = 1.0,
                 settle: float = 60.0, call_rate: float = 5.0, log: Any = None) -> list[dict[str, Any]]:
    rows = []
    for sym in symmetric:
        for v6_only, dual in mixes:
            for relays in (False, True):
                row = family_point(nodes, calls, seed, v6_only, dual, sym, relays, firewall,
                                   settle, call_rate)
                rows.append(row)
                if log is not None:
                    log(row)
    return rows


def plot_families(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Share of placed calls set up (solid) and of pairs any path joins (dotted), per mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mixes = list(dict.fromkeys((r["v6_only"], r["dual_stack"]) for r in rows))
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    xs = range(len(mixes))
    for sym in dict.fromkeys(r["symmetric"] for r in rows):
        for relays, style in ((False, "o-"), (True, "s-")):
            pts = {(r["v6_only"], r["dual_stack"]): r for r in rows
                   if r["symmetric"] == sym and r["relays"] is relays}
            label = f"{100 * sym:.0f} % symmetric, {'with' if relays else 'without'} relays"
            ax.plot(xs, [100 * pts[m]["share"] if m in pts else math.nan for m in mixes], style,
                    label=label)
            ax.plot(xs, [100 * pts[m]["path"] if m in pts else math.nan for m in mixes], ":",
                    color=ax.lines[-1].get_color())
    ax.set_xticks(list(xs), [f"v6-only {100 * a:.0f} %\ndual {100 * b:.0f} %" for a, b in mixes],
                  fontsize=8)
    ax.set_ylabel("placed calls that set up (%)\n(dotted: pairs some path joins)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for relays, style in ((False, "o-"), (True, "s-")):
        pts = [r for r in rows if r["relays"] is relays]
        xs = [100 * r["symmetric"] for r in pts]
        label = "with relays" if relays else "without relays"
        ax.plot(xs, [100 * r["share"] for r in pts], style, label=f"{label} (simulated)")
        ax.plot(xs, [100 * r["expected"] for r in pts], ":", color=ax.lines[-1].get_color(),
                label=f"{label} (NAT table's rule)")
    ax.set_xlabel("peers behind symmetric NATs (%)")
    ax.set_ylabel("placed calls that set up (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_load(per_relay: list[dict[str, Any]], path: Path, title: str) -> None:
    """Calls carried and allocations held per serving relay (a `sim calls --relays` run); with
    talking calls (experiments/relay_load.py --talk), each relay's busiest second too, against
    one allocation's cap (`[relay] allocation_rate`; the relay's own, total_rate, is 25 times)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    talk = bool(per_relay) and "peak_bytes_per_s" in per_relay[0]
    panels = [("allocations", "allocations held (end of run)"), ("calls", "calls relayed")]
    if talk:
        panels.append(("peak_calls", "relayed calls at once"))
    fig, axes = plt.subplots(1, len(panels) + talk, figsize=(4.2 * (len(panels) + talk), 3.6))
    for ax, (key, label) in zip(axes, panels):
        values = [int(r[key]) for r in per_relay]
        top = max(values, default=0)
        counts = [sum(v == x for v in values) for x in range(top + 1)]
        ax.bar(range(top + 1), counts, width=0.9)
        ax.set_yscale("log")
        ax.set_xlabel(f"{label} per relay")
        ax.set_ylabel("relays")
        ax.grid(alpha=0.3, axis="y")
    if talk:
        from kadtalk.node.relay import RelaySettings

        ax, cap = axes[-1], RelaySettings().allocation_rate / 1000
        values = [int(r["peak_bytes_per_s"]) / 1000 for r in per_relay]
        top = max(max(values, default=0.0), cap)
        bins = [5 * i for i in range(int(top // 5) + 2)]
        ax.hist(values, bins=bins, log=True)
        ax.axvline(cap, color="tab:red", linestyle="--",
                   label=f"one allocation's cap ({cap:.0f} KB/s)")
        ax.set_xlabel("KB forwarded in the busiest second per relay")
        ax.set_ylabel("relays")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# A relayed call's milestones, in order: (name, sender, receiver, first two bytes or None for
# the row's own times); "caller", "callee", "relay", "rv" (any other node). Session 10: the
# caller's KEY_REQ, HELD at its relay with the offer, goes to the callee on the CLAIM sent with
# the knock, at the instant the knock's cookie goes, and the callee's echo and KEY_RES go at
# one instant too: the cookie and the echo are off the chain (and datagrams of one instant
# have no order here, so they are not milestones); session 10's first HOLD sent the KEY_REQ
# on the echo (knock, cookie, echo, KEY_REQ), session 9 after "knocked" (relay -> caller)
# and the caller's "relayed KEY_REQ" (caller -> relay)
MILESTONES = (
    ("punch request", "caller", "rv", (TRAVERSAL, PUNCH_REQ_RELAY)),
    ("offer at the callee", "rv", "callee", (TRAVERSAL, PUNCH_FWD_RELAY)),
    ("knock", "callee", "relay", (wire.RELAY, wire.KNOCK)),
    ("KEY_REQ to the callee", "relay", "callee", (wire.RELAY, wire.DATA)),
    ("KEY_RES", "callee", "relay", (wire.RELAY, wire.DATA)),
    ("KEY_RES to the caller", "relay", "caller", (wire.RELAY, wire.DATA)),
)


def timeline(nodes: int, calls: int, seed: int, symmetric: float = 0.3,
             settle: float = 120.0, call_rate: float = 20.0) -> dict[str, Any]:
    """Where a relayed call's set-up time goes: for each relayed call of a study (40 % public,
    the rest cone 2:1 and `symmetric`), when each of `MILESTONES` was sent (ms after the call,
    the first such datagram after the previous milestone), then RINGING, TALKING and the first
    media as the row times them; medians over the relayed calls, and the direct calls'
    phases beside them."""
    from kadtalk.experiments.calls import _CallStudyRun

    study = CallStudy(nodes=nodes, calls=calls, seed=seed, settle=settle, call_rate=call_rate,
                      relays=True, **mix(symmetric))
    run = _CallStudyRun(study, None)
    network = run.world.network
    sent: list[tuple[float, int, int, bytes]] = []
    network.tap = lambda src, dst, payload: (type(payload) is bytes and sent.append(
        (network.env.now, src, dst, payload[:2])))
    result = run.run()
    ok = [r for r in result.rows if r["success"]]
    relayed = [r for r in ok if r.get("relay") is not None]
    by_node: dict[int, list[tuple[float, int, int, bytes]]] = {}
    for entry in sent:
        for addr in (entry[1], entry[2]):
            by_node.setdefault(addr, []).append(entry)
    marks: dict[str, list[float]] = {name: [] for name, *_ in MILESTONES}
    for row in relayed:
        roles = {row["caller"]: "caller", row["callee"]: "callee", row["relay"]: "relay"}
        start, end = row["start"], row["start"] + row["setup_ms"] / 1000
        seen = sorted({e for addr in roles for e in by_node.get(addr, ())
                       if start <= e[0] <= end}, key=lambda e: e[0])
        at, i = start, 0
        for name, frm, to, head in MILESTONES:
            while i < len(seen):
                t, src, dst, first = seen[i]
                i += 1
                if (first == bytes(head) and roles.get(src, "rv") == frm
                        and roles.get(dst, "rv") == to and t >= at):
                    marks[name].append(1000 * (t - start))
                    at = t
                    break
            else:
                break
    med = lambda xs: round(statistics.median(xs), 1) if xs else math.nan  # noqa: E731
    phases = ("lookup_ms", "key_exchange_ms", "ring_ms", "first_media_ms", "setup_ms")
    direct = [r for r in ok if r.get("relay") is None]
    return {
        "relayed_calls": len(relayed), "direct_calls": len(direct),
        "milestones_ms": {name: med(xs) for name, xs in marks.items()},
        "milestone_counts": {name: len(xs) for name, xs in marks.items()},
        "relayed_ms": {k: med([r[k] for r in relayed]) for k in phases},
        "direct_ms": {k: med([r[k] for r in direct]) for k in phases},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kadtalk.experiments.reach",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sweep", help="share of calls that set up against the symmetric share")
    p.add_argument("--nodes", type=int, default=2000)
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle", type=float, default=120.0)
    p.add_argument("--call-rate", type=float, default=10.0)
    p.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    p.add_argument("--out", type=Path, required=True, help="writes reach.csv and reach.png")
    p = sub.add_parser("families", help="share of calls that set up against the address families")
    p.add_argument("--nodes", type=int, default=600)
    p.add_argument("--calls", type=int, default=150)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--call-rate", type=float, default=5.0)
    p.add_argument("--firewall", type=float, default=1.0,
                   help="share of hosts with IPv6 (not on public IPv4) behind an IPv6 firewall")
    p.add_argument("--symmetric", type=float, nargs="+", default=list(FAMILY_SYMMETRIC))
    p.add_argument("--mixes", nargs="+", default=[f"{a},{b}" for a, b in FAMILY_MIXES],
                   help="V6ONLY,DUAL pairs of shares")
    p.add_argument("--out", type=Path, required=True, help="writes families.csv and families.png")
    p.add_argument("--other-addresses", action=argparse.BooleanOptionalAction, default=None,
                   help="nodes take, prove and name the IPv6 address a dual-stack entry "
                        "announces (RoutingSettings.other_addresses); default: the node's own "
                        f"default ({'on' if RoutingSettings().other_addresses else 'off'})")
    p = sub.add_parser("timeline", help="where a relayed call's set-up time goes (medians)")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--symmetric", type=float, default=0.3)
    p = sub.add_parser("load", help="the relay-load figure of a `sim calls --relays --out` run")
    p.add_argument("dir", type=Path)
    p.add_argument("--figure", type=Path, help="default DIR/relay_load.png")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        args.out.mkdir(parents=True, exist_ok=True)
        rows = sweep(args.nodes, args.calls, args.seed, args.shares, args.settle, args.call_rate,
                     log=lambda row: print(json.dumps(row), flush=True))
        with open(args.out / "reach.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SWEEP_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        plot_sweep(rows, args.out / "reach.png",
                   f"calls set up, N = {args.nodes:,}, {args.calls} calls a point, "
                   f"{100 * OPEN_SHARE:.0f} % public")
        print(f"wrote {args.out}/reach.csv, reach.png")
        return 0
    if args.command == "families":
        args.out.mkdir(parents=True, exist_ok=True)
        DualStackWorld.other_addresses = args.other_addresses
        mixes = [tuple(float(x) for x in m.split(",")) for m in args.mixes]
        rows = family_sweep(args.nodes, args.calls, args.seed, mixes, args.symmetric,
                            args.firewall, args.settle, args.call_rate,
                            log=lambda row: print(json.dumps(row), flush=True))
        with open(args.out / "families.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FAMILY_FIELDS)
            writer.writeheader()
            writer.writerows(r | {"by_pair": json.dumps(r["by_pair"])} for r in rows)
        plot_families(rows, args.out / "families.png",
                      f"calls set up against the address families, N = {args.nodes:,}, "
                      f"{args.calls} calls a point, IPv6 firewall {100 * args.firewall:.0f} %")
        print(f"wrote {args.out}/families.csv, families.png")
        return 0
    if args.command == "timeline":
        print(json.dumps(timeline(args.nodes, args.calls, args.seed, args.symmetric), indent=1))
        return 0
    with open(args.dir / "relays.csv", newline="") as f:
        per_relay = list(csv.DictReader(f))
    study = json.loads((args.dir / "params.json").read_text())["study"]
    figure = args.figure or args.dir / "relay_load.png"
    talk = study.get("relayed_talk", 0.0)
    families = study.get("v6_only", 0.0) or study.get("dual_stack", 0.0)
    plot_load(per_relay, figure, f"relay load, N = {study['nodes']:,}, "
              f"{study['calls']:,} calls, {100 * study['nat_symmetric']:.0f} % symmetric"
              + (f", IPv6-only {100 * study['v6_only']:.0f} % / dual-stack "
                 f"{100 * study['dual_stack']:.0f} %" if families else "")
              + (f", relayed calls talk {talk:.0f} s" if talk else ""))
    print(f"wrote {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
