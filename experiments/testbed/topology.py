"""A multi-host testbed in Linux network namespaces on one machine (root only).

    with Testbed(delay=CoordinateDelays(seed=1), loss=0.05) as tb:   # or delay=0.05 (one way)
        a = tb.public("a")                    # a public host: its own address on the core
        tb.nat("home", kind="filtering")      # a NAT namespace (MASQUERADE)
        b = tb.private("b", nat="home")       # a host behind it, on its own private LAN
        ...

is the description; the namespaces exist between `__enter__` and `__exit__` (or `up()` and
`down()`). Hosts are added before entering.

Topology (every name below lives in its own namespace ``<prefix>-<name>``, so nothing touches
the machine's own network):

- core: a router (ip_forward=1). Site i (a public host or a NAT) hangs off it through a veth
  pair: core side ``v<i>`` = 10.77.<i>.1/24, site side ``wan`` = 10.77.<i>.2/24.
- a public host's address is 10.77.<i>.2; a NAT's outside address is its 10.77.<i>.2.
- host j behind a NAT: a veth pair, NAT side ``l<j>`` = 192.168.<j>.1/24, host side ``wan`` =
  192.168.<j>.2/24. Every NAT reuses the same private ranges, as home routers do.
- NAT kinds: ``filtering`` is plain MASQUERADE (Linux conntrack: endpoint-independent mapping
  while the port is free, address-and-port-dependent filtering: only replies from endpoints the
  host sent to get in); ``full-cone`` adds a DNAT of the host's UDP ports (``ports=``, default all
  unprivileged ones) on the outside address back to the host: endpoint-independent filtering.
  Unlike a real full-cone NAT that forward exists before the host first sends; after it has
  sent, the two behave the same. ``symmetric`` is MASQUERADE --random-fully: a random outside
  port for each new flow (endpoint-dependent mapping), filtering as ``filtering``.
- delay: an NFQUEUE relay process in the core namespace (``python -m
  kadtalk.experiments.testbed relay``) holds every forwarded UDP datagram for the one-way delay
  of its (source IP, destination IP) pair, read from the raw IPv4 header, and then accepts it.
  So delay applies between sites; traffic inside one namespace (several nodes on one host) has
  none, like processes on one machine. Loss: ``iptables -m statistic --mode random`` DROP in
  the core's FORWARD chain, i.e. per datagram crossing the core.

Teardown kills every process left in the testbed's namespaces (by pid, from ``ip netns pids``)
and deletes the namespaces, even after an exception or SIGTERM. Names carry the creating
process's pid, so `cleanup_stale()` can remove leftovers of crashed runs whose creator is gone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
import random
from random import Random
from typing import Any, Sequence

PREFIX = "ktb"  # every testbed namespace is named ktb-<pid>-<n>-<name>
_counter = itertools.count()
NAT_KINDS = ("filtering", "full-cone", "symmetric")
_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class TestbedError(RuntimeError):
    """The testbed cannot be built (not root, no `ip netns`, a command failed)."""

    __test__ = False  # not a pytest test class


def unavailable_reason() -> str | None:
    """Why a testbed cannot be built here, or None when it can (root, ip, iptables, netns)."""
    if os.geteuid() != 0:
        return "the network testbed needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"the network testbed needs `{tool}` (Debian: apt-get install iproute2 iptables)"
    name = f"{PREFIX}-{os.getpid()}-probe{next(_counter)}"
    try:
        result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if result.returncode != 0:
            return f"`ip netns add` fails here: {result.stderr.strip()}"
        result = subprocess.run(["ip", "netns", "exec", name, "iptables", "-S"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return f"iptables does not work in a network namespace: {result.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def netfilterqueue_reason() -> str | None:
    """Why the delaying relay cannot run, or None (the NetfilterQueue package is importable)."""
    try:
        import netfilterqueue  # noqa: F401
    except ImportError as error:
        return (f"delays need the NetfilterQueue package (pip install 'kadtalk[testbed]'; "
                f"Debian: libnetfilter-queue-dev to build it): {error}")
    return None


def _sh(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def list_namespaces(prefix: str = PREFIX + "-") -> list[str]:
    out = _sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def _kill_namespace(name: str) -> None:
    """Kill the processes left in namespace `name` (by pid), then delete it."""
    pids = _sh(["ip", "netns", "pids", name], check=False).stdout.split()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(int(pid), sig)
                alive.append(pid)
            except (ProcessLookupError, ValueError):
                pass
        if not alive:
            break
        deadline = time.monotonic() + 2.0
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if os.path.exists(f"/proc/{p}")
                     and _proc_state(p) not in ("Z", "X")]
            if alive:
                time.sleep(0.02)  # teardown only: wait for the processes to go
        pids = alive
    _sh(["ip", "netns", "del", name], check=False)


def _proc_state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete testbed namespaces whose creating process is gone (crashed runs); returns them."""
    removed = []
    for name in list_namespaces(prefix + "-"):
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if os.path.exists(f"/proc/{parts[1]}"):
            continue  # its creator still runs (maybe a concurrent testbed)
        _kill_namespace(name)
        removed.append(name)
    return removed


