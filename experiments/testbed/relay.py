"""The delay relay: an NFQUEUE process in the core namespace that holds every forwarded UDP
datagram for the one-way delay of its (source IP, destination IP) pair, then accepts it.

`tc netem` would be simpler, but the kernels of this machine kind are built without it. The
relay reads only the raw IP header's addresses; traffic inside one namespace never reaches
it, like processes on one machine. It reads the raw IPv4 or IPv6 header's addresses (the
version nibble tells which; ip6tables queues IPv6 to the same queue). Both ends of its
start-up live here: `start` (the testbed side) writes the delay table as one JSON line on the
relay's stdin and waits for "ready";
`main` (``python -m kadtalk.experiments.testbed relay``) is the relay.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
from typing import Any

from .tools import TestbedError, readline, stop


def start(core: str, python: str, queue: int, table: dict[str, float]) -> subprocess.Popen:
    """Start the relay in namespace `core` on NFQUEUE `queue` with delays `table`
    ({"SRC DST": seconds}); returns once it is bound to the queue."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", core, python, "-m", "kadtalk.experiments.testbed", "relay",
         "--queue", str(queue)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    proc.stdin.write(json.dumps(table) + "\n")
    proc.stdin.flush()
    line = readline(proc.stdout, 20.0)
    if line.strip() != "ready":
        stop([proc])
        raise TestbedError(f"the delay relay did not start (said {line!r}); see its stderr")
    return proc


def queue_rule(queue: int, tool: str = "iptables") -> list[str]:
    """The command line (core namespace; `tool` iptables or ip6tables) that hands forwarded
    UDP to the relay."""
    return [tool, "-A", "FORWARD", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(queue)]


def header_key(header: bytes) -> bytes:
    """Source and destination address of a raw IPv4 or IPv6 header, as the table keys them."""
    return header[8:40] if header[:1] and header[0] >> 4 == 6 else header[12:20]


def address_key(src: str, dst: str) -> bytes:
    """The table key of a (source, destination) pair of textual addresses of one family."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    return socket.inet_pton(family, src) + socket.inet_pton(family, dst)


def main(args: argparse.Namespace) -> int:
    """Hold every queued datagram for its (source IP, destination IP) delay, then accept it.

    Reads the table from the first line of stdin: {"SRC DST": seconds, ...}; prints "ready"
    when bound to the queue; runs until SIGTERM or stdin closes."""
    import asyncio

    from netfilterqueue import COPY_PACKET, NetfilterQueue

    table = json.loads(sys.stdin.readline())
    delays: dict[bytes, float] = {}
    for key, value in table.items():
        delays[address_key(*key.split())] = float(value)
    loop = asyncio.new_event_loop()
    stats = {"packets": 0, "unknown": 0}

    def on_packet(pkt: Any) -> None:
        header = pkt.get_payload()
        delay = delays.get(header_key(header))
        stats["packets"] += 1
        if delay is None:
            stats["unknown"] += 1
            pkt.accept()
            return
        pkt.retain()
        loop.call_later(delay, pkt.accept)

    nfq = NetfilterQueue()
    # copy only the header's first 40 bytes (an IPv6 header; IPv4's addresses end at 20)
    nfq.bind(args.queue, on_packet, max_len=65536, mode=COPY_PACKET, range=40)
    stop = asyncio.Event()
    loop.add_reader(nfq.get_fd(), lambda: nfq.run(block=False))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: None if sys.stdin.readline() else stop.set())
    print("ready", flush=True)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        if args.stats:
            print(json.dumps(stats), file=sys.stderr, flush=True)
        nfq.unbind()
    return 0
