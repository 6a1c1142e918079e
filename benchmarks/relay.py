"""Relay cost: the CPU a relay spends and the delay it adds per relayed call, on real UDP sockets.

Issue 13's goals: "media delay is the path's delay plus < 1 ms of relay processing; a relay
forwards one call for < 1 % of a core here". Measured on loopback:

- **ours**: a relay process running the daemon's stack (`kadtalk.transport.udp.start_node`: the
  real `UdpDriver` and `Node`, whose `RelayLayer` serves), and in this process, for each of N
  calls, two endpoints with real relay clients (`RelayLayer`): the owner allocates (HELLO,
  CHALLENGE, signed ALLOCATE), the peer knocks and echoes the cookie, the owner permits it; then
  both send a call's media through the allocation as DATA, 50 packets a second each way plus a
  receiver report a second, in the sizes the media layer makes: the benchmark encodes
  espeak-ng speech with `MediaSender` (redundancy on, as a call starts and stays under loss:
  the larger packets) and seals each with the session's `SendStream` (the DATA header's 10
  bytes come on top). Each end of each call sends at its own random phase within the 20 ms
  frame (two ends' clocks are independent: the relay wakes for each direction's packets).
- **baseline**: the same datagrams through a plain asyncio UDP forwarder process (a dict lookup
  and a `sendto` per datagram: the floor any Python relay on asyncio pays).
- **direct**: the first `--direct` calls also send each packet straight to the other end; the
  delay a relay adds is the relayed path's one-way delay minus the direct path's, both measured
  in the same run (median and 99th percentile, send and receive stamps from one clock).
- **CPU**: the relay process's CPU time, all its threads (the sum of
  /proc/PID/task/*/schedstat's run times, ns; /proc/PID/stat's ticks where schedstat is
  missing), over a `--seconds` window after a 1 s warm-up, divided by the window's wall time
  and by N: the share of one core per call (the idle relay's cost is included). The endpoints
  run in this process and are not counted; the kernel's work in the relay's system calls is,
  including, on loopback, delivering each forwarded datagram into the endpoint's socket (and
  waking it), which a relay sending to another host would not do. "CPU per relayed
  datagram" is the same CPU time over the relayed datagrams received in the window: it
  depends less on how many wake-ups the load merges, and is the figure to compare across
  runs at different loads.

Deviations from a daemon, all outside the per-DATA path: every endpoint is on 127.0.0.1, so
the relay's codec here permits loopback peers (the daemon refuses them at PERMIT and KNOCK;
`LoopbackCodec`), and the caps that count per host or meter set-up (`BENCH_SETTINGS`:
allocations per host, HELLO / KNOCK rates per source, the relay's total byte rate) are raised
so that N calls from one host can be set up and carried at once. Both children get a 4 MB
socket buffer. `--profile FILE` runs the relay under cProfile and prints its top functions.
`--loop` picks both children's event loop: uvloop (the default, as the daemon's `[network]
event_loop`) or asyncio (the daemon's until session 10: the floor per wake-up of a loop in Python).

    python -m benchmarks.relay --calls 1,10,50 --seconds 10 --json relay.json
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import multiprocessing
import os
import random
import selectors
import socket
import struct
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/relay.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    LOWER,
    Figure,
    add_common_options,
    emit_json,
    environment,
    figures_payload,
    median,
    percentile,
    print_table,
    resolve_repeat,
)
from kadtalk.node.relay import wire  # noqa: E402
from kadtalk.node.relay.addresses import Codec  # noqa: E402
from kadtalk.node.relay.settings import RelaySettings  # noqa: E402

HOST = "127.0.0.1"
FRAME = 0.020  # s: one media packet per 20 ms each way
REPORT_EVERY = 50  # frames: a receiver report (SIGNAL) a second each way
BUFFER = 4 << 20
WARMUP = 1.0  # s of traffic before the CPU window opens
BENCH_SETTINGS = RelaySettings(
    serve="always", max_allocations=512, max_per_host=512, total_rate=50_000_000.0,
    total_burst=5_000_000.0, verify_rate=10_000.0, verify_burst=10_000.0,
    source_rate=10_000.0, source_burst=10_000.0, knock_rate=10_000.0, knock_burst=10_000.0)
_STAMP = struct.Struct(">BIQ")  # path (0 relayed, 1 direct), sequence, send time (ns)
RELAYED, DIRECT = 0, 1


class LoopbackCodec(Codec):
    """The daemon's address rules except that loopback peers are allowed (every endpoint of the
    benchmark is on 127.0.0.1); the relay asks at PERMIT and KNOCK, never per DATA."""

    def forbidden(self, peer: Any, owner: Any, own: Any, forward_private: bool) -> str | None:
        if self.to_wire(peer) is None:
            return "forbidden_peer"
        return "forbidden_self" if peer == owner else None


# -- the media a call sends -------------------------------------------------------------------


def media_ticks(quick: bool) -> list[list[int]]:
    """One direction of a call, per 20 ms: the session datagram sizes sent then (a MEDIA packet
    from `MediaSender` over espeak-ng speech, redundancy on, and each second a receiver report
    after it), sealed by the session's `SendStream`."""
    import numpy as np

    from benchmarks.media import speech
    from kadtalk.node.media.call import MediaSender
    from kadtalk.node.media.codec import FRAME_SAMPLES
    from kadtalk.node.session.stream import SendStream
    from kadtalk.node.session.wire import MEDIA, SIGNAL, encode_report

    signal = np.concatenate(speech(quick))
    sender, stream = MediaSender(), SendStream(bytes(32), bytes(8))
    ticks = []
    for k in range(len(signal) // FRAME_SAMPLES):
        frame = signal[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES].tobytes()
        tick = [len(stream.seal(MEDIA, sender.encode(frame)))]
        if k % REPORT_EVERY == REPORT_EVERY - 1:
            tick.append(len(stream.seal(SIGNAL, encode_report(0.0, 0, 0, 0.0))))
        ticks.append(tick)
    return ticks


# -- the relay's process ----------------------------------------------------------------------


class Forwarder(asyncio.DatagramProtocol):
    """The baseline: forward each datagram to the other end of its pair, nothing else."""

    def __init__(self, pairs: dict[tuple, tuple]):
        self.pairs = pairs
        self.transport: Any = None
        self.forwarded = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        target = self.pairs.get(addr)
        if target is not None:
            self.transport.sendto(data, target)
            self.forwarded += 1


def _child_main(kind: str, conn: Any, profile: str | None, loop: str = "uvloop") -> None:
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(_child(kind, conn))
        finally:
            profiler.disable()
            profiler.dump_stats(profile)
    else:
        asyncio.run(_child(kind, conn))


async def _child(kind: str, conn: Any) -> None:
    loop = asyncio.get_running_loop()
    if kind == "relay":
        from kadtalk.transport.udp import start_node

        driver = await start_node(host=HOST, port=0, buffer=BUFFER)
        node = driver.node
        node.set_relay_settings(BENCH_SETTINGS)
        node.relay.codec = LoopbackCodec(node.routing.registry)  # before the server is made
        address, close = driver.address, driver.close

        def stats() -> dict[str, int]:
            return dict(node.relay.stats)
    else:
        from kadtalk.transport.udp import open_socket

        pairs: dict[tuple, tuple] = {}
        transport, forwarder = await loop.create_datagram_endpoint(
            lambda: Forwarder(pairs), sock=open_socket(HOST, 0, BUFFER))
        address, close = transport.get_extra_info("sockname")[:2], transport.close

        def stats() -> dict[str, int]:
            return {"forwarded": forwarder.forwarded}
    conn.send(("ready", address))
    done = loop.create_future()

    def command() -> None:  # the pipe is read by the loop: no thread in this process
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone (killed): stop, rather than spin on the EOF
            message = ("stop", None)
        if message[0] == "pairs":
            pairs.update(message[1])
            conn.send(("ok", None))
        elif not done.done():
            done.set_result(None)

    loop.add_reader(conn.fileno(), command)
    await done
    loop.remove_reader(conn.fileno())
    conn.send(("done", stats()))
    close()


class Child:
    """A spawned relay or forwarder process."""

    def __init__(self, kind: str, profile: str | None = None, loop: str = "uvloop"):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(kind, child_conn, profile, loop),
                                   name=f"relay-bench-{kind}", daemon=True)
        self.process.start()
        child_conn.close()
        self.address = tuple(self._receive(60.0))

    def _receive(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.process.name} did not answer within {timeout:.0f} s")
        return self.conn.recv()[1]

    def pairs(self, pairs: dict[tuple, tuple]) -> None:
        self.conn.send(("pairs", pairs))
        self._receive(10.0)

    def cpu(self) -> float:
        """Seconds of CPU the process has used, all its threads (their run times when the
        kernel keeps schedstat, else user + system ticks: 10 ms steps)."""
        pid = self.process.pid
        try:
            total = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict[str, int]:
        self.conn.send(("stop", None))
        stats = self._receive(30.0)
        self.process.join(10.0)
        if self.process.is_alive():
            self.process.kill()
        return stats