# -- delay models ---------------------------------------------------------------------------------


class CoordinateDelays:
    """One-way delays between sites from the simulator's CoordinateLatency model: site i is the
    model's node i, placed with `Random(seed)`; the same seed gives the same delays."""

    def __init__(self, seed: int = 1, **model_args: Any):
        self.seed = seed
        self.model_args = model_args

    def matrix(self, sites: int) -> list[list[float]]:
        from kadtalk.sim.latency import CoordinateLatency

        model = CoordinateLatency(**self.model_args)
        rng = Random(self.seed)
        for _ in range(sites):
            model.add_node(rng)
        return [[0.0 if i == j else model.delay(i, j) for j in range(sites)] for i in range(sites)]


class ConstantDelays:
    def __init__(self, one_way: float):
        self.one_way = one_way

    def matrix(self, sites: int) -> list[list[float]]:
        return [[0.0 if i == j else self.one_way for j in range(sites)] for i in range(sites)]


class MatrixDelays:
    """An explicit sites x sites matrix of one-way delays in seconds (the diagonal is unused)."""

    def __init__(self, matrix: Sequence[Sequence[float]]):
        self._matrix = [list(map(float, row)) for row in matrix]

    def matrix(self, sites: int) -> list[list[float]]:
        if len(self._matrix) < sites or any(len(row) < sites for row in self._matrix):
            raise ValueError(f"the delay matrix is smaller than the testbed's {sites} sites")
        return [row[:sites] for row in self._matrix[:sites]]


def delay_model(spec: Any) -> Any:
    if spec is None or hasattr(spec, "matrix"):
        return spec
    if isinstance(spec, (int, float)):
        return ConstantDelays(float(spec)) if spec > 0 else None
    raise TypeError("delay must be a number (one-way seconds) or a delay model")


# -- description ----------------------------------------------------------------------------------


@dataclass
class Host:
    name: str
    namespace: str
    address: str  # the host's own address (private for hosts behind a NAT)
    public_address: str  # where others reach it: its own, or its NAT's outside address
    nat: str | None = None
    site: int = 0  # index of the core link it sits behind (its own, or its NAT's)
    ports: tuple[int, int] = (1024, 65535)


@dataclass
class Nat:
    name: str
    namespace: str
    kind: str
    address: str  # outside address
    site: int
    hosts: list[str] = field(default_factory=list)


def _ports(spec: Any) -> tuple[int, int]:
    if isinstance(spec, int):
        return spec, spec
    if isinstance(spec, str):
        low, _, high = spec.partition(":")
        return int(low), int(high or low)
    low, high = spec
    return int(low), int(high)


