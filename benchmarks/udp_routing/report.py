"""The figures of both parts (ours against the baseline, medians over the repetitions), the
notes under the table, and the table and JSON output (benchmarks.common)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import (
    HIGHER,
    LOWER,
    Figure,
    emit_json,
    environment,
    figures_payload,
    median,
    print_table,
)
from benchmarks.udp_routing.config import ALPHA, HOST, K, SETTLE, SYSTEMS, Plan
from benchmarks.udp_routing.system import adapter


def _rep_values(reps: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in reps]


def _figure(name: str, ours: list[float], baseline: list[float], **kw: Any) -> Figure:
    """A row: the medians over the repetitions, with the samples."""
    return Figure(name, median(ours), median(baseline),
                  samples={"kadtalk": ours, "kademlia": baseline}, **kw)


def _per_cpu(reps: list[dict[str, Any]]) -> list[float]:
    """Answers per second of the server's own CPU time: a server that other processes keep
    off the cores answers fewer a second, not fewer per CPU-second."""
    return [r["answers_per_s"] / r["server_cpu"] if r.get("server_cpu") else math.nan
            for r in reps]


def throughput_figures(throughput: dict[str, Any]) -> list[Figure]:
    lifted, limits, many = throughput["lifted"], throughput["limits"], throughput["many_ids"]
    kt, kd = lifted["kadtalk"]["reps"], lifted["kademlia"]["reps"]
    per_answer = {s: [float(c) for c in lifted[s]["contacts_per_answer"]] for s in SYSTEMS}
    lt, ld = limits["kadtalk"]["reps"], limits["kademlia"]["reps"]
    allow = limits["allow"]["kadtalk"]
    us_kt, us_kd = ([1e6 / v for v in _per_cpu(reps)] for reps in (kt, kd))
    us_floor = [1e6 / v for v in _per_cpu(lifted["floor"]["reps"])]  # throughput.FLOOR
    return [
        _figure("(a) find-node answers/s, limits lifted", _rep_values(kt, "answers_per_s"),
                _rep_values(kd, "answers_per_s"), unit="/s", better=HIGHER, digits=0,
                note="the engine"),
        _figure("(a) answers per server CPU-second, limits lifted", _per_cpu(kt), _per_cpu(kd),
                unit="/s", better=HIGHER, digits=0, note="less sensitive to a shared machine"),
        _figure("(a) server CPU per answer, limits lifted", us_kt, us_kd, unit="µs",
                better=LOWER, digits=1, note="1 / the row above"),
        Figure("(a) the floor: CPU per answer of kadtalk's UDP driver alone", median(us_floor),
               math.nan, unit="µs", digits=1, samples={"floor": us_floor},
               note="stand-in node, prebuilt answers"),
        _figure("(a) CPU per answer above the floor, limits lifted",
                [t - f for t, f in zip(us_kt, us_floor)], [d - f for d, f in zip(us_kd, us_floor)],
                unit="µs", better=LOWER, digits=1, note="the node's own work"),
        _figure("(a) server CPU, limits lifted", [100 * v for v in _rep_values(kt, "server_cpu")],
                [100 * v for v in _rep_values(kd, "server_cpu")], unit="%", digits=0),
        _figure("(a) load-generator CPU, limits lifted",
                [100 * v for v in _rep_values(kt, "client_cpu")],
                [100 * v for v in _rep_values(kd, "client_cpu")], unit="%", digits=0),
        _figure("(a) contacts per answer, limits lifted", per_answer["kadtalk"],
                per_answer["kademlia"], digits=1),
        _figure("(a) find-node answers/s, limits lifted, many IDs at one address",
                _rep_values(many["kadtalk"]["reps"], "answers_per_s"),
                _rep_values(many["kademlia"]["reps"], "answers_per_s"), unit="/s",
                better=HIGHER, digits=0),
        _figure("(a) server CPU, many IDs at one address",
                [100 * v for v in _rep_values(many["kadtalk"]["reps"], "server_cpu")],
                [100 * v for v in _rep_values(many["kademlia"]["reps"], "server_cpu")], unit="%",
                digits=0),
        _figure("(a) find-node answers/s, default limits, many sources",
                _rep_values(lt, "answers_per_s"), _rep_values(ld, "answers_per_s"), unit="/s",
                digits=0, note=f"kadtalk's limits allow {allow:,.0f}/s; kademlia has none"),
        _figure("(a) share of what the limits allow", [100 * v / allow for v in
                                                        _rep_values(lt, "answers_per_s")],
                [math.nan] * len(ld), unit="%", digits=0),
        _figure("(a) requests offered/s, many sources", _rep_values(lt, "offered_per_s"),
                _rep_values(ld, "offered_per_s"), unit="/s", digits=0),
        _figure("(a) contacts per answer, default limits", _rep_values(lt, "contacts_per_answer"),
                _rep_values(ld, "contacts_per_answer"), digits=1),
        _figure("(a) server CPU, default limits", [100 * v for v in _rep_values(lt, "server_cpu")],
                [100 * v for v in _rep_values(ld, "server_cpu")], unit="%", digits=0),
    ]


def lookup_figures(lookups: dict[str, Any]) -> list[Figure]:
    """kadtalk's find_peer and find_closest rows, each against kademlia's crawl."""
    figures = []
    crawl = lookups["kademlia crawl"]["reps"]
    for mode in ("find_peer", "find_closest"):
        ours = lookups[f"kadtalk {mode}"]["reps"]
        note = "kademlia: crawl" if mode == "find_peer" else "like-for-like"
        figures += [
            _figure(f"(b) {mode} median time", _rep_values(ours, "median_ms"),
                    _rep_values(crawl, "median_ms"), unit="ms", better=LOWER, digits=2,
                    note=note),
            _figure(f"(b) {mode} p90 time", _rep_values(ours, "p90_ms"),
                    _rep_values(crawl, "p90_ms"), unit="ms", better=LOWER, digits=2),
            _figure(f"(b) {mode} mean RPCs", _rep_values(ours, "mean_rpcs"),
                    _rep_values(crawl, "mean_rpcs"), better=LOWER, digits=1),
            _figure(f"(b) {mode} success", _rep_values(ours, "success"),
                    _rep_values(crawl, "success"), unit="%", better=HIGHER, digits=0),
        ]
    tables_kt = lookups["kadtalk find_peer"]["tables"] + lookups["kadtalk find_closest"]["tables"]
    figures.append(_figure("(b) client table after join", [float(t) for t in tables_kt],
                           [float(t) for t in lookups["kademlia crawl"]["tables"]], digits=1))
    return figures


def build_figures(throughput: dict[str, Any] | None,
                  lookups: dict[str, Any] | None) -> list[Figure]:
    return ((throughput_figures(throughput) if throughput else [])
            + (lookup_figures(lookups) if lookups else []))


def notes(plan: Plan) -> list[str]:
    lines = [
        f"medians over {plan.repeat} repetition(s), kadtalk and kademlia interleaved; ratio = "
        "kadtalk/kademlia; 'better' says which direction wins and who wins it",
        "k = 20, α = 3 for both, all on 127.0.0.1; CPU rows are context: the share of one core "
        "each process used while measured (a server below 100 % with a load generator well "
        "below it means other processes were competing for the cores)",
    ]
    if "throughput" in plan.parts:
        lines.append(
            f"(a) each server in its own process with {plan.contacts} contacts pre-filled; "
            f"answers counted for {plan.duration:g} s per repetition and row after a "
            f"{plan.warmup:g} s warm-up; kademlia's server pings a full bucket's head for every "
            "new sender (its protocol)")
        lines.append(
            "(a) limits lifted: kadtalk's server runs RoutingSettings(limits=False) (no flood "
            "limits, no 3x amplification limit; for benchmarks only); the load generator keeps "
            f"{plan.window} bare 41-byte requests outstanding from one address with one sender "
            f"ID; the 'many IDs' row sends the same from another address claiming "
            f"{plan.origins} sender IDs (each new one is checked against the IDs already seen "
            "at that address: one ID per address)")
        lines.append(
            "(a) the floor: kadtalk's UDP driver (asyncio, this kernel) around a stand-in node "
            "that answers each request with prebuilt 20-contact bytes, same load and "
            "repetitions as the limits-lifted row; 'above the floor' = a system's CPU per answer "
            "less the floor's, per repetition (for kademlia that also holds its own transport's "
            "difference: asyncio's DatagramProtocol, one datagram per callback)")
        lines.append(
            f"(a) default limits: {plan.offered:,.0f} bare requests a second offered for "
            f"{plan.drain:g} s before counting and while counting, from "
            f"{plan.sources} source addresses in 127.42.0.0/16, one sender ID each, answering "
            "kadtalk's address and validation probes as a peer does (so their addresses are "
            "validated and get full answers: the warm-up goes on until each source's last "
            f"answer was full, at most {SETTLE:g} s longer); kadtalk answers at most "
            "request_rate (1,000/s) after its burst (2,000), and 20/s per source while busy; the "
            "rest are counted drops")
    if "lookups" in plan.parts:
        lines.append(
            f"(b) {plan.nodes}-node swarms, each in its own process; per repetition fresh clients "
            f"join and look up {plan.lookups} swarm nodes each (two clients for kademlia's crawl)")
        lines.append(
            "(b) kademlia's lookup of a node ID is NodeSpiderCrawl: a find-closest crawl with no "
            "early stop; kadtalk's find_peer stops as soon as the target's entry is learned (0 "
            "RPCs when the client already holds it), so the find_peer rows compare against the "
            "same crawl and the find_closest rows are the like-for-like comparison")
        lines.append(
            "(b) success = target found (find_peer) or among the k closest returned; kademlia "
            "2.2.3's find_node answers leave out the node whose ID is the key "
            "(RoutingTable.find_neighbors skips neighbor.id == node.id), so its crawl never "
            "returns the target itself: 0 % by construction, not a network fault")
    return lines


def report(plan: Plan, throughput: dict[str, Any] | None, lookups: dict[str, Any] | None,
           wall: float, json_destination: str | None, machine: dict[str, Any]) -> None:
    """Print the table; write the JSON payload to `json_destination` ('-': stdout) if given."""
    ours, baseline = SYSTEMS
    figures = build_figures(throughput, lookups)
    version = adapter(baseline).version()
    print_table(
        f"UDP routing on {HOST}: {ours} vs {baseline} {version} "
        f"(k = {K}, α = {ALPHA}){' — QUICK smoke run' if plan.quick else ''}",
        figures, ours, baseline, notes(plan) + [
            f"machine: a bare heapq event loop ran {machine['heapq_events_per_s']:,.0f} events/s "
            "in this process (benchmarks.sim_scale's baseline: compare machines by it); load "
            f"average {machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} "
            "after (other users' processes share the cores: quote ratios, not absolutes)",
            f"wall time {wall:.1f} s"],
    )
    emit_json(json_destination, {
        "benchmark": "udp_routing",
        "baseline": f"{baseline} {version}",
        "ratio": f"{ours}/{baseline}",
        "config": plan.describe(),
        "figures": figures_payload(figures),
        "details": {"throughput": throughput, "lookups": lookups},
        "wall_s": wall,
        "machine": machine,
        "environment": environment(),
    })