# -- the endpoints ----------------------------------------------------------------------------


@dataclass
class Call:
    owner: socket.socket
    peer: socket.socket
    allocation: bytes = b""


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def set_up(relay: tuple, calls: int, timeout: float = 60.0) -> list[Call]:
    """N allocations at `relay`, each with its peer permitted, through real relay clients
    (RelayLayer) driven on real sockets: allocate, knock and echo, KNOCKED, PERMIT."""
    from kadtalk.node.identity import Identity
    from kadtalk.node.relay import (AllocationGranted, Knocked, PermissionGranted, RelayLayer)

    out = [Call(_socket(), _socket()) for _ in range(calls)]
    ends = {}
    for call in out:
        for sock in (call.owner, call.peer):
            ends[sock] = RelayLayer(Identity.generate(), RelaySettings(serve="never"))
    selector = selectors.DefaultSelector()
    for sock in ends:
        selector.register(sock, selectors.EVENT_READ)
    start = time.monotonic()

    def pump(done: Any) -> None:
        while not done():
            now = time.monotonic() - start
            if now > timeout:
                raise RuntimeError("relay set-up did not finish")
            for sock, layer in ends.items():
                for data, addr in layer.datagrams_to_send(now):
                    sock.sendto(data, addr)
                deadline = layer.get_timer()
                if deadline is not None and deadline <= now:
                    layer.handle_timer(now)
            for key, _ in selector.select(0.05):
                sock = key.fileobj
                while True:
                    try:
                        data, addr = sock.recvfrom(4096)
                    except BlockingIOError:
                        break
                    ends[sock].receive_datagram(data, addr, time.monotonic() - start)

    def events(kind: type) -> dict[socket.socket, Any]:
        got = {}
        for sock, layer in ends.items():
            event = layer.next_event()
            while event is not None:
                if type(event) is kind:
                    got[sock] = event
                event = layer.next_event()
        return got

    for call in out:
        ends[call.owner].allocate(relay, time.monotonic() - start)
    def gather(kind: type) -> dict[socket.socket, Any]:
        got: dict[socket.socket, Any] = {}

        def done() -> bool:
            got.update(events(kind))
            return len(got) == calls
        pump(done)
        return got

    granted = gather(AllocationGranted)
    for call in out:
        call.allocation = granted[call.owner].path.allocation
        ends[call.peer].knock(granted[call.owner].path, time.monotonic() - start)
    knocked = gather(Knocked)
    for call in out:
        event = knocked[call.owner]
        assert event.peer == call.peer.getsockname()[:2], "the relay saw the peer elsewhere"
        ends[call.owner].permit(event.path, event.peer, time.monotonic() - start)
    gather(PermissionGranted)
    selector.close()
    return out


