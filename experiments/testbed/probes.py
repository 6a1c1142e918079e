"""UDP tools run inside the testbed's hosts (``python -m kadtalk.experiments.testbed
echo|probe|send|agent``), and `Agent`, which drives an agent from outside.

They use plain sockets, so they measure the network itself (round trips, loss, what a NAT lets
through) apart from the node code it carries; only `probe --kadtalk` speaks to a kadtalk node.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from .tools import TestbedError, readline

if TYPE_CHECKING:
    from .topology import Host


def udp_socket(host: str) -> Any:
    """A UDP socket for binding to `host`: IPv4 for an IPv4 address, IPv6 for an IPv6 one
    ("::" is dual-stack: IPv4 peers too, as the daemon's socket)."""
    import socket

    if ":" not in host:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return sock


def hostport(text: str, sock: Any = None) -> tuple[str, int]:
    """"H:P" or "[V6]:P" as (host, port); an IPv4 host as IPv4-mapped IPv6 for an IPv6 `sock`."""
    import socket

    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if sock is not None and sock.family == socket.AF_INET6 and ":" not in host:
        host = "::ffff:" + host
    return host, int(port)


def peer_text(addr: tuple) -> str:
    """A received-from address as text: IPv4-mapped IPv6 as plain IPv4, IPv6 in brackets."""
    host = addr[0].removeprefix("::ffff:")
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def echo_main(args: argparse.Namespace) -> int:
    """A UDP echo server: sends every datagram back to where it came from."""
    import socket

    sock = udp_socket(args.host)
    sock.bind((args.host, args.port))
    print("ready", flush=True)
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)


def probe_main(args: argparse.Namespace) -> int:
    """Send `count` numbered datagrams to each target, one at a time, and print one JSON object:
    {target: [rtt_ms or null, ...]} (null: no echo within `timeout`)."""
    import socket

    sock = udp_socket(args.host)
    sock.bind((args.host, args.port))
    result: dict[str, list[float | None]] = {}
    for target in args.to:
        addr = hostport(target, sock)
        rtts: list[float | None] = []
        for seq in range(args.count):
            if args.kadtalk:
                # a kadtalk ROUTE_REQ: the node's answer (ROUTE_RES) echoes the target ID at
                # bytes 21-41, and the round trip includes the node's own processing
                from kadtalk.node.routing.messages import RouteRequest, encode_request

                target_id = random.getrandbits(160)
                payload = encode_request(RouteRequest(random.getrandbits(160), target_id))
                expect = target_id.to_bytes(20, "big")
            else:
                payload = f"{seq} {time.monotonic_ns()}".encode()
            sent = time.perf_counter()
            sock.sendto(payload, addr)
            deadline = sent + args.timeout
            rtt = None
            while True:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    data, _ = sock.recvfrom(65535)
                except socket.timeout:
                    break
                if data == payload or (args.kadtalk and data[:1] == b"\x01" and data[21:41] == expect):
                    rtt = (time.perf_counter() - sent) * 1000.0
                    break
            rtts.append(rtt)
            if args.interval:
                time.sleep(args.interval)  # pacing of a measurement tool, not a test wait
        result[target] = rtts
    print(json.dumps(result), flush=True)
    return 0


def send_main(args: argparse.Namespace) -> int:
    """Send one datagram `payload` from (host, port) to each target, then wait for datagrams
    for `listen` seconds and print one JSON list of [source, payload] received."""
    import socket

    sock = udp_socket(args.host)
    sock.bind((args.host, args.port))
    for target in args.to:
        sock.sendto(args.payload.encode(), hostport(target, sock))
    print("sent", flush=True)
    got = []
    deadline = time.monotonic() + args.listen
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            break
        got.append([peer_text(addr), data.decode(errors="replace")])
        if args.expect and len(got) >= args.expect:
            break
    print(json.dumps(got), flush=True)
    return 0


def agent_main(args: argparse.Namespace) -> int:
    """A scriptable UDP endpoint: one JSON command a line on stdin, one JSON answer a line.

    {"op": "bind", "port": P}                       -> {"ok": true, "port": P}  (0: any free port)
    {"op": "send", "port": P, "to": "H:Q", "data": S} -> {"ok": true}
    {"op": "recv", "port": P, "timeout": T}         -> {"from": "H:Q", "data": S} or {"timeout": true}
    {"op": "sink", "port": P, "idle": T}            -> {"count": N}: datagrams until T s of silence
    {"op": "blast", "port": P, "to": "H:Q", "count": N} -> {"ok": true}
    """
    import socket

    sockets: dict[int, socket.socket] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "bind":
                sock = udp_socket(cmd.get("host", "0.0.0.0"))
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF),
                                8 << 20)
                sock.bind((cmd.get("host", "0.0.0.0"), cmd.get("port", 0)))
                port = sock.getsockname()[1]
                sockets[port] = sock
                answer: dict[str, Any] = {"ok": True, "port": port}
            elif op in ("send", "blast"):
                sock = sockets[cmd["port"]]
                to = hostport(cmd["to"], sock)
                for i in range(cmd.get("count", 1)):
                    sock.sendto(cmd.get("data", str(i)).encode(), to)
                answer = {"ok": True}
            elif op == "recv":
                sock = sockets[cmd["port"]]
                sock.settimeout(cmd.get("timeout", 1.0))
                try:
                    data, addr = sock.recvfrom(65535)
                    answer = {"from": peer_text(addr), "data": data.decode(errors="replace")}
                except socket.timeout:
                    answer = {"timeout": True}
            elif op == "sink":
                sock = sockets[cmd["port"]]
                count = 0
                sock.settimeout(cmd.get("first", 5.0))
                while True:
                    try:
                        sock.recvfrom(65535)
                    except socket.timeout:
                        break
                    count += 1
                    sock.settimeout(cmd.get("idle", 0.5))
                answer = {"count": count}
            else:
                answer = {"error": f"unknown op {op!r}"}
        except (OSError, KeyError, ValueError) as error:
            answer = {"error": str(error)}
        print(json.dumps(answer), flush=True)
    return 0


class Agent:
    """Drives an `agent` process in a host (see `agent_main`); `Testbed.agent(host)` makes one."""

    def __init__(self, proc: subprocess.Popen, host: Host):
        self.proc = proc
        self.host = host
        self.ask_timeout = 30.0
        hello = self._read()
        if not hello.get("ready"):
            raise TestbedError(f"the UDP agent in {host.name} did not start: {hello}")

    def _read(self, timeout: float = 30.0) -> dict[str, Any]:
        line = readline(self.proc.stdout, timeout)
        if not line:
            raise TestbedError(f"the UDP agent in {self.host.name} did not answer")
        return json.loads(line)

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        timeout = fields.get("timeout", 0) + fields.get("first", 0) + self.ask_timeout
        answer = self._read(timeout)
        if "error" in answer:
            raise TestbedError(f"agent in {self.host.name}: {answer['error']}")
        return answer

    def bind(self, port: int = 0, host: str = "0.0.0.0") -> int:
        """Bind a socket on `port`; host "::" for a dual-stack one (IPv6 peers too)."""
        return self.ask("bind", port=port, host=host)["port"]

    def send(self, port: int, to: str, data: str = "hello") -> None:
        self.ask("send", port=port, to=to, data=data)

    def recv(self, port: int, timeout: float = 1.0) -> tuple[str, str] | None:
        answer = self.ask("recv", port=port, timeout=timeout)
        return None if answer.get("timeout") else (answer["from"], answer["data"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
