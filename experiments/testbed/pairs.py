"""Who can call whom on real networks (issue 13): every ordered pair of host kinds, each cell a
real call between `kadtalk daemon`s in testbed namespaces with audio checked both ways.

    python -m kadtalk.experiments.testbed pairs [--kinds K,...] [--cells A>B,...] [--out DIR]
    (or `kadtalk testbed pairs ...`; root)

Host kinds (docs/testbed.md, "Host kinds"): public-v4 (public IPv4 only), public-v6 (public
IPv6, IPv4 behind a carrier-grade NAT: DS-Lite-like), full-cone, filtering, symmetric (IPv4
only behind a NAT of that kind), v6-only (public IPv6, no IPv4 at all), dual-stack (public IPv4
and IPv6); `cgn` (IPv4 only behind a carrier-grade NAT) on request.

One network for the whole table: four infrastructure nodes (pub1, pub2 public IPv4; ds1, ds2
dual-stack; they serve as bootstrap nodes and, being public, as relays: `[relay] serve =
"auto"`), and two hosts of each kind (``<k>a``, ``<k>b``, each behind its own NAT), all daemons
on defaults. Cell (A, B) is a call from A's first host to B's first host (to B's second host
when A = B): dial by node ID, ring, answer, talk until each side has two quality reports with
audio arriving, hang up; then each side's recording must peak at the other side's tone. A cell
records whether it connected, relayed or direct (the callee's view of the caller's address at
ringing), the set-up time (dial to ringing, loop clock of this process), and the reason when it
did not connect: the caller's end reason, and where no path can exist at all, why.

Writes DIR/pairs.json (every cell, the hosts, the load), DIR/pairs.md (the markdown table for
docs/testbed.md) and DIR/logs/HOST.log (every daemon's log, for cells that fail).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from kadtalk.app.client import ControlError

from .daemons import PORT, CallFailed, NsDaemon, call, heard, is_call, stop_all
from .topology import Testbed

KINDS = ("public-v4", "public-v6", "full-cone", "filtering", "symmetric", "v6-only", "dual-stack")
EXTRA_KINDS = ("cgn",)
SHORT = {"public-v4": "pv", "public-v6": "p6", "full-cone": "fc", "filtering": "fl",
         "symmetric": "sy", "v6-only": "vs", "dual-stack": "ds", "cgn": "cg"}
FAMILIES = {"public-v4": {4}, "full-cone": {4}, "filtering": {4}, "symmetric": {4}, "cgn": {4},
            "v6-only": {6}, "public-v6": {4, 6}, "dual-stack": {4, 6}}
INFRA = (("ds1", "dual-stack"), ("pub1", "public-v4"), ("pub2", "public-v4"),
         ("ds2", "dual-stack"))
MEDIA_KEYS = ("received", "played", "late", "concealed", "decoded", "plc", "frames_played")
TONE_STEP = 31.0  # Hz between hosts' tones (the check allows 5 Hz)


def add_host(tb: Testbed, name: str, kind: str) -> None:
    """A host of `kind` named `name` (behind a NAT of its own named `name` + "n")."""
    if kind == "public-v4":
        tb.public(name)
    elif kind == "dual-stack":
        tb.public(name, ipv6=True)
    elif kind == "v6-only":
        tb.public(name, ipv4=False, ipv6=True)
    elif kind == "public-v6":
        tb.nat(name + "n", "cgn")
        tb.private(name, name + "n", ipv6=True)
    else:
        tb.nat(name + "n", kind)
        tb.private(name, name + "n")


def hosts_of(kinds: Sequence[str]) -> list[tuple[str, str]]:
    """(host, kind): the infrastructure, then two hosts of each kind."""
    return list(INFRA) + [(f"{SHORT[k]}{x}", k) for k in kinds for x in "ab"]


def build(kinds: Sequence[str], delay: Any = None) -> Testbed:
    tb = Testbed(delay=delay)
    for name, kind in hosts_of(kinds):
        add_host(tb, name, kind)
    return tb


def no_path_reason(caller: str, callee: str) -> str | None:
    """Why no path can exist between hosts of these kinds without a relay that forwards between
    IPv4 and IPv6, or None."""
    if FAMILIES[caller] & FAMILIES[callee]:
        return None
    return ("no common address family: only a relay that forwards between IPv4 and IPv6 "
            "(a dual-stack relay) could join them")


def cell_hosts(caller: str, callee: str) -> tuple[str, str]:
    return f"{SHORT[caller]}a", f"{SHORT[callee]}{'b' if caller == callee else 'a'}"


def bootstrap_seeds(host: str, kind: str) -> list[tuple[str, int]]:
    """(infrastructure host, address family) a host of `kind` bootstraps through: ds1 (over
    IPv6 where the host has it) and pub1 (over IPv4), so that dual-stack nodes are held at IPv6
    by some peers, IPv4 by others; an IPv6-only host through ds1 and ds2. ds1 is the first."""
    if host == "ds1":
        return []
    families = FAMILIES[kind]
    if families == {4}:
        return [("ds1", 4), ("pub1", 4)]
    if families == {6}:
        return [("ds1", 6), ("ds2", 6)]
    return [("ds1", 6), ("pub1", 4)]


def bootstrap_args(tb: Testbed, host: str, kind: str) -> list[str]:
    out = []
    for seed, family in bootstrap_seeds(host, kind):
        address = tb.host(seed).address4 if family == 4 else f"[{tb.host(seed).address6}]"
        out += ["--bootstrap", f"{address}:{PORT}"]
    return out


def start_groups(kinds: Sequence[str]) -> list[list[str]]:
    """The hosts in the order they start, a group at a time: each infrastructure node once
    every host it bootstraps through is up and joined (ds1; pub1; pub2 and ds2, which
    bootstrap through pub1), then every cell host. A host started with the hosts it bootstraps
    through can send its join before they listen: ds2's request to pub1 met a closed port in 4
    of 22 starts of the test's network (session 11), leaving its join to ds1's answer alone."""
    infra = dict(INFRA)
    groups: list[list[str]] = []
    up: set[str] = set()
    while len(up) < len(infra):
        group = [h for h, k in infra.items() if h not in up
                 and {seed for seed, _ in bootstrap_seeds(h, k)} - {h} <= up]
        if not group:  # a host whose seeds never all come up: a table to fix, not a hang
            raise ValueError(f"no start order: {sorted(set(infra) - up)} bootstrap through "
                             "each other or through hosts that are not infrastructure")
        groups.append(group)
        up.update(group)
    return groups + [[h for h, _ in hosts_of(kinds)[len(INFRA):]]]


async def start_network(tb: Testbed, root: Path, kinds: Sequence[str], log: Any = print,
                        daemons: dict[str, NsDaemon] | None = None) -> dict[str, NsDaemon]:
    """The hosts in `start_groups`' order, each group started and joined before the next;
    returns once the NATed hosts know their public address and hold a relay (or after a
    minute: a cell shows what is missing)."""
    tones = {name: 400.0 + TONE_STEP * i for i, (name, _) in enumerate(hosts_of(kinds))}
    daemons = {} if daemons is None else daemons  # filled as they start (logs after a failure)
    kind_of = dict(hosts_of(kinds))
    for group in start_groups(kinds):
        for host in group:
            args = bootstrap_args(tb, host, kind_of[host])
            daemons[host] = NsDaemon(tb, root, host, tones[host], *args)
        await asyncio.gather(*(daemons[h].start(timeout=90) for h in group))
        await asyncio.gather(*(daemons[h].joined(timeout=90) for h in group if h != "ds1"))
        log(f"pairs: joined: {' '.join(group)}")
    await settle(daemons, kind_of, log)
    return daemons


async def settle(daemons: dict[str, NsDaemon], kind_of: dict[str, str], log: Any,
                 timeout: float = 60.0) -> None:
    """Wait until each NATed host knows its public address and holds a relay."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = [h for h, k in kind_of.items() if FAMILIES[k] != {6} and tb_natted(k)]
    while waiting and loop.time() < deadline:
        statuses = await asyncio.gather(*(daemons[h].client.request("status") for h in waiting))
        waiting = [h for h, s in zip(waiting, statuses)
                   if not s["network"]["public_address"]
                   or (s["network"]["relay"]["needed"] and not s["network"]["relay"]["held"])]
        if waiting:
            await asyncio.sleep(1.0)  # polling daemons' status while they settle
    log(f"pairs: settled{'' if not waiting else '; still without a relay: ' + ' '.join(waiting)}")


