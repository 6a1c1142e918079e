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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

NAT_KINDS = ("filtering", "full-cone", "symmetric")


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
    # symmetric: a random outside port for each new flow (endpoint-dependent mapping)
    out.append(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE",
                *(["--random-fully"] if nat.kind == "symmetric" else [])])
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
