"""IPv6 in the simulated network: the addresses node code sees, and the driver that carries both
families (issue 13; the hosts' families and the IPv6 firewall are sim/nat.py's `DualStackNat`).

Node code knows an IPv6 address by its form, an (IPv6 host, port) tuple (kadtalk.node.addresses
`is_ipv6`): routing asks for ROUTE6_RES and carries such contacts (§23), traversal refuses them,
relays use their 18-byte fields (§21). So a simulated node with IPv6 is given real tuples: node
n's is `v6_address(n)`, fd00:0:H:L::1 port 5004 with H = n >> 8 and L = n & 0xff, so that each
node has a /64 of its own (a host, to the limits) and 256 nodes share a /48 (a network), as 256
share an IPv4 /24 (sim/registry.py); the IPv4 side stays the integers of sim/registry.py. Both
families are private on the wire (10.0.0.0/8 and unique-local fd00::/8), standing for public
addresses alike: the simulated relays forward to private peers (`forward_private`), and a relay
names its private other-family address only to a private owner (node/relay/server.py), so an
IPv6 range the relays take for public (2001:db8::/32, until session 9) left every IPv6-only
owner without its relay's IPv4 side, and IPv6-only -> IPv4-only calls unreachable.

`DualStackRegistry` interns tuples as the registry interns any address no honest node has (an
extra handle) and gives them no IPv4 wire form. `DualStackDriver` turns a tuple destination into
the network's integer `node | V6` and an IPv6 arrival's source back into the tuple; it drops,
and counts in `no_route`, a datagram of a family its sender lacks (an IPv6-only host has no IPv4
route: the daemon's sendto fails) or its receiver lacks (no IPv4 host at an IPv6-only node's
number). Each datagram then meets sim/nat.py's rules for its family. The byte codec is needed
(wire "bytes"): which contacts a ROUTE_RES or ROUTE6_RES carries is decided there.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any

from kadtalk.node.addresses import subnet_key
from kadtalk.sim.nat import NODE_MASK, V6, DualStackNat
from kadtalk.sim.registry import MAX_NODES, SIM_PORT, SharedRegistry
from kadtalk.transport.sim import SimDriver

_BASE6 = int(ipaddress.IPv6Address("fd00::1"))  # unique-local: private, as 10.0.0.0/8


def v6_address(node: int) -> tuple[str, int]:
    """Node `node`'s IPv6 address (canonical text, as the UDP driver gives node code)."""
    return str(ipaddress.IPv6Address(_BASE6 | (node >> 8) << 80 | (node & 0xFF) << 64)), SIM_PORT


class DualStackRegistry(SharedRegistry):
    """The shared registry, with (IPv6 host, port) tuples as addresses too."""

    __slots__ = ()
    holds_ipv6 = True

    def intern(self, node_id: int, addr: Any) -> int:
        if type(addr) is int:
            return SharedRegistry.intern(self, node_id, addr)
        if self._extra is None:
            self._extra, self._extra_at = {}, {}
        key = (node_id, addr)
        handle = self._extra.get(key)
        if handle is None:
            handle = self._extra[key] = len(self.ids)
            self.ids.append(node_id)
            self.addrs.append(addr)
            self._extra_at.setdefault(addr, []).append(handle)
        return handle

    def handles_at(self, addr: Any) -> list[int]:
        if type(addr) is int:
            return SharedRegistry.handles_at(self, addr)
        return list(self._extra_at.get(addr, ())) if self._extra_at else []

    def subnet(self, addr: Any) -> Any:
        return SharedRegistry.subnet(self, addr) if type(addr) is int else subnet_key(addr[0])

    @staticmethod
    def addr_to_wire(addr: Any) -> bytes | None:
        """IPv4 (6 bytes) as sim/registry.py has it; None for IPv6 (as ContactRegistry's)."""
        return SharedRegistry.addr_to_wire(addr) if type(addr) is int else None


class MaskedLatency:
    """A latency model for the network's integers: an IPv6 endpoint sits where its node does."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any):
        self.inner = inner

    def delay(self, src: int, dst: int) -> float:
        return self.inner.delay(src & NODE_MASK, dst & NODE_MASK)


class DualStackDriver(SimDriver):
    """SimDriver for hosts with address families (module docstring). Bytes only."""

    def __init__(self, env: Any, network: Any, on_event: Any = None, traversal: bool = False):
        if not isinstance(network.nat, DualStackNat):
            raise ValueError("a dual-stack driver needs a DualStackNat on its network")
        super().__init__(env, network, on_event, wire="bytes", traversal=traversal)
        self._receive4 = network.receiver  # SimDriver's, for IPv4 arrivals
        network.receiver = self._receive
        self.nat: DualStackNat = network.nat
        self.no_route = 0  # datagrams of a family the sender or the receiver does not have
        self._v6_of: dict[int, tuple[str, int]] = {}
        self._node_of: dict[tuple[str, int], int] = {}
        for node, family in enumerate(self.nat.families):
            if self.nat.has_v6(node):
                addr = v6_address(node)
                self._v6_of[node], self._node_of[addr] = addr, node

    def v6_of(self, node: int) -> tuple[str, int] | None:
        """Node `node`'s IPv6 address, None if it has none."""
        return self._v6_of.get(node)

    def node_of(self, addr: Any) -> int | None:
        """The node at a simulated address of either family (IPv4: the node's number)."""
        return addr & (MAX_NODES - 1) if type(addr) is int else self._node_of.get(addr)

    def _route(self, addr: int, out: list) -> None:
        """As SimDriver._route, with each datagram routed by its destination's family."""
        nat, send = self.nat, self.network.send
        attached = len(self.nodes)
        for payload, dst in out:
            if dst.__class__ is tuple:
                peer = self._node_of.get(dst)
                if peer is None or peer >= attached:
                    self.unroutable += 1
                elif not nat.has_v6(addr):
                    self.no_route += 1
                else:
                    send(addr | V6, peer | V6, payload)
            elif not nat.has_v4(addr):
                self.no_route += 1  # an IPv6-only host has no IPv4 route
            elif 0 <= dst < attached:
                if nat.has_v4(dst):
                    send(addr, dst, payload)
                else:
                    self.no_route += 1  # no IPv4 host there: an IPv6-only node's number
            elif dst >= MAX_NODES:
                self._send_to_flow(addr, dst, payload)
            else:
                self.unroutable += 1

    def _receive(self, dst: int, payload: Any, src: int) -> None:
        """An arrival: IPv4 as SimDriver has it; IPv6 from the sender's tuple."""
        if dst < V6:
            self._receive4(dst, payload, src)
            return
        node = self.nodes[dst - V6]
        if node is None:
            return
        node.receive_datagram(payload, self._v6_of[src - V6], self.env.now)
        self.service(dst - V6)

    def send(self, src: int, dst: int, payload: Any) -> None:
        raise NotImplementedError("code beside a node (a directory) is not modelled with IPv6")


def summary(driver: DualStackDriver) -> dict[str, Any]:
    """The families' figures for a study's summary."""
    nat = driver.nat
    n = len(nat.families)
    share = (lambda count: count / n) if n else (lambda count: math.nan)
    return {
        "v6_only_share": share(sum(f == 1 for f in nat.families)),
        "dual_stack_share": share(sum(f == 2 for f in nat.families)),
        "v6_firewalled_share": share(sum(nat.firewalled)),
        "no_route": driver.no_route,
    }
