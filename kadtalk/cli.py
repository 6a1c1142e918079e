"""The `kadtalk` command: identity, real UDP nodes, and simulated studies."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from kadtalk import __version__

log = logging.getLogger("kadtalk")

EPILOG = """examples:
  kadtalk id                                   print this machine's node ID (creates the key)
  kadtalk swarm --nodes 64 --port-base 7000 --list swarm.txt
  kadtalk lookup $(sed -n 5p swarm.txt | cut -d' ' -f1) --bootstrap 127.0.0.1:7000
  kadtalk sim lookup --nodes 10000 --lookups 1000 --seed 1 --json
  kadtalk sim calls --nodes 10000 --calls 1000 --nat-full-cone 0.4 --nat-filtering 0.2 --directory
  kadtalk sim sweep experiments/configs/small.toml --out results/small
  kadtalk sim plot results/small
"""


def _hex_id(text: str) -> int:
    text = text.strip().lower()
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a node ID (40 hex digits)")
    return int(text, 16)


def _hostport(text: str) -> tuple[str, int]:
    from kadtalk.transport.udp import parse_hostport

    try:
        return parse_hostport(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError("must be at least 2")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be at least 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1)")
    return value


def _bucket_bits(text: str) -> int:
    from kadtalk.node.routing.table import MAX_BUCKET_BITS

    value = int(text)
    if not 1 <= value <= MAX_BUCKET_BITS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_BUCKET_BITS}")
    return value


def _routing_options(parser: argparse.ArgumentParser, bucket_bits: bool = False) -> None:
    group = parser.add_argument_group("Kademlia parameters")
    group.add_argument("--k", type=_positive_int, default=20, help="bucket size and lookup width (default 20)")
    group.add_argument("--alpha", type=_positive_int, default=3, help="requests in flight per lookup (default 3)")
    group.add_argument("--timeout", type=float, default=1.0, help="seconds before a request counts as failed (default 1.0)")
    if bucket_bits:
        group.add_argument("--bucket-bits", type=_bucket_bits, default=1, metavar="B",
                           help="Kademlia's b bits a hop (1 to 8, default 1: the paper's table): each "
                           "prefix bucket split into 2^(B-1), so a lookup fixes about B ID bits a "
                           "hop; quicker lookups for a larger table and more datagrams a join "
                           "(the daemon's [routing] bucket_bits)")
        group.add_argument("--refresh-groups", action="store_true",
                           help="with --bucket-bits above 1: the hourly refresh one lookup a "
                           "prefix group rather than one a bucket, about b = 1's upkeep for most "
                           "of the gain (the daemon's [routing] refresh_groups)")


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser reports an unknown option with its own usage (argparse would hand
    it up to the top-level parser, whose usage does not show the subcommand's options)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kadtalk",
        description="Serverless encrypted voice calls over a Kademlia DHT, and a simulator for studying it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"kadtalk {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=SubcommandParser)

    p = commands.add_parser("id", help="print this node's ID, creating its key on first use",
                            description="Print the 40-hex-digit node ID (SHA-1 of the public key). "
                            "The key is created on first use in $XDG_CONFIG_HOME/kadtalk/identity.pem.")
    p.add_argument("--key", type=Path, help="identity key file (PEM) instead of the default")

    p = commands.add_parser("node", help="run a routing-only node in the foreground",
                            description="Run a Kademlia routing node on one UDP port and log what it does.")
    p.add_argument("--port", type=int, default=5004, help="UDP port to bind (default 5004)")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0: IPv6 and IPv4 on one dual-stack socket where the "
                   "OS allows, IPv4 only otherwise)")
    p.add_argument("--bootstrap", type=_hostport, action="append", default=[], metavar="HOST:PORT",
                   help="a node to join through (repeatable); without one this node starts a network")
    p.add_argument("--key", type=Path, help="identity key file (default: the user's identity)")
    p.add_argument("--ephemeral", action="store_true", help="use a throwaway identity")
    _routing_options(p)

    p = commands.add_parser("lookup", help="join a network and find a peer's address",
                            description="Join through a bootstrap node with a throwaway identity, "
                            "look up ID, print its address, the RPCs it took and the time.")
    p.add_argument("id", type=_hex_id, help="node ID to find (40 hex digits)")
    p.add_argument("--bootstrap", type=_hostport, action="append", required=True, metavar="HOST:PORT")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _routing_options(p)

    p = commands.add_parser("swarm", help="run N real UDP nodes in one process on this machine",
                            description="Start N routing nodes on consecutive UDP ports, bootstrapped "
                            "into one network, write 'ID HOST:PORT' lines to FILE, and serve until Ctrl-C.")
    p.add_argument("--nodes", type=_positive_int, default=64)
    p.add_argument("--port-base", type=int, default=7000, help="first UDP port (default 7000)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--list", type=Path, metavar="FILE", help="where to write the node list")
    p.add_argument("--buffer", type=_positive_int, default=1 << 20, metavar="BYTES",
                   help="socket receive and send buffer each node asks for (default 1 MiB; "
                   "the report says what the kernel granted)")
    p.add_argument("--join-concurrency", type=_positive_int, default=8, metavar="N",
                   help="nodes joining at once (default 8); a failed join is retried")
    _routing_options(p, bucket_bits=True)

    sim = commands.add_parser("sim", help="simulated studies (SimPy)").add_subparsers(
        dest="sim_command", metavar="STUDY", required=True)
    p = sim.add_parser("lookup", help="find-peer lookup latency in a simulated network",
                       description="Build a simulated network of N real kadtalk nodes (SimPy), let every "
                       "node join through the protocol, run M find-peer lookups between random pairs at "
                       "Poisson times and summarise latency, RPCs and hops.")
    p.add_argument("--nodes", type=_positive_int, default=1000)
    p.add_argument("--lookups", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency", choices=["coordinate", "sphere", "topology", "constant"], default="coordinate",
                   help="latency model (median RTT ~100 ms between random pairs for all but constant): "
                   "coordinate = nodes on a plane with access links; sphere = great-circle distance on "
                   "a globe; topology = shortest paths in a router graph (networkx); constant = 50 ms "
                   "one way (see docs/simulation.md)")
    p.add_argument("--loss", type=_fraction, default=0.0, help="datagram loss rate (default 0)")
    p.add_argument("--wire", choices=["auto", "bytes", "objects"], default="auto",
                   help="encode real datagrams, or hand message objects across (same results, faster); "
                   "auto = bytes up to 2,000 nodes")
    p.add_argument("--no-refresh-on-join", dest="refresh_on_join", action="store_false",
                   help="skip the paper's refresh of far buckets after a join (much faster convergence)")
    p.add_argument("--bootstrap", choices=["protocol", "fast", "fast-uptime"], default="protocol",
                   help="how the network converges: every node joins through the protocol (practical "
                   "to ~10^5 nodes), or 'fast': tables computed directly as the join leaves them "
                   "(10^6 nodes in minutes; lookups match join-by-protocol statistically), or "
                   "'fast-uptime': idealised tables of the k longest-lived nodes per bucket "
                   "(see docs/simulation.md)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write lookups.csv, params.json, latency_cdf.png")
    p.add_argument("--json", action="store_true", help="last output line is one JSON summary object")
    p.add_argument("--no-progress", action="store_true")
    _routing_options(p)
    _realism_options(p)
    _calls_parser(sim)
    from kadtalk.experiments.mailbox import add_parser as add_mailbox_parser

    add_mailbox_parser(sim)  # sim mailbox (offline delivery under churn)
    _sweep_and_plot_parsers(sim)
    from kadtalk.experiments.attacks import add_parser as add_attack_parser

    add_attack_parser(sim)  # sim attack {sybil,partition,figures}
    from kadtalk.experiments.testbed.cli import add_parser as add_testbed_parser

    add_testbed_parser(commands)  # kadtalk testbed run|compare|cleanup (network namespaces, root)
    from kadtalk.app.cli import add_parsers as add_service_parsers

    add_service_parsers(commands)  # daemon, status, call, answer, ..., web (kadtalk.app)
    return parser


def _nonnegative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be in [0, 1]")
    return value


def _calls_parser(sim: Any) -> None:
    p = sim.add_parser(
        "calls", help="call set-up time in a simulated network of whole nodes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate N whole kadtalk nodes (routing, NAT traversal, session: the daemon's node "
        "code on SimPy) and place M calls between random pairs at Poisson times. Each call: find-peer "
        "lookup of the callee, hole punching through rendezvous peers where its NAT needs it, signed "
        "key exchange, RING, ANSWER (the callee answers after --answer-delay), first media packet. "
        "Prints set-up time (call to first media heard) with its phases, the share of calls set up, "
        "and of calls between reachable pairs (docs/testbed.md's NAT table: symmetric callees and "
        "symmetric callers to filtering callees cannot connect).",
        epilog="--directory runs the same workload (same nodes, NATs, churn, pairs, times) against a "
        "central directory server at the latency model's median location instead of the DHT lookup: "
        "the baseline of docs/results.md. See docs/simulation.md.")
    p.add_argument("--nodes", type=_at_least_two, default=1000,
                   help="simulated peers, each a whole node with its own key pair (default 1000)")
    p.add_argument("--calls", type=_nonnegative_int, default=100, help="calls to place (default 100)")
    p.add_argument("--seed", type=int, default=1,
                   help="reproduces IDs, keys, places, NATs, churn and the calls (default 1)")
    p.add_argument("--call-rate", type=_positive, default=10.0, metavar="PER_S",
                   help="Poisson rate of new calls per simulated second (default 10)")
    p.add_argument("--answer-delay", type=_nonnegative, default=0.0, metavar="SECONDS",
                   help="how long the callee lets it ring before answering (default 0)")
    p.add_argument("--call-timeout", type=_positive, default=60.0, metavar="SECONDS",
                   help="a call not set up after this long counts as failed (default 60)")
    p.add_argument("--directory", action="store_true",
                   help="ask a central directory (one round trip) instead of the DHT lookup")
    p.add_argument("--relays", action="store_true",
                   help="run every node's relay layer (public nodes relay, NATed ones hold relays "
                   "and offer them in their calls' punch); adds relay load to the summary and "
                   "relays.csv to --out")
    p.add_argument("--latency", choices=["coordinate", "sphere", "topology", "constant"],
                   default="coordinate", help="latency model (see sim lookup --help)")
    p.add_argument("--loss", type=_fraction, default=0.0, help="datagram loss rate (default 0)")
    p.add_argument("--wire", choices=["auto", "bytes", "objects"], default="auto",
                   help="routing datagrams as bytes or message objects (session and traversal are "
                   "always bytes); auto = bytes up to 2,000 nodes")
    p.add_argument("--bootstrap", choices=["protocol", "fast", "fast-uptime"], default="fast",
                   help="tables converge by protocol joins or are computed as the join leaves them "
                   "(default fast; see sim lookup --help)")
    p.add_argument("--settle", type=_nonnegative, default=30.0, metavar="SECONDS",
                   help="simulated time between convergence and the first call (default 30: every "
                   "node has sent its NAT keep-alives once)")
    p.add_argument("--out", type=Path, metavar="DIR", help="write calls.csv, params.json, setup_cdf.png")
    p.add_argument("--json", action="store_true", help="last output line is one JSON summary object")
    p.add_argument("--no-progress", action="store_true")
    _routing_options(p)
    _realism_options(p, symmetric=True)


def _realism_options(parser: argparse.ArgumentParser, symmetric: bool = False) -> None:
    """Latency detail, jitter, churn, NAT and traffic accounting (docs/simulation.md)."""
    group = parser.add_argument_group("latency detail (docs/simulation.md)")
    group.add_argument("--routers", type=_positive_int, default=1000,
                       help="--latency topology: routers in the generated graph (default 1000; "
                       "shortest paths take ~1 s at 1,000)")
    group.add_argument("--topology", choices=["waxman", "barabasi_albert"], default="waxman",
                       help="--latency topology: Waxman (distance-dependent links) or Barabási–Albert "
                       "(power-law degrees) router graph (default waxman)")
    group.add_argument("--jitter", type=_nonnegative, default=0.0, metavar="FRACTION",
                       help="per-datagram extra delay, exponential with mean FRACTION of the pair's "
                       "delay, e.g. 0.1 (default 0: none); datagrams of one pair may be reordered")
    group = parser.add_argument_group("churn: nodes leave without notice and rejoin later")
    group.add_argument("--churn", choices=["none", "exponential", "weibull"], default="none",
                       help="session and offline time distribution, starting in equilibrium at the end "
                       "of the join phase (default none)")
    group.add_argument("--session", type=_positive, default=2544.0, metavar="SECONDS",
                       help="session length scale: the mean for exponential, the Weibull scale "
                       "(default 2544 s = 42.4 min, Stutzbach & Rejaie 2006)")
    group.add_argument("--session-shape", type=_positive, default=0.38, metavar="K",
                       help="Weibull shape of sessions; below 1 is heavy-tailed (default 0.38)")
    group.add_argument("--offline", type=_positive, default=2544.0, metavar="SECONDS",
                       help="offline period scale, as --session (default 2544 s)")
    group.add_argument("--offline-shape", type=_positive, default=0.38, metavar="K",
                       help="Weibull shape of offline periods (default 0.38)")
    group = parser.add_argument_group("NAT: inbound datagrams a NAT filters are dropped and counted")
    group.add_argument("--nat-full-cone", type=_share, default=0.0, metavar="SHARE",
                       help="share of nodes behind full-cone NAT: reachable by anyone once they have "
                       "sent something (default 0)")
    group.add_argument("--nat-filtering", type=_share, default=0.0, metavar="SHARE",
                       help="share of nodes behind address-filtering NAT: reachable only from addresses "
                       "they sent to (default 0)")
    if symmetric:
        group.add_argument("--nat-symmetric", type=_share, default=0.0, metavar="SHARE",
                           help="share of nodes behind symmetric NAT: a new outside port per "
                           "destination; they can call out but cannot be called (default 0)")
    group.add_argument("--nat-timeout", type=_positive, default=120.0, metavar="SECONDS",
                       help="NAT mapping lifetime after the node's last datagram (default 120, RFC 4787's "
                       "minimum)")
    group = parser.add_argument_group("workload accounting")
    group.add_argument("--traffic", action="store_true",
                       help="count requests by purpose (user lookups, joins, table refreshes) while the "
                       "lookups run, and report table-maintenance traffic in the summary")


def _sweep_and_plot_parsers(sim: Any) -> None:
    p = sim.add_parser("sweep", help="run a grid of lookup studies in parallel (Dask)",
                       description="Run every combination of the [grid] (and [zip]) parameters of CONFIG.toml, "
                       "plus its [fixed] ones, as one lookup study, in parallel on a local Dask cluster or an existing "
                       "scheduler. Each run is written to DIR/runs/<run id>/; a restarted sweep skips complete "
                       "runs. All runs merge into DIR/lookups.csv (one row per lookup) and DIR/summary.csv "
                       "(one row per run). See docs/sweeps.md.")
    p.add_argument("config", type=Path, metavar="CONFIG.toml", help="sweep description (experiments/configs/)")
    p.add_argument("--out", type=Path, metavar="DIR", help="result directory (default results/sweeps/NAME)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (tcp://host:8786) or its scheduler file (.json); "
                   "default: a local cluster of worker processes")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: one per CPU, at most one per run); "
                   "0 runs everything in this process without Dask")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are complete; run nothing")
    p.add_argument("--no-progress", action="store_true")
    p = sim.add_parser("plot", help="draw the standard figures of a sweep or a lookup study",
                       description="Read a sweep directory (kadtalk sim sweep --out) or a single study's "
                       "(kadtalk sim lookup --out) and draw latency CDFs per N, median/p90/p99 against N, "
                       "RPCs and hops against N, and success rate against churn as PNG files.")
    p.add_argument("results", type=Path, metavar="RESULTS", help="a sweep's or a lookup study's --out directory")
    p.add_argument("--out", type=Path, metavar="DIR", help="where the figures go (default RESULTS/figures)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    if args.command in ("node", "swarm"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "id":
            return cmd_id(args)
        from kadtalk.app.cli import COMMANDS as SERVICE_COMMANDS, run as run_service

        if args.command in SERVICE_COMMANDS:
            return run_service(args)
        if args.command == "testbed":
            from kadtalk.experiments.testbed.cli import main as cmd_testbed

            return cmd_testbed(args)
        if args.command == "sim":
            return {"sweep": cmd_sim_sweep, "plot": cmd_sim_plot, "attack": cmd_sim_attack,
                    "calls": cmd_sim_calls, "mailbox": cmd_sim_mailbox}.get(
                args.sim_command, cmd_sim_lookup)(args)
        return asyncio.run({"node": cmd_node, "lookup": cmd_lookup, "swarm": cmd_swarm}[args.command](args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as error:
        print(f"kadtalk: error: {error}", file=sys.stderr)
        return 2


def _settings(args: argparse.Namespace, **extra: Any):
    from kadtalk.node.routing.layer import RoutingSettings

    return RoutingSettings(k=args.k, alpha=args.alpha, request_timeout=args.timeout, **extra)


def cmd_id(args: argparse.Namespace) -> int:
    from kadtalk.node.identity import IdentityError, load_or_create

    try:
        print(load_or_create(args.key).hex_id)
    except IdentityError as error:
        print(f"kadtalk: {error}", file=sys.stderr)
        return 1
    return 0


async def cmd_node(args: argparse.Namespace) -> int:
    from kadtalk.node.identity import Identity, IdentityError, load_or_create
    from kadtalk.node.routing.events import Joined
    from kadtalk.transport.udp import start_node

    try:
        identity = Identity.generate() if args.ephemeral else load_or_create(args.key)
    except IdentityError as error:
        print(f"kadtalk: {error}", file=sys.stderr)
        return 1

    def on_event(event: Any) -> None:
        if isinstance(event, Joined):
            log.info("joined: %d contacts after %d RPCs (%d timeouts)", event.table_size, event.rpcs, event.timeouts)

    # traversal: a public node answers address probes and relays hole-punching requests
    driver = await start_node(identity, args.host, args.port, _settings(args), on_event,
                              traversal=True)
    log.info("node %s listening on %s:%d", identity.hex_id, *driver.address)
    if args.bootstrap:
        # the node's upkeep (kadtalk.node.upkeep): join now, and again with the join-retry
        # back-off while no bootstrap node answers or whenever the table empties
        driver.node.keep_joined(args.bootstrap, asyncio.get_running_loop().time())
        driver.service()
    routing = driver.node.routing
    while True:
        await asyncio.sleep(60)
        log.info("table: %d contacts; dropped: %s", len(routing.table), dict(driver.node.drop_counts()) or "none")


async def cmd_lookup(args: argparse.Namespace) -> int:
    from kadtalk.node import addresses
    from kadtalk.transport.udp import start_node

    driver = await start_node(settings=_settings(args))
    try:
        started = time.perf_counter()
        joined = await driver.join(args.bootstrap)
        join_s = time.perf_counter() - started
        if not joined.success:
            tried = ", ".join(addresses.text(a) for a in args.bootstrap)
            print(f"kadtalk: no answer from {tried}; "
                  "is a node running there?", file=sys.stderr)
            return 1
        result = await driver.find_peer(args.id)
        total_s = time.perf_counter() - started
    finally:
        driver.close()
    found = result.peer is not None
    report = {
        "id": f"{args.id:040x}",
        "found": found,
        "address": addresses.text(result.peer[1]) if found else None,
        "rpcs": result.rpcs,
        "hops": result.hops,
        "timeouts": result.timeouts,
        "lookup_ms": round(result.latency * 1000, 3),
        "join_ms": round(join_s * 1000, 3),
        "join_rpcs": joined.rpcs,
        "total_ms": round(total_s * 1000, 3),
    }
    if args.json:
        print(json.dumps(report))
    elif found:
        print(f"{report['id']} is at {report['address']}")
        print(f"lookup: {result.rpcs} RPCs, {result.hops} hops, {report['lookup_ms']:.1f} ms "
              f"(join: {joined.rpcs} RPCs, {report['join_ms']:.1f} ms)")
    else:
        print(f"{report['id']} not found after {result.rpcs} RPCs ({result.timeouts} timeouts)")
    return 0 if found else 1


async def cmd_swarm(args: argparse.Namespace) -> int:
    from kadtalk.node import addresses
    from kadtalk.transport.udp import SwarmReport, start_swarm

    def progress(joined: int, total: int) -> None:
        if joined % max(1, total // 10) == 0:
            log.info("swarm: %d of %d nodes joined", joined, total)

    report = SwarmReport()
    drivers = await start_swarm(args.nodes, args.port_base, args.host,
                                _settings(args, bucket_bits=args.bucket_bits,
                                          refresh_groups=args.refresh_groups),
                                progress, buffer=args.buffer,
                                concurrency=args.join_concurrency, report=report)
    log.info("swarm: %s", report.line())
    lines = [f"{d.node.node_id:040x} {addresses.text(d.address)}" for d in drivers]
    if args.list:
        args.list.write_text("\n".join(lines) + "\n")
        log.info("node list written to %s", args.list)
    else:
        print("\n".join(lines), flush=True)
    log.info("swarm of %d nodes on %s:%d-%d ready; Ctrl-C to stop", len(drivers), args.host,
             args.port_base, args.port_base + len(drivers) - 1)
    try:
        await asyncio.Event().wait()
    finally:
        for driver in drivers:
            driver.close()
    return 0


def cmd_sim_lookup(args: argparse.Namespace) -> int:
    from kadtalk.experiments.lookup import ROW_FIELDS, LookupStudy, run_lookup_study, study_parameters

    study = LookupStudy(
        nodes=args.nodes, lookups=args.lookups, seed=args.seed, k=args.k, alpha=args.alpha,
        request_timeout=args.timeout, latency=args.latency, loss=args.loss, wire=args.wire,
        refresh_on_join=args.refresh_on_join, bootstrap=args.bootstrap,
        routers=args.routers, topology=args.topology, jitter=args.jitter, churn=args.churn,
        session=args.session, session_shape=args.session_shape, offline=args.offline,
        offline_shape=args.offline_shape, nat_full_cone=args.nat_full_cone,
        nat_filtering=args.nat_filtering, nat_timeout=args.nat_timeout, traffic=args.traffic,
    )
    show = not args.no_progress and sys.stderr.isatty()
    result = _progress_bar(lambda progress: run_lookup_study(study, progress), show)
    summary = result.summary
    _print_summary(summary)
    if args.out:
        from kadtalk.experiments.plots import latency_cdf

        _write_study(args.out, "lookups.csv", ROW_FIELDS, study_parameters(study), result)
        latency_cdf(result.rows, args.out / "latency_cdf.png",
                    f"find-peer latency, N = {study.nodes:,}, k = {study.k}, α = {study.alpha}")
        print(f"wrote {args.out}/lookups.csv, params.json, latency_cdf.png")
    if args.json:
        print(json.dumps(summary))
    return 0  # a study that ran succeeded, whatever share of its lookups failed (churn, loss)


def _progress_bar(run: Callable[[Any], Any], enabled: bool) -> Any:
    """Run `run(progress)` under a rich progress bar (one task per phase) when enabled."""
    if not enabled:
        return run(None)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"{phase:8}", total=total)
            bar.update(tasks[phase], completed=done)

        return run(progress)


def _write_study(out: Path, table: str, fields: Any, parameters: dict, result: Any) -> None:
    """A study's per-row table (CSV) and params.json (study, summary, environment) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(result.rows)
    (out / "params.json").write_text(json.dumps(
        {"study": parameters, "summary": result.summary, "environment": result.environment},
        indent=2) + "\n")


