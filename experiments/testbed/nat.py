"""The NAT kinds of the testbed as iptables rules in a NAT namespace (see docs/testbed.md).

- ``filtering``: plain MASQUERADE. Linux conntrack keeps the source port while it is free
  (endpoint-independent mapping) and admits only replies from endpoints the host sent to
  (address-and-port-dependent filtering).
- ``full-cone``: MASQUERADE plus a DNAT of the host's UDP ports (``ports=``, default all
  unprivileged ones) on the outside address back to the host: endpoint-independent filtering.
  Unlike a real full-cone NAT that forward exists before the host first sends; after it has
  sent, the two behave the same.
- ``symmetric``: MASQUERADE --random-fully: a random outside port for each new flow
  (endpoint-dependent mapping), filtering as ``filtering``.
- ``cgn``: a carrier-grade NAT: the rules of ``symmetric`` in front of hosts in the shared
  range 100.64.0.0/10 (RFC 6598) instead of 192.168/16. Large CGNs map each flow anew as this
  one does (some keep endpoint-independent mapping; that case is ``filtering``).

IPv6 through a NAT router is routed, not translated nor filtered (`Testbed.private(ipv6=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

NAT_KINDS = ("filtering", "full-cone", "symmetric", "cgn")


def lan_prefix(kind: str) -> str:
    """The first two octets of the /24s behind a NAT of `kind` (one /24 per host)."""
    return "100.64" if kind == "cgn" else "192.168"


@dataclass
class Nat:
    name: str
    namespace: str
    kind: str
    address: str  # outside address
    site: int
    hosts: list[str] = field(default_factory=list)


def port_range(spec: Any) -> tuple[int, int]:
    """A port, 'LOW:HIGH' or a pair, as (low, high)."""
    if isinstance(spec, int):
        return spec, spec
    if isinstance(spec, str):
        low, _, high = spec.partition(":")
        return int(low), int(high or low)
    low, high = spec
    return int(low), int(high)


def nat_rules(nat: Nat, forwards: Sequence[tuple[str, tuple[int, int]]]) -> list[list[str]]:
    """The iptables command lines that make namespace `nat.namespace` a NAT of its kind, its
    outside link being ``wan``; `forwards` are (host address, (low, high) ports) of its hosts."""
    out = []
    if nat.kind == "full-cone":
        for address, (low, high) in forwards:
            out.append(["iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp",
                        "-d", nat.address, "--dport", f"{low}:{high}", "-j", "DNAT",
                        "--to-destination", address])
    # symmetric, cgn: a random outside port for each new flow (endpoint-dependent mapping)
    out.append(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE",
                *(["--random-fully"] if nat.kind in ("symmetric", "cgn") else [])])
    # nothing unsolicited gets through to the LAN except what a DNAT above forwards
    out.append(["iptables", "-A", "FORWARD", "-i", "wan", "-m", "conntrack", "--ctstate",
                "ESTABLISHED,RELATED,DNAT", "-j", "ACCEPT"])
    out.append(["iptables", "-A", "FORWARD", "-i", "wan", "-j", "DROP"])
    # and nothing unsolicited reaches the NAT itself, as home routers' firewalls do: else
    # conntrack records an unsolicited packet to the NAT's own address:port, and the host's
    # later flow to that sender is mapped to another port (no hole punching would work)
    out.append(["iptables", "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate",
                "NEW,INVALID", "-j", "DROP"])
    return out