def carry(calls: list[Call], via: tuple, ticks: list[list[int]], seconds: float, direct: int,
          on_window: Any, seed: int) -> dict[str, list[float]]:
    """Both directions of every call through `via` for WARMUP + `seconds`, the first `direct`
    calls also straight to the other end; `on_window(opening)` is called as the measured window
    opens (True) and closes (False). One-way delays (s) of the window's packets, by path."""
    rng = random.Random(seed)
    selector = selectors.DefaultSelector()
    other: dict[socket.socket, tuple] = {}
    due: list[tuple[float, int, int]] = []  # (when, end index, frame number)
    ends: list[tuple[socket.socket, bytes, bool]] = []  # (socket, allocation, also direct)
    for i, call in enumerate(calls):
        other[call.owner] = call.peer.getsockname()[:2]
        other[call.peer] = call.owner.getsockname()[:2]
        for sock in (call.owner, call.peer):  # each end its own 20 ms clock, as in a real call
            selector.register(sock, selectors.EVENT_READ)
            heapq.heappush(due, (rng.uniform(0, FRAME), len(ends), rng.randrange(len(ticks))))
            ends.append((sock, call.allocation, i < direct))
    delays: dict[str, list[float]] = {"relayed": [], "direct": []}
    pad = bytes(2048)
    seq = sent_count = 0
    start = time.perf_counter()
    opens, closes = start + WARMUP, start + WARMUP + seconds
    window = None  # None: before, True: in, False: after
    while True:
        now = time.perf_counter()
        if window is None and now >= opens:
            window = True
            on_window(True)
        elif window and now >= closes:
            on_window(False)
            break
        while due and due[0][0] + start <= now:
            at, index, frame = heapq.heappop(due)
            sock, allocation, also_direct = ends[index]
            for size in ticks[frame % len(ticks)]:
                seq += 1
                body = pad[:size - _STAMP.size]
                if also_direct and seq % 2:  # which path goes first alternates
                    sock.sendto(_STAMP.pack(DIRECT, seq, time.perf_counter_ns()) + body,
                                other[sock])
                sock.sendto(wire.data(allocation, _STAMP.pack(RELAYED, seq,
                                                              time.perf_counter_ns()) + body), via)
                if window:
                    sent_count += 1
                if also_direct and not seq % 2:
                    sock.sendto(_STAMP.pack(DIRECT, seq, time.perf_counter_ns()) + body,
                                other[sock])
            heapq.heappush(due, (at + FRAME, index, frame + 1))
        timeout = max(0.0, due[0][0] + start - time.perf_counter())
        for key, _ in selector.select(timeout):
            sock = key.fileobj
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                arrived = time.perf_counter_ns()
                offset = wire.HEADER if data[0] == wire.RELAY else 0
                path, _, sent = _STAMP.unpack_from(data, offset)
                if window:
                    delays["direct" if path == DIRECT else "relayed"].append(
                        (arrived - sent) / 1e9)
    selector.close()
    delays["sent"] = [sent_count]  # relayed datagrams sent in the window
    return delays


