"""``python -m kadtalk.experiments.testbed relay|echo|probe|send|agent``: the helper processes
the testbed starts inside its namespaces (the user-facing command is `kadtalk testbed`, cli.py);
``... pairs``: the who-can-call-whom table (pairs.py).
A module path, not a script path, so they run from any checkout kadtalk is installed from."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import pairs, relay
from .probes import agent_main, echo_main, probe_main, send_main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kadtalk.experiments.testbed",
                                     description="testbed helpers run inside namespaces")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("relay", help="the NFQUEUE delay relay (core namespace)")
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--stats", action="store_true", help="print packet counts to stderr on exit")
    p = sub.add_parser("echo", help="a UDP echo server")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=7)
    p = sub.add_parser("probe", help="UDP round trips to echo servers (or kadtalk nodes), as JSON")
    p.add_argument("--kadtalk", action="store_true",
                   help="targets are kadtalk nodes: send ROUTE_REQs, time their ROUTE_RES")
    p.add_argument("--to", action="append", required=True, metavar="HOST:PORT")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=0)
    p = sub.add_parser("send", help="send one datagram, then print what arrives")
    p.add_argument("--to", action="append", default=[], metavar="HOST:PORT")
    p.add_argument("--payload", default="hello")
    p.add_argument("--listen", type=float, default=1.0)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=0)
    sub.add_parser("agent", help="a scriptable UDP endpoint (JSON lines on stdin/stdout)")
    p = sub.add_parser("pairs", help="the table: a real call for every pair of host kinds (root)")
    pairs.add_arguments(p)
    args = parser.parse_args(argv)
    return {"agent": agent_main, "relay": relay.main, "echo": echo_main, "probe": probe_main,
            "send": send_main, "pairs": pairs.main}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
