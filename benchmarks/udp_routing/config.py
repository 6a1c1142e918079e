"""Options and the plan of one invocation: sizes, durations, ports; k, α and the host for all."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import add_common_options, positive_float, positive_int, resolve_repeat

HOST = "127.0.0.1"
K = 20
ALPHA = 3
SYSTEMS = ("kadtalk", "kademlia")  # ours, then the baseline; each has a module <name>_adapter
# The default-limits row's warm-up goes on until every source gets full answers (kadtalk: its
# address validated), at most this many seconds longer (three of kadtalk's validation retries).
SETTLE = 30.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.udp_routing",
        description=(
            "Kademlia routing over real UDP on 127.0.0.1: (a) find-node requests per second one "
            "server node answers, with kadtalk's flood and amplification limits lifted "
            "(RoutingSettings(limits=False): the engine) and with its default limits under load "
            "from many source addresses (the protection), (b) lookup time and RPCs in a 64-node "
            "swarm; for kadtalk and "
            "for bmuller's `kademlia` package (PyPI, 2.2.3), both with k = 20 and α = 3. Prints "
            "both and the ratio kadtalk/kademlia: above 1 is better for answers/s, below 1 is "
            "better for lookup time and RPCs. Figures are medians over --repeat repetitions."
        ),
        epilog=(
            "The kademlia lookup is NodeSpiderCrawl, a find-closest crawl without early stop; "
            "kadtalk's find_peer stops as soon as the target is learned, so compare the "
            "find_closest rows like-for-like. Needs `pip install kademlia==2.2.3` (the dev extra)."
        ),
    )
    add_common_options(parser)
    parser.add_argument("--only", choices=("throughput", "lookups"),
                        help="run one part only (default: both)")
    parser.add_argument("--port-base", type=int, default=21000, metavar="PORT",
                        help="first UDP port used; kadtalk's range comes first, kademlia's right "
                        "after it (default 21000; the ports are checked to be free)")
    g = parser.add_argument_group("(a) throughput")
    g.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="seconds measured per repetition and row (default 3, 0.5 with --quick)")
    g.add_argument("--window", type=positive_int, default=64, metavar="W",
                   help="limits lifted: requests kept outstanding by the load generator, from "
                   "one source address (default 64)")
    g.add_argument("--origins", type=positive_int, default=1024, metavar="N",
                   help="limits lifted: distinct fake sender IDs in the load (default 1024)")
    g.add_argument("--sources", type=positive_int, default=256, metavar="N",
                   help="default limits: source addresses in 127.0.0.0/8 the load comes from, "
                   "one sender ID each, answering address probes like a peer (default 256)")
    g.add_argument("--offered", type=positive_float, default=4000.0, metavar="R",
                   help="default limits: requests a second sent, spread over the sources "
                   "(default 4000, above what the limits allow)")
    g.add_argument("--contacts", type=positive_int, default=200, metavar="N",
                   help="contacts pre-filled into the server node (default 200)")
    g = parser.add_argument_group("(b) lookups")
    g.add_argument("--nodes", type=positive_int, default=64, metavar="N",
                   help="swarm size (default 64)")
    g.add_argument("--lookups", type=positive_int, default=None, metavar="N",
                   help="targets looked up per client and repetition (default: every swarm "
                   "node; 16 with --quick)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed for contact IDs, sender IDs and target order (default 1)")
    return parser


@dataclass
class Plan:
    """Everything one invocation does, with the ports it needs."""

    repeat: int
    quick: bool
    duration: float
    warmup: float  # once per server, before the first repetition
    lead_in: float  # per repetition, before counting starts
    drain: float  # default-limits row: lead-in that spends the server's saved-up burst
    window: int
    origins: int
    sources: int
    offered: float
    contacts: int
    nodes: int
    lookups: int
    seed: int
    parts: tuple[str, ...]
    port_base: int
    span: int = 0
    bases: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # per system: two servers (limits lifted, default limits), then the contacts' (never
        # bound) ports, then the swarm, then (the first system's range only) the floor's server
        self.span = int(math.ceil((3 + self.contacts + self.nodes) / 100.0) * 100)
        self.bases = {name: self.port_base + i * self.span for i, name in enumerate(SYSTEMS)}
        if self.port_base < 1024 or self.port_base + 2 * self.span > 65536:
            raise SystemExit(
                f"--port-base {self.port_base}: need {2 * self.span} ports in 1024-65535")

    def server_port(self, system: str, limits: bool = False) -> int:
        """The server with the limits lifted, or (`limits`) the one with the defaults."""
        return self.bases[system] + limits

    def contact_ports(self, system: str) -> range:
        base = self.bases[system] + 2
        return range(base, base + self.contacts)

    def swarm_ports(self, system: str) -> range:
        base = self.bases[system] + 2 + self.contacts
        return range(base, base + self.nodes)

    def floor_port(self) -> int:
        """The floor's server (floor_adapter), in the first system's range after its swarm."""
        return self.bases[SYSTEMS[0]] + 2 + self.contacts + self.nodes

    def ports(self, system: str) -> list[int]:
        wanted: list[int] = []
        if "throughput" in self.parts:
            wanted += [self.server_port(system), self.server_port(system, limits=True)]
            wanted.extend(self.contact_ports(system))  # kademlia pings them: nobody may be there
            if system == SYSTEMS[0]:
                wanted.append(self.floor_port())
        if "lookups" in self.parts:
            wanted.extend(self.swarm_ports(system))
        return wanted

    def describe(self) -> dict[str, Any]:
        return {
            "k": K, "alpha": ALPHA, "host": HOST, "repeat": self.repeat, "quick": self.quick,
            "duration_s": self.duration, "warmup_s": self.warmup, "lead_in_s": self.lead_in,
            "drain_s": self.drain,
            "window": self.window, "origins": self.origins, "sources": self.sources,
            "offered_per_s": self.offered, "contacts": self.contacts,
            "nodes": self.nodes, "lookups_per_client": self.lookups, "seed": self.seed,
            "parts": list(self.parts),
            "ports": {s: [self.bases[s], self.bases[s] + self.span - 1] for s in SYSTEMS},
        }


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    parts = (args.only,) if args.only else ("throughput", "lookups")
    lookups = args.lookups
    if lookups is None:
        lookups = min(16, args.nodes) if quick else args.nodes
    return Plan(
        repeat=resolve_repeat(args),
        quick=quick,
        duration=args.duration if args.duration is not None else (0.5 if quick else 3.0),
        warmup=0.5 if quick else 1.0,
        lead_in=0.1 if quick else 0.25,
        drain=1.0,  # 4,000/s offered spends the 2,000 saved in 0.67 s, if the host sends that
        window=args.window,
        origins=args.origins,
        sources=args.sources,
        offered=args.offered,
        contacts=args.contacts,
        nodes=args.nodes,
        lookups=min(lookups, args.nodes),
        seed=args.seed,
        parts=parts,
        port_base=args.port_base,
    )