class Testbed:
    """Public hosts, NATs and hosts behind them around one core router; see the module doc."""

    __test__ = False  # not a pytest test class

    def __init__(self, delay: Any = None, loss: float = 0.0, prefix: str = PREFIX,
                 queue: int | None = None, python: str = sys.executable):
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.delay = delay_model(delay)
        self.loss = loss
        self.tag = f"{prefix}-{os.getpid()}-{next(_counter)}"
        self.python = python
        self.queue = queue if queue is not None else 1000 + os.getpid() % 30000
        self.hosts: dict[str, Host] = {}
        self.nats: dict[str, Nat] = {}
        self.sites: list[str] = []  # site index -> host or NAT name
        self.delays: list[list[float]] = []  # site x site one-way delays the relay applies
        self._namespaces: list[str] = []
        self._relay: subprocess.Popen | None = None
        self._processes: list[subprocess.Popen] = []
        self._old_sigterm: Any = None
        self._up = False

    # -- description (before up) -----------------------------------------------------------------

    @property
    def core(self) -> str:
        return f"{self.tag}-core"

    def _check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r}: names are 1-12 lowercase letters/digits, starting with a letter")
        if name in self.hosts or name in self.nats or name == "core":
            raise ValueError(f"{name!r} is already used")
        if self._up:
            raise RuntimeError("describe the testbed before bringing it up")

    def public(self, name: str) -> Host:
        """A host with its own address on the core."""
        self._check_name(name)
        site = len(self.sites)
        self.sites.append(name)
        address = f"10.77.{site + 1}.2"
        host = Host(name, f"{self.tag}-{name}", address, address, None, site)
        self.hosts[name] = host
        return host

    def nat(self, name: str, kind: str = "filtering") -> Nat:
        """A NAT router on the core; add hosts behind it with `private(..., nat=name)`."""
        if kind not in NAT_KINDS:
            raise ValueError(f"NAT kind must be one of {', '.join(NAT_KINDS)}")
        self._check_name(name)
        site = len(self.sites)
        self.sites.append(name)
        nat = Nat(name, f"{self.tag}-{name}", kind, f"10.77.{site + 1}.2", site)
        self.nats[name] = nat
        return nat

    def private(self, name: str, nat: str, ports: Any = (1024, 65535)) -> Host:
        """A host behind NAT `nat`. For a full-cone NAT, `ports` (a port, 'LOW:HIGH' or a pair)
        are the UDP ports forwarded to it; the ranges of one NAT's hosts must not overlap."""
        self._check_name(name)
        if nat not in self.nats:
            raise ValueError(f"no NAT named {nat!r}")
        owner = self.nats[nat]
        low, high = _ports(ports)
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port range {ports!r}")
        for other in owner.hosts:
            olow, ohigh = self.hosts[other].ports
            if owner.kind == "full-cone" and low <= ohigh and olow <= high:
                raise ValueError(f"ports of {name!r} overlap those of {other!r} behind {nat!r}")
        lan = len(owner.hosts) + 1
        host = Host(name, f"{self.tag}-{name}", f"192.168.{lan}.2", owner.address, nat,
                    owner.site, (low, high))
        owner.hosts.append(name)
        self.hosts[name] = host
        return host

    # -- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> "Testbed":
        self.up()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.down()

    def up(self) -> "Testbed":
        reason = unavailable_reason()
        if reason:
            raise TestbedError(reason)
        if self.delay is not None and netfilterqueue_reason():
            raise TestbedError(netfilterqueue_reason())
        self._install_sigterm()
        self._up = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _install_sigterm(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)  # unwinds through `finally`/__exit__: teardown runs

        self._old_sigterm = signal.signal(signal.SIGTERM, on_sigterm)

    def _add_namespace(self, name: str) -> str:
        _sh(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, namespace: str, *args: str) -> None:
        _sh(["ip", "-n", namespace, *args])

    def ns_sh(self, namespace: str, *argv: str) -> subprocess.CompletedProcess:
        return _sh(["ip", "netns", "exec", namespace, *argv])

    def _build(self) -> None:
        core = self._add_namespace(self.core)
        self.ns_sh(core, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for site, name in enumerate(self.sites):
            ns = self._add_namespace(f"{self.tag}-{name}")
            self.ip(core, "link", "add", f"v{site}", "type", "veth", "peer", "name", "wan", "netns", ns)
            self.ip(core, "addr", "add", f"10.77.{site + 1}.1/24", "dev", f"v{site}")
            self.ip(core, "link", "set", f"v{site}", "up")
            self.ip(ns, "addr", "add", f"10.77.{site + 1}.2/24", "dev", "wan")
            self.ip(ns, "link", "set", "wan", "up")
            self.ip(ns, "route", "add", "default", "via", f"10.77.{site + 1}.1")
        for nat in self.nats.values():
            self._build_nat(nat)
        self._wait_for_carrier()
        self._start_delay_and_loss()

    def _wait_for_carrier(self, timeout: float = 10.0) -> None:
        """veth carriers come up asynchronously: wait until no link reports NO-CARRIER."""
        deadline = time.monotonic() + timeout
        waiting = list(self._namespaces)
        while waiting:
            waiting = [ns for ns in waiting
                       if "NO-CARRIER" in _sh(["ip", "-n", ns, "-o", "link"]).stdout]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"links without carrier after {timeout} s in {', '.join(waiting)}")
            time.sleep(0.01)  # poll the kernel's link state while building

    def _build_nat(self, nat: Nat) -> None:
        ns = nat.namespace
        self.ns_sh(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for lan, name in enumerate(nat.hosts, 1):
            host = self.hosts[name]
            hns = self._add_namespace(host.namespace)
            self.ip(ns, "link", "add", f"l{lan}", "type", "veth", "peer", "name", "wan", "netns", hns)
            self.ip(ns, "addr", "add", f"192.168.{lan}.1/24", "dev", f"l{lan}")
            self.ip(ns, "link", "set", f"l{lan}", "up")
            self.ip(hns, "addr", "add", f"{host.address}/24", "dev", "wan")
            self.ip(hns, "link", "set", "wan", "up")
            self.ip(hns, "route", "add", "default", "via", f"192.168.{lan}.1")
            if nat.kind == "full-cone":
                low, high = host.ports
                self.ns_sh(ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp",
                           "-d", nat.address, "--dport", f"{low}:{high}", "-j", "DNAT",
                           "--to-destination", host.address)
        # symmetric: a random outside port for each new flow (endpoint-dependent mapping)
        self.ns_sh(ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE",
                   *(["--random-fully"] if nat.kind == "symmetric" else []))
        # nothing unsolicited gets through to the LAN except what a DNAT above forwards
        self.ns_sh(ns, "iptables", "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate",
                   "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT")
        self.ns_sh(ns, "iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP")
        # and nothing unsolicited reaches the NAT itself, as home routers' firewalls do: else
        # conntrack records an unsolicited packet to the NAT's own address:port, and the host's
        # later flow to that sender is mapped to another port (no hole punching would work)
        self.ns_sh(ns, "iptables", "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate",
                   "NEW,INVALID", "-j", "DROP")

    def site_address(self, site: int) -> str:
        return f"10.77.{site + 1}.2"

    def _start_delay_and_loss(self) -> None:
        core = self.core
        if self.loss > 0:
            self.ns_sh(core, "iptables", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
                       "--probability", f"{self.loss:.6f}", "-j", "DROP")
        if self.delay is None:
            return
        self.delays = self.delay.matrix(len(self.sites))
        table = {
            f"{self.site_address(i)} {self.site_address(j)}": self.delays[i][j]
            for i in range(len(self.sites)) for j in range(len(self.sites)) if i != j
        }
        self._relay = subprocess.Popen(
            ["ip", "netns", "exec", core, self.python, "-m", "kadtalk.experiments.testbed", "relay",
             "--queue", str(self.queue)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._relay.stdin.write(json.dumps(table) + "\n")
        self._relay.stdin.flush()
        line = _readline(self._relay.stdout, 20.0)
        if line.strip() != "ready":
            raise TestbedError(f"the delay relay did not start (said {line!r}); see its stderr")
        self.ns_sh(core, "iptables", "-A", "FORWARD", "-p", "udp", "-j", "NFQUEUE",
                   "--queue-num", str(self.queue))

    def down(self) -> None:
        """Stop everything this testbed started and delete its namespaces (idempotent)."""
        try:
            for proc in self._processes + ([self._relay] if self._relay else []):
                if proc.poll() is None:
                    proc.terminate()
            for proc in self._processes + ([self._relay] if self._relay else []):
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            for name in reversed(self._namespaces):
                _kill_namespace(name)
            self._namespaces.clear()
            self._processes.clear()
            self._relay = None
            self._up = False
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    # -- running things in hosts -----------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self.hosts[name]

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside `host`'s namespace."""
        return ["ip", "netns", "exec", self.hosts[host].namespace, *argv]

    def run(self, host: str, argv: Sequence[str], timeout: float | None = 60, check: bool = True,
            **kwargs: Any) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.exec_argv(host, argv), timeout=timeout, check=check, **kwargs)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start `argv` in `host`; it is terminated at teardown if still running."""
        proc = subprocess.Popen(self.exec_argv(host, argv), **kwargs)
        self._processes.append(proc)
        return proc

    def agent(self, host: str) -> Agent:
        """A scriptable UDP endpoint process inside `host` (plain sockets, no kadtalk)."""
        proc = self.popen(host, self.python_argv("-m", "kadtalk.experiments.testbed", "agent"),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return Agent(proc, self.hosts[host])

    def python_argv(self, *args: str) -> list[str]:
        return [self.python, *args]

    def describe(self) -> dict[str, Any]:
        return {
            "hosts": {h.name: {"address": h.address, "public_address": h.public_address,
                               "nat": h.nat, "namespace": h.namespace} for h in self.hosts.values()},
            "nats": {n.name: {"kind": n.kind, "address": n.address, "hosts": n.hosts}
                     for n in self.nats.values()},
            "sites": self.sites,
            "delays_ms": [[round(d * 1000, 3) for d in row] for row in self.delays],
            "loss": self.loss,
        }


def _readline(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


# -- UDP probes (run inside namespaces through `python -m kadtalk.experiments.testbed ...`) ------


def echo_main(args: argparse.Namespace) -> int:
    """A UDP echo server: sends every datagram back to where it came from."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    print("ready", flush=True)
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)


def probe_main(args: argparse.Namespace) -> int:
    """Send `count` numbered datagrams to each target, one at a time, and print one JSON object:
    {target: [rtt_ms or null, ...]} (null: no echo within `timeout`)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    result: dict[str, list[float | None]] = {}
    for target in args.to:
        host, _, port = target.rpartition(":")
        addr = (host, int(port))
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

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.host, args.port))
    for target in args.to:
        host, _, port = target.rpartition(":")
        sock.sendto(args.payload.encode(), (host, int(port)))
    print("sent", flush=True)
    got = []
    deadline = time.monotonic() + args.listen
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            break
        got.append([f"{addr[0]}:{addr[1]}", data.decode(errors="replace")])
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
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF),
                                8 << 20)
                sock.bind((cmd.get("host", "0.0.0.0"), cmd.get("port", 0)))
                port = sock.getsockname()[1]
                sockets[port] = sock
                answer: dict[str, Any] = {"ok": True, "port": port}
            elif op in ("send", "blast"):
                host, _, port_text = cmd["to"].rpartition(":")
                sock = sockets[cmd["port"]]
                for i in range(cmd.get("count", 1)):
                    sock.sendto(cmd.get("data", str(i)).encode(), (host, int(port_text)))
                answer = {"ok": True}
            elif op == "recv":
                sock = sockets[cmd["port"]]
                sock.settimeout(cmd.get("timeout", 1.0))
                try:
                    data, addr = sock.recvfrom(65535)
                    answer = {"from": f"{addr[0]}:{addr[1]}", "data": data.decode(errors="replace")}
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
        line = _readline(self.proc.stdout, timeout)
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

    def bind(self, port: int = 0) -> int:
        return self.ask("bind", port=port)["port"]

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


# -- the delay relay (runs inside the core namespace) ---------------------------------------------


def relay_main(args: argparse.Namespace) -> int:
    """Hold every queued datagram for its (source IP, destination IP) delay, then accept it.

    Reads the table from the first line of stdin: {"SRC DST": seconds, ...}; prints "ready"
    when bound to the queue; runs until SIGTERM or stdin closes."""
    import asyncio
    import socket

    from netfilterqueue import COPY_PACKET, NetfilterQueue

    table = json.loads(sys.stdin.readline())
    delays: dict[bytes, float] = {}
    for key, value in table.items():
        src, dst = key.split()
        delays[socket.inet_aton(src) + socket.inet_aton(dst)] = float(value)
    loop = asyncio.new_event_loop()
    stats = {"packets": 0, "unknown": 0}

    def on_packet(pkt: Any) -> None:
        header = pkt.get_payload()
        delay = delays.get(header[12:20])
        stats["packets"] += 1
        if delay is None:
            stats["unknown"] += 1
            pkt.accept()
            return
        pkt.retain()
        loop.call_later(delay, pkt.accept)

    nfq = NetfilterQueue()
    # copy only the IPv4 header's first 20 bytes: the addresses are all the relay reads
    nfq.bind(args.queue, on_packet, max_len=65536, mode=COPY_PACKET, range=20)
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


# -- command line: kadtalk testbed ... ------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options describing a testbed (shared by `kadtalk testbed` and this module's CLI)."""
    parser.add_argument("--public", type=int, default=2, metavar="N",
                        help="public hosts pub1..pubN (default 2)")
    parser.add_argument("--nat", action="append", default=[], metavar="KIND[:HOSTS]",
                        help="a NAT of KIND filtering|full-cone|symmetric with HOSTS private hosts behind it "
                        "(default 1), named natI and natIhJ; repeatable. Behind a full-cone NAT, "
                        "host J of H is forwarded the J-th of H equal slices of ports 1024-65535")
    parser.add_argument("--delay", default="0", metavar="MS|coordinate[:SEED]",
                        help="one-way delay between sites: a constant in ms, or the simulator's "
                        "coordinate model (median RTT ~100 ms) placed with SEED (default 0: none)")
    parser.add_argument("--loss", type=float, default=0.0, metavar="P",
                        help="probability that a datagram crossing the core is dropped (default 0)")


def from_arguments(args: argparse.Namespace) -> Testbed:
    if args.delay.startswith("coordinate"):
        _, _, seed = args.delay.partition(":")
        delay: Any = CoordinateDelays(int(seed or 1))
    else:
        delay = float(args.delay) / 1000.0
    tb = Testbed(delay=delay, loss=args.loss)
    for i in range(1, args.public + 1):
        tb.public(f"pub{i}")
    for i, spec in enumerate(args.nat, 1):
        kind, _, count_text = spec.partition(":")
        tb.nat(f"nat{i}", kind)
        count = int(count_text or 1)
        share = (65535 - 1024 + 1) // count  # a full-cone NAT forwards each host a slice of ports
        for j in range(count):
            low = 1024 + j * share
            tb.private(f"nat{i}h{j + 1}", f"nat{i}", ports=(low, low + share - 1))
    return tb


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
    args = parser.parse_args(argv)
    return {"agent": agent_main, "relay": relay_main, "echo": echo_main, "probe": probe_main, "send": send_main}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