def close(calls: list[Call]) -> None:
    for call in calls:
        call.owner.close()
        call.peer.close()


# -- the node's own work, without sockets -----------------------------------------------------


def in_process(datagrams: int) -> tuple[float, float]:
    """(µs a relayed DATA costs the daemon's Node, µs a dict-lookup forward costs), in this
    process without sockets: the node path is what the driver calls per relayed DATA
    (`node.relay`, then `RelayLayer.forward` with a send that queues; transport/udp.py's
    fast path) through a live allocation with its peer permitted, set up by hand with the
    wire helpers; the baseline is the forwarder's body."""
    from kadtalk.node.identity import Identity
    from kadtalk.node.routing.contacts import ContactRegistry
    from kadtalk.node.stack import Node

    owner, peer = ("203.0.113.1", 5004), ("203.0.113.2", 5004)
    me = Identity.generate()
    node = Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=me)
    node.set_relay_settings(replace(BENCH_SETTINGS, allocation_rate=1e12,
                                    allocation_burst=1e12, total_rate=1e12, total_burst=1e12))

    def ask(data: bytes, src: tuple) -> list[tuple[bytes, Any]]:
        node.receive_datagram(data, src, 0.0)
        return node.datagrams_to_send(0.0)

    nonce = bytes(16)
    [(challenge, _)] = ask(wire.hello(nonce), owner)
    cookie = challenge[18:34]
    client = Identity.generate()
    [(granted, _)] = ask(wire.allocate(nonce, cookie, 600, client.public_der, client.sign(
        wire.signed_part(nonce, cookie, 600))), owner)
    number = granted[18:26]
    [(knock_cookie, _)] = ask(wire.knock(number), peer)
    ask(wire.knock(number, knock_cookie[10:16]), peer)
    [(permitted, _)] = ask(wire.permit(number, Codec().to_wire(peer)), owner)
    assert permitted[1] == wire.PERMITTED
    data = wire.data(number, bytes(150))
    sources = (owner, peer)
    now = 1.0
    out: list[tuple[bytes, Any]] = []

    def send(data: bytes, target: Any) -> None:
        out.append((data, target))

    start = time.perf_counter()
    for i in range(datagrams):
        now += 1e-5
        node.relay.forward(data, sources[i & 1], now, send)
        if len(out) > 64:
            out.clear()
    ours = (time.perf_counter() - start) / datagrams * 1e6
    assert node.relay.stats["forwarded"] == datagrams
    pairs, out = {owner: peer, peer: owner}, []
    start = time.perf_counter()
    for i in range(datagrams):
        target = pairs.get(sources[i & 1])
        if target is not None:
            out.append((data, target))
        if len(out) > 64:
            out = []
    return ours, (time.perf_counter() - start) / datagrams * 1e6