def cmd_sim_calls(args: argparse.Namespace) -> int:
    from kadtalk.experiments.calls import (
        PER_RELAY_FIELDS, RELAY_FIELDS, ROW_FIELDS, CallStudy, run_call_study, study_parameters)

    study = CallStudy(
        nodes=args.nodes, calls=args.calls, seed=args.seed, k=args.k, alpha=args.alpha,
        request_timeout=args.timeout, latency=args.latency, loss=args.loss, wire=args.wire,
        bootstrap=args.bootstrap, settle=args.settle, call_rate=args.call_rate,
        answer_delay=args.answer_delay, call_timeout=args.call_timeout, directory=args.directory,
        routers=args.routers, topology=args.topology, jitter=args.jitter, churn=args.churn,
        session=args.session, session_shape=args.session_shape, offline=args.offline,
        offline_shape=args.offline_shape, nat_full_cone=args.nat_full_cone,
        nat_filtering=args.nat_filtering, nat_symmetric=args.nat_symmetric,
        nat_timeout=args.nat_timeout, traffic=args.traffic, relays=args.relays,
    )
    show = not args.no_progress and sys.stderr.isatty()
    result = _progress_bar(lambda progress: run_call_study(study, progress), show)
    summary = result.summary
    _print_table(f"call set-up, {summary['nodes']:,} simulated nodes ({summary['mode']})", summary, (
        "calls", "success_rate", "reachable_calls", "reachable_success_rate", "setup_median_ms",
        "setup_p90_ms", "setup_p99_ms", "lookup_median_ms", "punch_median_ms",
        "key_exchange_median_ms", "ring_median_ms", "first_media_median_ms", "identities",
        "identity_s", "wall_s", "peak_rss_mb", "departures", "returns", "nat_share",
        "nat_filtered"))
    print("end reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["end_reasons"].items())))
    if study.relays:
        print(f"relayed calls {summary['relayed_calls']}, relays serving "
              f"{summary['relays_serving']}, calls per relay max {summary['relay_calls']['max']}, "
              f"allocations per relay mean {summary['relay_allocations']['mean']:.2f} max "
              f"{summary['relay_allocations']['max']}, bytes forwarded "
              f"{summary['relay_forwarded_bytes_total']:,}")
    if args.out:
        from kadtalk.experiments.plots import setup_cdf

        _write_study(args.out, "calls.csv", ROW_FIELDS + (RELAY_FIELDS if study.relays else ()),
                     study_parameters(study), result)
        if study.relays:
            with open(args.out / "relays.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=PER_RELAY_FIELDS)
                writer.writeheader()
                writer.writerows(result.relays)
        setup_cdf({summary["mode"]: result.rows}, args.out / "setup_cdf.png",
                  f"call set-up, N = {study.nodes:,}")
        print(f"wrote {args.out}/calls.csv, params.json, setup_cdf.png")
    if args.json:
        print(json.dumps(summary))
    return 0  # a study that ran succeeded, whatever share of its calls failed


def cmd_sim_mailbox(args: argparse.Namespace) -> int:
    from kadtalk.experiments.mailbox import main as run_mailbox

    return run_mailbox(args)


def _print_table(title: str, summary: dict[str, Any], keys: Sequence[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in keys:
        value = summary.get(key)
        if value is not None:
            table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    Console(width=100).print(table)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"find-peer lookups, {summary['nodes']:,} simulated nodes")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("lookups", "success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean", "hops_mean",
                "timeouts_mean", "wall_s", "peak_rss_mb"):
        value = summary[key]
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    for key in ("departures", "returns", "online_share", "lookups_aborted", "lookups_skipped",
                "nat_share", "nat_filtered", "table_offline_share", "table_unreachable_share",
                "requests_user", "requests_join", "requests_refresh", "maintenance_share",
                "maintenance_req_per_node_s"):
        value = summary.get(key)  # realism figures: None when the feature is off
        if value is not None:
            table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    Console(width=100).print(table)


def cmd_sim_sweep(args: argparse.Namespace) -> int:
    from kadtalk.experiments.sweep import describe_run, load_config, print_plan, run_sweep

    config = load_config(args.config)
    out = args.out or Path("results") / "sweeps" / config.name
    if args.dry_run:
        print_plan(config, out)
        return 0
    if args.no_progress or not sys.stderr.isatty():
        result = run_sweep(config, out, scheduler=args.scheduler, workers=args.workers)
    else:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("runs    ", total=len(config.runs()))
            result = run_sweep(config, out, scheduler=args.scheduler, workers=args.workers,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    print(f"{len(result.runs)} runs: {len(result.ran)} ran, {len(result.skipped)} already complete, "
          f"{len(result.failed)} failed")
    runs = {run.run_id: run for run in result.runs}
    for run_id, error in result.failed.items():
        print(f"  failed {run_id} ({describe_run(runs[run_id], config)}): {error}", file=sys.stderr)
    print(f"wrote {out}/lookups.csv ({len(result.lookups)} lookups), {out}/summary.csv")
    return 0 if result.ok else 1


def cmd_sim_attack(args: argparse.Namespace) -> int:
    from kadtalk.experiments.attacks import run_cli

    return run_cli(args)


def cmd_sim_plot(args: argparse.Namespace) -> int:
    from kadtalk.experiments.plots import standard_figures

    out = args.out or args.results / "figures"
    report = standard_figures(args.results, out)
    for path in report.written:
        print(f"wrote {path}")
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}")
    return 0
