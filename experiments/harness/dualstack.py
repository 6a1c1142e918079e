"""A study's world whose hosts have address families: IPv4-only, IPv6-only, dual-stack (issue 13).

SimWorld with sim/nat.py's `DualStackNat` (the NAT kinds the study drew, then each host's family
and IPv6 firewall from their own generator, "families": the NAT kinds, IDs and positions are
those of the same study without IPv6), sim/dualstack.py's registry and driver, and each node's
`RoutingSettings.ipv6` set when its host has IPv6 (as transport/udp.py sets it for a socket
with an IPv6 route). Node 0, the first bootstrap, is dual-stack and public on both families.

Joins are the protocol's (bootstrap "protocol"): a newcomer joins through a joined node it
shares a family with, at that node's IPv6 address when both have IPv6 (a resolver's answer
with both, IPv6 first: RFC 6724), else its IPv4 one. An IPv6-only host without a firewall is
told it is open (`tell_open`): it relays for others, as a public IPv4 host does. Tables loaded by the fast bootstrap would
hold every contact at its IPv4 number, which an IPv6-only node cannot reach. Not modelled: churn
(a returning node would rejoin through any node), the traffic tap, the directory baseline.
"""

from __future__ import annotations

import dataclasses
from random import Random
from typing import Any

from kadtalk.experiments import realism
from kadtalk.experiments.harness.world import SimWorld
from kadtalk.node.stack import Node
from kadtalk.sim.dualstack import DualStackDriver, DualStackRegistry, MaskedLatency
from kadtalk.sim.nat import DUAL_STACK, OPEN, DualStackNat
from kadtalk.sim.network import make_network

_TRIES = 64  # draws of a joined node sharing a family before falling back on node 0


def check(spec: Any) -> None:
    """What a world with address families cannot run (ValueError naming it)."""
    if spec.wire_mode != "bytes":
        raise ValueError("IPv6 hosts need wire 'bytes' (the codec decides which contacts travel)")
    if spec.bootstrap != "protocol":
        raise ValueError("IPv6 hosts need bootstrap 'protocol' (loaded tables are IPv4)")
    if spec.churn != "none" or spec.traffic:
        raise ValueError("IPv6 hosts are not modelled with churn or the traffic tap")


class DualStackWorld(SimWorld):
    # Whether nodes with IPv6 take, prove and name the other addresses dual-stack entries
    # announce (`RoutingSettings.other_addresses`): None keeps the node's own default (the
    # routing settings' default, as a daemon runs), True / False set it (the families study's
    # `--other-addresses` / `--no-other-addresses`); a study spec with a field of that name wins.
    other_addresses: bool | None = None

    def __init__(self, spec: Any, v6_only: float, dual_stack: float, firewall: float,
                 **kwargs: Any):
        check(spec)
        super().__init__(spec, **kwargs)
        nat = DualStackNat(spec.nat_timeout)
        drawn = self.realism.nat
        nat.kinds = drawn.kinds if drawn is not None else bytearray(spec.nodes)
        rng = realism.feature_rng(spec.seed, "families")
        for _ in range(spec.nodes):
            nat.add_family(rng, v6_only, dual_stack, firewall)
        nat.kinds[0], nat.families[0], nat.firewalled[0] = OPEN, DUAL_STACK, 0
        self.realism.nat = nat
        self.network = make_network(self.env, MaskedLatency(self.latency),
                                    Random(self.plan.network_seed), loss=spec.loss, nat=nat)
        self.registry = DualStackRegistry(self.ids)
        self.driver = DualStackDriver(self.env, self.network, self._on_event,
                                      traversal=kwargs.get("traversal", False))
        self.nat = nat
        other = getattr(spec, "other_addresses", self.other_addresses)
        self.settings6 = dataclasses.replace(
            self.settings, ipv6=True,
            other_addresses=self.settings.other_addresses if other is None else bool(other))
        make = self.new_node  # routing_node, or the study's (identities, traversal)
        self.new_node = lambda addr, now: self.announcing(make(addr, now), addr)

    def announcing(self, node: Node, addr: int) -> Node:
        """A dual-stack node announces its IPv6 address in its requests over IPv4, as a daemon
        does from its start (`Node.set_nat`'s own addresses; protocol section 23, "The other
        address")."""
        if self.nat.has_v4(addr) and self.nat.has_v6(addr):
            node.routing.announce(self.driver.v6_of(addr))
        return node

    def settings_for(self, addr: int) -> Any:
        """The routing settings of the node at `addr`: asking for IPv6 contacts if it has IPv6."""
        return self.settings6 if self.nat.has_v6(addr) else self.settings

    def routing_node(self, addr: int, now: float) -> Node:
        return Node(self.ids[addr], self.registry, self.node_rng, self.settings_for(addr), now)

    def address_for(self, peer: int, of: int) -> Any | None:
        """The address node `of` reaches node `peer` at: IPv6 when both have it, else IPv4;
        None when they share no family."""
        nat = self.nat
        if nat.has_v6(peer) and nat.has_v6(of):
            return self.driver.v6_of(peer)
        return peer if nat.has_v4(peer) and nat.has_v4(of) else None

    def tell_open(self, addr: int) -> None:
        """An IPv6-only host with no firewall is told it is open (`Node.set_nat` "none", its
        IPv6 address its own), as an IPv4 host on a public address learns from its address
        probe: it relays for others (with relays on) and keeps few keep-alives. The simulator
        knows; a daemon cannot tell yet (PROBE_* are IPv4: docs/results.md "IPv6 hosts"), so
        an IPv6-only daemon holds relays (`Node.v6_only`) and relays for nobody."""
        node, nat = self.driver.nodes[addr], self.nat
        if node is None or node.traversal is None or nat.has_v4(addr) or nat.firewalled[addr]:
            return
        v6 = self.driver.v6_of(addr)
        if node.relay is not None:
            node.set_nat("none", v6, own=(v6,))
        else:
            node.traversal.set_nat("none")

    def join_through_known(self, addr: int) -> None:
        node = self.driver.nodes[addr]
        if node is None:
            return
        bootstrap = None
        for _ in range(_TRIES):
            bootstrap = self.address_for(self.joined[self.rng.randrange(len(self.joined))], addr)
            if bootstrap is not None:
                break
        if bootstrap is None:
            bootstrap = self.address_for(0, addr)  # dual-stack, public on both
        self.tell_open(addr)
        node.join([bootstrap], self.env.now)
        self.driver.service(addr)