# -- one measurement --------------------------------------------------------------------------


def measure(kind: str, n: int, ticks: list[list[int]], seconds: float, direct: int, seed: int,
            profile: str | None = None, loop: str = "uvloop") -> dict[str, Any]:
    """N calls through a fresh relay (`kind` "relay") or forwarder ("forward") process."""
    child = Child(kind, profile, loop)
    calls: list[Call] = []
    if n == 0:  # the idle process: its timers and nothing else
        try:
            time.sleep(WARMUP)
            t0, c0 = time.perf_counter(), child.cpu()
            time.sleep(seconds)
            t1, c1 = time.perf_counter(), child.cpu()
        finally:
            child.stop()
        return {"cpu_share": (c1 - c0) / (t1 - t0), "window_s": t1 - t0}
    try:
        if kind != "forward":
            calls = set_up(child.address, n)
        else:
            calls = [Call(_socket(), _socket(), os.urandom(wire.ID_SIZE)) for _ in range(n)]
            pairs = {}
            for call in calls:
                a, b = call.owner.getsockname()[:2], call.peer.getsockname()[:2]
                pairs[a], pairs[b] = b, a
            child.pairs(pairs)
        marks: list[tuple[float, float]] = []
        delays = carry(calls, child.address, ticks, seconds, min(direct, n),
                       lambda _: marks.append((time.perf_counter(), child.cpu())), seed)
    finally:
        close(calls)
        stats = child.stop()
    (t0, c0), (t1, c1) = marks
    relayed, straight = delays["relayed"], delays["direct"]
    expected = len(relayed)
    return {
        "cpu_share": (c1 - c0) / (t1 - t0),  # of one core, all N calls
        "cpu_us_per_datagram": 1e6 * (c1 - c0) / max(1, expected),  # in, processed and out
        "window_s": t1 - t0,
        "relayed_packets": expected,
        "relayed_sent": delays["sent"][0],
        "relayed_lost": max(0, delays["sent"][0] - expected),  # roughly: the window's edges
        "forwarded": stats.get("forwarded", 0),
        "drops": {k: v for k, v in stats.items() if k not in ("forwarded", "forwarded_bytes",
                                                              "allocated", "challenge_sent",
                                                              "knock_cookie_sent", "knocked")},
        "delay_median_ms": 1e3 * median(relayed),
        "delay_p99_ms": 1e3 * percentile(relayed, 99),
        "direct_median_ms": 1e3 * median(straight),
        "direct_p99_ms": 1e3 * percentile(straight, 99),
        "added_median_ms": 1e3 * (median(relayed) - median(straight)),
        "added_p99_ms": 1e3 * (percentile(relayed, 99) - percentile(straight, 99)),
    }