def tb_natted(kind: str) -> bool:
    return kind in ("full-cone", "filtering", "symmetric", "cgn", "public-v6")


async def end_any_call(d: NsDaemon) -> None:
    """Hang up whatever call `d` still has (a cell that failed half-way)."""
    since = d.event_count()
    try:
        await d.client.request("hangup")
    except Exception:
        return  # no call
    try:
        await d.event(is_call("ended"), timeout=15, since=since)
    except AssertionError:
        pass


async def run_cell(daemons: dict[str, NsDaemon], caller_kind: str, callee_kind: str,
                   attempts: int = 1, talk_reports: int = 5) -> dict[str, Any]:
    """One cell; a call that connected but whose recordings fail the tone check is placed once
    more (on a loaded machine the daemons' playout can starve), the first try kept in
    ``first_try``."""
    cell = await _run_cell(daemons, caller_kind, callee_kind, attempts, talk_reports)
    if cell["connected"] and not cell["audio"]:
        again = await _run_cell(daemons, caller_kind, callee_kind, attempts, talk_reports)
        again["first_try"] = cell
        cell = again
    return cell


async def _run_cell(daemons: dict[str, NsDaemon], caller_kind: str, callee_kind: str,
                    attempts: int, talk_reports: int) -> dict[str, Any]:
    a, b = cell_hosts(caller_kind, callee_kind)
    caller, callee = daemons[a], daemons[b]
    cell: dict[str, Any] = {"caller": caller_kind, "callee": callee_kind, "caller_host": a,
                            "callee_host": b, "connected": False, "audio": False,
                            "expected_no_path": no_path_reason(caller_kind, callee_kind),
                            "at": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")}
    caller.new_call()
    callee.new_call()
    started = time.monotonic()
    try:
        facts = await call(caller, callee, attempts=attempts, talk_reports=talk_reports)
    except CallFailed as failed:
        cell["reason"] = failed.reason
    except (AssertionError, asyncio.TimeoutError) as error:
        cell["reason"] = "error: " + (str(error).splitlines() or ["timeout"])[0][:200]
    except ControlError as error:  # the daemon failed the command: its log says why
        cell["reason"] = f"daemon error: {error}"
    else:
        cell.update(connected=True, setup_s=round(facts["setup"], 3),
                    attempts=facts["attempts"], path=facts["path"],
                    relayed=bool(facts["path"] and facts["path"].startswith("relay")),
                    end=[facts["end_a"]["reason"], facts["end_b"]["reason"]],
                    stats=[facts["end_a"].get("stats"), facts["end_b"].get("stats")],
                    addresses=[facts["end_a"].get("address"), facts["end_b"].get("address")],
                    media=[{k: (e.get("media") or {}).get(k) for k in MEDIA_KEYS}
                           for e in (facts["end_a"], facts["end_b"])])
        try:
            cell["heard_hz"] = [round(heard(caller, callee), 1), round(heard(callee, caller), 1)]
            cell["audio"] = (abs(cell["heard_hz"][0] - callee.tone) < 5
                             and abs(cell["heard_hz"][1] - caller.tone) < 5)
        except AssertionError as error:
            cell["reason"] = f"audio: {error}"
            if LOG_DIR is not None:  # keep the recordings for a look
                for d in (caller, callee):
                    if d.wav.exists():
                        shutil.copy(d.wav, LOG_DIR / f"{caller_kind}-{callee_kind}-{d.host}.wav")
    cell["wall_s"] = round(time.monotonic() - started, 2)
    for d in (caller, callee):
        await end_any_call(d)
    return cell


def cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "–"
    if cell["connected"] and cell["audio"]:
        again = " (2nd try)" if "first_try" in cell else ""
        return f"yes, {'relayed' if cell['relayed'] else 'direct'}, {cell['setup_s']:.2f} s{again}"
    if cell["connected"]:
        return f"**no audio** ({cell.get('reason', '')})"
    reason = cell.get("reason", "?")
    return f"**no**: {reason}" + (" (no path)" if cell["expected_no_path"] else "")


def markdown(cells: list[dict[str, Any]], kinds: Sequence[str]) -> str:
    by = {(c["caller"], c["callee"]): c for c in cells}
    lines = ["| caller ↓ callee → | " + " | ".join(kinds) + " |",
             "| --- |" + " --- |" * len(kinds)]
    for a in kinds:
        lines.append(f"| {a} | " + " | ".join(cell_text(by.get((a, b))) for b in kinds) + " |")
    return "\n".join(lines) + "\n"


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        return ""


LOG_DIR: Path | None = None  # where `write_logs` puts daemon logs (main sets it)


def write_logs(daemons: dict[str, NsDaemon]) -> None:
    if LOG_DIR is not None:
        for host, d in daemons.items():
            (LOG_DIR / f"{host}.log").write_text(d.log())


async def study(tb: Testbed, root: Path, kinds: Sequence[str], cells: list[tuple[str, str]],
                attempts: int, log: Any = print) -> dict[str, Any]:
    daemons: dict[str, NsDaemon] = {}
    results: list[dict[str, Any]] = []
    statuses: dict[str, Any] = {}
    try:
        await start_network(tb, root, kinds, log, daemons)
        for caller, callee in cells:
            cell = await run_cell(daemons, caller, callee, attempts)
            cell["load"] = load()
            log(f"pairs: {caller} -> {callee}: {cell_text(cell)}  [{cell['wall_s']} s, load "
                f"{cell['load']}]")
            results.append(cell)
        statuses = {h: (await d.client.request("status"))["network"] for h, d in daemons.items()}
    finally:
        await stop_all(daemons)
        write_logs(daemons)
    return {"cells": results, "status": statuses}


def parse_cells(text: str | None, kinds: Sequence[str]) -> list[tuple[str, str]]:
    if not text:
        return [(a, b) for a in kinds for b in kinds]
    out = []
    for item in text.split(","):
        a, _, b = item.partition(">")
        if a not in kinds or b not in kinds:
            raise SystemExit(f"pairs: {item!r}: kinds must be among {', '.join(kinds)}")
        out.append((a, b))
    return out


def main(args: Any) -> int:
    kinds = [k for k in (args.kinds.split(",") if args.kinds else KINDS)]
    for k in kinds:
        if k not in SHORT:
            raise SystemExit(f"pairs: unknown kind {k!r} (kinds: {', '.join(SHORT)})")
    cells = parse_cells(args.cells, kinds)
    out = Path(args.out)
    global LOG_DIR
    LOG_DIR = out / "logs"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ktbp"))  # short: Unix socket paths
    started = time.monotonic()
    meta = {"command": " ".join(["python -m kadtalk.experiments.testbed", *sys.argv[1:]]),
            "commit": commit(), "kinds": kinds, "load_start": load(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    tb = build(kinds, delay_spec(args.delay))
    try:
        with tb:
            result = asyncio.run(study(tb, root, kinds, cells, args.attempts,
                                       lambda m: print(m, file=sys.stderr, flush=True)))
            hosts = tb.describe()["hosts"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    meta.update(wall_s=round(time.monotonic() - started, 1), load_end=load())
    (out / "pairs.json").write_text(json.dumps({**meta, "hosts": hosts, **result}, indent=1) + "\n")
    table = markdown(result["cells"], kinds)
    (out / "pairs.md").write_text(table)
    print(table)
    ok = sum(c["connected"] and c["audio"] for c in result["cells"])
    print(f"{ok} of {len(result['cells'])} cells connected with audio both ways; "
          f"{meta['wall_s']} s; load {meta['load_start']} -> {meta['load_end']}; wrote {out}")
    return 0


def delay_spec(text: str) -> Any:
    """"MS" (one way, constant) or "coordinate[:SEED]" (the simulator's model) as a delay."""
    if text.startswith("coordinate"):
        from .delays import CoordinateDelays

        return CoordinateDelays(int(text.partition(":")[2] or 1))
    return float(text) / 1000.0


def add_arguments(p: Any) -> None:
    p.add_argument("--kinds", help=f"comma-separated host kinds (default {','.join(KINDS)}; "
                   f"also {','.join(EXTRA_KINDS)})")
    p.add_argument("--cells", metavar="A>B,...", help="only these ordered pairs (default: all)")
    p.add_argument("--attempts", type=int, default=1,
                   help="dial again when a call ends before ringing (default 1)")
    p.add_argument("--delay", default="20", metavar="MS|coordinate[:SEED]",
                   help="one-way delay between sites (default 20 ms: set-up times in round trips)")
    p.add_argument("--out", default="results/testbed_pairs", metavar="DIR")
