"""Network namespaces and links: the testbed's hosts, NATs and core router, and running
processes in them. The package's doc and docs/testbed.md describe the whole.

    with Testbed(delay=CoordinateDelays(seed=1), loss=0.05) as tb:   # or delay=0.05 (one way)
        a = tb.public("a")                    # a public host: its own address on the core
        tb.nat("home", kind="filtering")      # a NAT namespace (nat.py)
        b = tb.private("b", nat="home")       # a host behind it, on its own private LAN
        ...

is the description; the namespaces exist between `__enter__` and `__exit__` (or `up()` and
`down()`). Hosts are added before entering. Address plan (every name lives in its own
namespace ``<prefix>-<pid>-<n>-<name>``, so nothing touches the machine's own network):

- core: a router (IPv4 and IPv6 forwarding). Site i (a public host or a NAT) hangs off it
  through a veth pair: core side ``v<i>`` = 198.18.<i+1>.1/24 and 2001:db8:<i+1>::1/64, site
  side ``wan`` = 198.18.<i+1>.2/24 (and 2001:db8:<i+1>::2/64 when the site has IPv6).
  198.18.0.0/15 (RFC 2544, for testing) and 2001:db8::/32 (RFC 3849, documentation) are public
  in kadtalk's eyes: neither private (relays refuse to forward into RFC 1918 ranges) nor special.
- a public host's address is 198.18.<i+1>.2 (IPv4) and/or 2001:db8:<i+1>::2 (IPv6); a NAT's
  outside address is its 198.18.<i+1>.2.
- host j behind a NAT: a veth pair, NAT side ``l<j>`` = 192.168.<j>.1/24 (100.64.<j>.1/24 for
  a carrier-grade NAT), host side ``wan`` = 192.168.<j>.2/24 (100.64.<j>.2). Every NAT reuses the
  same private ranges, as home routers do. A host behind a NAT with `ipv6=True` also gets a
  routed, public 2001:db8:<i+1>:<j>::2/64 (no NAT, no filter for IPv6: "public v6").

Teardown kills every process left in the testbed's namespaces (by pid, from ``ip netns pids``)
and deletes the namespaces, even after an exception or SIGTERM (tools.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from . import relay
from .delays import delay_model, loss_rule, pair_table
from .nat import NAT_KINDS, Nat, lan_prefix, nat_rules, port_range
from .probes import Agent
from .tools import (
    PREFIX,
    TestbedError,
    kill_namespace,
    netfilterqueue_reason,
    new_tag,
    sh,
    stop,
    unavailable_reason,
)

_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


@dataclass
class Host:
    name: str
    namespace: str
    address: str  # the host's own address: IPv4 (private behind a NAT), IPv6 if it has no IPv4
    public_address: str  # where others reach it: its own, or its NAT's outside address
    nat: str | None = None
    site: int = 0  # index of the core link it sits behind (its own, or its NAT's)
    ports: tuple[int, int] = (1024, 65535)
    address4: str | None = None  # its IPv4 address (None: IPv6-only)
    address6: str | None = None  # its public IPv6 address (None: IPv4-only)
    nat_kind: str | None = None  # the kind of the NAT it sits behind

    @property
    def kind(self) -> str:
        """public-v4 | dual-stack | v6-only | public-v6 (IPv4 behind a NAT, public IPv6) | the
        kind of its NAT (IPv4 only behind it)."""
        if self.nat is None:
            families = (self.address4 is not None, self.address6 is not None)
            return {(True, False): "public-v4", (True, True): "dual-stack",
                    (False, True): "v6-only"}[families]
        return "public-v6" if self.address6 else str(self.nat_kind)


class Testbed:
    """Public hosts, NATs and hosts behind them around one core router; see the module doc."""

    __test__ = False  # not a pytest test class

    def __init__(self, delay: Any = None, loss: float = 0.0, prefix: str = PREFIX,
                 queue: int | None = None, python: str = sys.executable):
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        self.delay = delay_model(delay)
        self.loss = loss
        self.tag = new_tag(prefix)
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

    def public(self, name: str, ipv4: bool = True, ipv6: bool = False) -> Host:
        """A host with its own address(es) on the core: IPv4 (default), IPv6, or both
        (dual-stack); IPv6 alone is an IPv6-only host."""
        if not (ipv4 or ipv6):
            raise ValueError("a host needs IPv4, IPv6 or both")
        self._check_name(name)
        site = len(self.sites)
        self.sites.append(name)
        v4 = self.site_address(site) if ipv4 else None
        v6 = self.site_address6(site) if ipv6 else None
        host = Host(name, f"{self.tag}-{name}", v4 or v6, v4 or v6, None, site,
                    address4=v4, address6=v6)
        self.hosts[name] = host
        return host

    def nat(self, name: str, kind: str = "filtering") -> Nat:
        """A NAT router on the core; add hosts behind it with `private(..., nat=name)`."""
        if kind not in NAT_KINDS:
            raise ValueError(f"NAT kind must be one of {', '.join(NAT_KINDS)}")
        self._check_name(name)
        site = len(self.sites)
        self.sites.append(name)
        nat = Nat(name, f"{self.tag}-{name}", kind, self.site_address(site), site)
        self.nats[name] = nat
        return nat

    def private(self, name: str, nat: str, ports: Any = (1024, 65535), ipv6: bool = False) -> Host:
        """A host behind NAT `nat`. For a full-cone NAT, `ports` (a port, 'LOW:HIGH' or a pair)
        are the UDP ports forwarded to it; the ranges of one NAT's hosts must not overlap.
        `ipv6`: it also has a public IPv6 address, routed through the NAT router unfiltered
        (as an ISP that gives a home native IPv6 next to NATed IPv4)."""
        self._check_name(name)
        if nat not in self.nats:
            raise ValueError(f"no NAT named {nat!r}")
        owner = self.nats[nat]
        low, high = port_range(ports)
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port range {ports!r}")
        for other in owner.hosts:
            olow, ohigh = self.hosts[other].ports
            if owner.kind == "full-cone" and low <= ohigh and olow <= high:
                raise ValueError(f"ports of {name!r} overlap those of {other!r} behind {nat!r}")
        lan = len(owner.hosts) + 1
        inside = f"{lan_prefix(owner.kind)}.{lan}.2"
        v6 = f"2001:db8:{owner.site + 1:x}:{lan:x}::2" if ipv6 else None
        host = Host(name, f"{self.tag}-{name}", inside, owner.address, nat,
                    owner.site, (low, high), address4=inside, address6=v6, nat_kind=owner.kind)
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
        sh(["ip", "netns", "add", name])
        self._namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, namespace: str, *args: str) -> None:
        sh(["ip", "-n", namespace, *args])

    def ns_sh(self, namespace: str, *argv: str) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", namespace, *argv])

    def _build(self) -> None:
        core = self._add_namespace(self.core)
        self.ns_sh(core, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns_sh(core, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for site, name in enumerate(self.sites):
            ns = self._add_namespace(f"{self.tag}-{name}")
            host = self.hosts.get(name)
            nat = self.nats.get(name)
            v4 = host is None or host.address4 is not None
            v6 = (host.address6 is not None) if host else any(
                self.hosts[h].address6 for h in nat.hosts)
            self._link(core, f"v{site}", ns,
                       (f"198.18.{site + 1}.1", self.site_address(site)) if v4 else None,
                       (f"2001:db8:{site + 1:x}::1", self.site_address6(site)) if v6 else None)
            if nat is not None and v6:  # the NAT router routes its hosts' IPv6 prefixes
                self.ip(core, "-6", "route", "add", f"2001:db8:{site + 1:x}::/48",
                        "via", self.site_address6(site))
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
                       if "NO-CARRIER" in sh(["ip", "-n", ns, "-o", "link"]).stdout]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TestbedError(f"links without carrier after {timeout} s in {', '.join(waiting)}")
            time.sleep(0.01)  # poll the kernel's link state while building

    def _build_nat(self, nat: Nat) -> None:
        ns = nat.namespace
        self.ns_sh(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns_sh(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for lan, name in enumerate(nat.hosts, 1):
            host = self.hosts[name]
            gateway6 = f"2001:db8:{nat.site + 1:x}:{lan:x}::1"
            self._link(ns, f"l{lan}", self._add_namespace(host.namespace),
                       (f"{lan_prefix(nat.kind)}.{lan}.1", host.address),
                       (gateway6, host.address6) if host.address6 else None)
        hosts = [self.hosts[name] for name in nat.hosts]
        for argv in nat_rules(nat, [(host.address, host.ports) for host in hosts]):
            self.ns_sh(ns, *argv)

    def _link(self, router: str, port: str, inner: str, v4: tuple[str, str] | None,
              v6: tuple[str, str] | None) -> None:
        """A veth pair: `port` in namespace `router`, ``wan`` in namespace `inner`. `v4` =
        (gateway, address): gateway/24 on `port`, address/24 on ``wan``, the default route via
        the gateway; `v6` the same with /64 (no duplicate address detection: usable at once)."""
        self.ip(router, "link", "add", port, "type", "veth", "peer", "name", "wan", "netns", inner)
        if v6 is None:  # an IPv4-only link: no IPv6 at all on it (not even link-local)
            for ns, dev in ((router, port), (inner, "wan")):
                self.ns_sh(ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        if v4 is not None:
            self.ip(router, "addr", "add", f"{v4[0]}/24", "dev", port)
            self.ip(inner, "addr", "add", f"{v4[1]}/24", "dev", "wan")
        if v6 is not None:
            self.ip(router, "-6", "addr", "add", f"{v6[0]}/64", "dev", port, "nodad")
            self.ip(inner, "-6", "addr", "add", f"{v6[1]}/64", "dev", "wan", "nodad")
        self.ip(router, "link", "set", port, "up")
        self.ip(inner, "link", "set", "wan", "up")
        if v4 is not None:
            self.ip(inner, "route", "add", "default", "via", v4[0])
        if v6 is not None:
            self.ip(inner, "-6", "route", "add", "default", "via", v6[0])

    def site_address(self, site: int) -> str:
        return f"198.18.{site + 1}.2"

    def site_address6(self, site: int) -> str:
        return f"2001:db8:{site + 1:x}::2"

    def site_addresses(self, site: int) -> list[str]:
        """Every address at site `site` as the core sees it: the site's IPv4 address and the
        IPv6 addresses of its hosts (the delay relay's table keys)."""
        name = self.sites[site]
        hosts = [self.hosts[name]] if name in self.hosts else [
            self.hosts[h] for h in self.nats[name].hosts]
        v4 = [] if name in self.hosts and self.hosts[name].address4 is None else [
            self.site_address(site)]
        return v4 + [h.address6 for h in hosts if h.address6]

    def _start_delay_and_loss(self) -> None:
        core = self.core
        if self.loss > 0:
            for tool in ("iptables", "ip6tables"):
                self.ns_sh(core, *loss_rule(self.loss, tool))
        if self.delay is None:
            return
        self.delays = self.delay.matrix(len(self.sites))
        table = pair_table(self.delays, self.site_addresses)
        self._relay = relay.start(core, self.python, self.queue, table)
        for tool in ("iptables", "ip6tables"):
            self.ns_sh(core, *relay.queue_rule(self.queue, tool))

    def set_loss(self, loss: float) -> None:
        """Change the core's loss while the testbed is up (e.g. a network formed without loss,
        then a call under it): the old rule goes, the new one is put before the delay relay's."""
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        for tool in ("iptables", "ip6tables"):
            if self.loss > 0:
                self.ns_sh(self.core, *loss_rule(self.loss, tool, "-D"))
            if loss > 0:
                self.ns_sh(self.core, *loss_rule(loss, tool, "-I"))
        self.loss = loss

    def down(self) -> None:
        """Stop everything this testbed started and delete its namespaces (idempotent)."""
        try:
            stop(self._processes + ([self._relay] if self._relay else []))
        finally:
            for name in reversed(self._namespaces):
                kill_namespace(name)
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
                               "address4": h.address4, "address6": h.address6, "kind": h.kind,
                               "nat": h.nat, "namespace": h.namespace}
                      for h in self.hosts.values()},
            "nats": {n.name: {"kind": n.kind, "address": n.address, "hosts": n.hosts}
                     for n in self.nats.values()},
            "sites": self.sites,
            "delays_ms": [[round(d * 1000, 3) for d in row] for row in self.delays],
            "loss": self.loss,
        }