# -- the command ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.relay",
        description="A relay's CPU per call and the delay it adds, on real UDP sockets on "
        "loopback, against a plain asyncio forwarder (issue 13's goals: < 1 %% of a core per "
        "call, < 1 ms added one way).")
    parser.add_argument("--calls", default="1,10,50",
                        help="comma-separated numbers of concurrent calls (default 1,10,50)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured window per run after a 1 s warm-up (default 10)")
    parser.add_argument("--direct", type=int, default=10,
                        help="calls that also send each packet directly (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop",
                        help="the children's event loop (default uvloop, the daemon's "
                        "[network] event_loop; asyncio: the pure-Python loop)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the relay (largest N, one repetition) under cProfile, dump "
                        "the stats to FILE and print its top functions")
    add_common_options(parser, default_repeat=3)
    return parser


def run(args: argparse.Namespace) -> tuple[list[Figure], dict[str, Any]]:
    counts = [int(c) for c in args.calls.split(",") if c.strip()]
    if args.quick:
        counts, seconds = [min(counts[0], 2)], 1.0
    else:
        seconds = args.seconds
    repeat = resolve_repeat(args, quick_repeat=1)
    ticks = media_ticks(args.quick)
    media = [tick[0] for tick in ticks]
    kinds = ("relay", "forward")
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {kind: {} for kind in kinds}
    for r in range(repeat):
        for n in [0] + counts:
            for kind in kinds[::1 if r % 2 == 0 else -1]:  # each first in turn
                runs[kind].setdefault(n, []).append(
                    measure(kind, n, ticks, seconds, args.direct, args.seed + r,
                            loop=args.loop))
    idle = [[run["cpu_share"] * 100.0 for run in runs[kind][0]] for kind in ("relay", "forward")]
    figures = [Figure("process CPU, idle (no calls)", median(idle[0]), median(idle[1]), "% core",
                      None, digits=3, samples={"ours": idle[0], "baseline": idle[1]})]
    node_path = [in_process(20_000 if args.quick else 200_000) for _ in range(repeat)]
    figures.append(Figure("the Node's work per relayed datagram (in-process, no sockets)",
                          median(n for n, _ in node_path), median(b for _, b in node_path),
                          "µs", LOWER, digits=2,
                          samples={"ours": [n for n, _ in node_path],
                                   "baseline": [b for _, b in node_path]}))
    for n in counts:
        def med(kind: str, key: str, scale: float = 1.0) -> tuple[float, list[float]]:
            values = [run[key] * scale for run in runs[kind][n]]
            return median(values), values

        ours, ours_s = med("relay", "cpu_share", 100.0 / n)
        base, base_s = med("forward", "cpu_share", 100.0 / n)
        figures.append(Figure(f"CPU per call, {n} call{'s' * (n > 1)}", ours, base, "% core",
                              LOWER, digits=3, samples={"ours": ours_s, "baseline": base_s}))
        ours, ours_s = med("relay", "cpu_us_per_datagram")
        base, base_s = med("forward", "cpu_us_per_datagram")
        figures.append(Figure(f"CPU per relayed datagram, {n} call{'s' * (n > 1)}", ours, base,
                              "µs", LOWER, samples={"ours": ours_s, "baseline": base_s}))
        for key, label in (("added_median_ms", "median"), ("added_p99_ms", "p99")):
            ours, ours_s = med("relay", key)
            base, base_s = med("forward", key)
            figures.append(Figure(f"added one-way delay {label}, {n} call{'s' * (n > 1)}",
                                  ours, base, "ms", LOWER, digits=3,
                                  samples={"ours": ours_s, "baseline": base_s}))
    if len(counts) > 1 and counts[-1] > counts[0]:  # what one more call costs
        low, high = counts[0], counts[-1]

        def slope(kind: str) -> tuple[float, list[float]]:
            values = [100.0 * (b["cpu_share"] - a["cpu_share"]) / (high - low)
                      for a, b in zip(runs[kind][low], runs[kind][high])]
            return median(values), values

        (ours, ours_s), (base, base_s) = slope("relay"), slope("forward")
        figures.insert(1, Figure(f"CPU of one more call ({low} to {high} calls)", ours, base,
                                 "% core", LOWER, digits=3,
                                 samples={"ours": ours_s, "baseline": base_s}))
    config = {
        "calls": counts, "seconds": seconds, "repeat": repeat, "direct": args.direct,
        "loop": args.loop,
        "packets_per_s_each_way": 1 / FRAME, "reports_per_s_each_way": 1 / (REPORT_EVERY * FRAME),
        "media_datagram_bytes": {"mean": sum(media) / len(media), "min": min(media),
                                 "max": max(media)},
        "data_header_bytes": wire.HEADER, "settings": repr(BENCH_SETTINGS),
        "load_average": os.getloadavg(),
    }
    if args.profile:
        measure("relay", counts[-1], ticks, seconds, args.direct, args.seed, args.profile,
                args.loop)
    return figures, {"runs": {k: {str(n): v for n, v in by.items()} for k, by in runs.items()},
                     "config": config}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            parser.error("--loop uvloop: uvloop is not installed (pip install uvloop)")
    load = os.getloadavg()
    figures, detail = run(args)
    config = detail["config"]
    sizes = config["media_datagram_bytes"]
    notes = [
        f"{', '.join(map(str, config['calls']))} concurrent calls, each 50 MEDIA packets/s + 1 "
        f"report/s each way, session datagrams {sizes['min']}-{sizes['max']} B (mean "
        f"{sizes['mean']:.1f}) + {wire.HEADER} B of DATA header; {config['seconds']:g} s "
        f"window; median of {config['repeat']}",
        "ours: the daemon's UdpDriver + Node relaying; baseline: a plain asyncio forwarder "
        "(dict lookup + sendto); added delay = relayed minus direct one-way delay, same run",
        f"CPU: the relay process's, all threads (schedstat), over the window's wall time; "
        f"event loop: {config['loop']}",
        f"goals: < 1 % of a core per call, < 1 ms added; load average "
        f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores shared)",
    ]
    for kind in detail["runs"]:
        for n, runs in detail["runs"][kind].items():
            drops: dict[str, int] = {}
            for r in runs:
                for reason, count in r.get("drops", {}).items():
                    drops[reason] = drops.get(reason, 0) + count
            if drops:
                notes.append(f"{kind}, {n} calls: relay drops {drops}")
    print_table("Relay cost (python -m benchmarks.relay)", figures, "relay", "forwarder",
                notes)
    if args.profile:
        import pstats

        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    emit_json(args.json, {"benchmark": "relay", "environment": environment(),
                          "figures": figures_payload(figures), **detail})
    return 0


if __name__ == "__main__":
    sys.exit(main())
