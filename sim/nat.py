"""NAT in the simulated network: which inbound datagrams reach a node behind a NAT.

Three kinds of node (RFC 4787 terms; one UDP port a node, so "address" means the node's address):

- OPEN: a public address; everything reaches it.
- FULL_CONE: endpoint-independent mapping and filtering. Once the node has sent a datagram (to
  anyone), anyone can reach it, until `timeout` seconds pass without the node sending anything.
- FILTERING: endpoint-independent mapping, address-dependent filtering (a "restricted cone"):
  only addresses the node has sent to within the last `timeout` seconds can reach it. Replies
  to its own requests get through; unsolicited requests from anyone else are dropped.

- SYMMETRIC: endpoint-dependent mapping (a new outside port for every destination) with the
  same filtering. Addresses in the simulator are node numbers without ports, so the port's
  effect is modelled where it decides an outcome (docs/testbed.md, the NAT combination table):
  replies on a flow the node opened get through (routing answers, a callee's KEY_RES);
  session datagrams (types 0x02-0x05, 0x07) get through only once the node has sent a session
  datagram to their sender (a caller's KEY_REQ opens the flow its answers come back on; a
  callee's address as found by a lookup is the port towards somebody else, so a KEY_REQ sent
  there never reaches a symmetric callee). Its PUNCH opens yet another port, towards the
  caller: the caller sees the PUNCH come from that flow address and a session datagram it sends
  there passes (`through_flow`: the peer-reflexive address of node/stack.py). An address observed by a
  third party (a rendezvous, an address probe) carries the port of the flow towards that
  party: transport/sim.py hands traversal datagrams in from flow addresses (sim/registry.py,
  `flow_port`) and drops those sent to a port whose flow belongs to someone else.

Relays (type 0x08, node/relay/): a relay's datagrams reach a NATed node as any answer does,
once the node has sent to the relay within `timeout` (its HELLO, ALLOCATE and the REFRESH every
20 s for an owner; a KNOCK and DATA for the permitted peer). Behind a symmetric NAT the relay
sees the node at the port of the flow towards itself and answers there, which the model's plain
address stands for: relayed DATA is not a session datagram (0x02-0x05, 0x07), so it needs no
session flow. The one path a relay cannot open is to a node that never sent it anything.

Full-cone and filtering mappings keep the address the node sends from (endpoint-independent
mapping), so the address others learn from its packets stays valid: this is the design's
assumption (a sender's address is the one its packets come from).

Refresh (RFC 4787 REQ-6, outbound refresh): a full-cone mapping is refreshed by any datagram
the node sends, to anyone, so one keep-alive keeps it open to everybody. A filtering node's
permission for a peer lasts `timeout` after the node last sent to that very peer: a timer per
peer, as a Linux conntrack-based router keeps one per flow. RFC 4787's own model is looser
(the filter admits any host the mapping has ever sent to, for as long as the mapping lives);
the per-peer timer is the harder case, and the one the node's keep-alive plan is built for
(docs/protocol.md §20: a keep-alive to each rendezvous peer).

`timeout` defaults to 120 s, the least RFC 4787 (REQ-5) allows for a UDP mapping; measured
home gateways often use less (Hätönen et al., "An experimental study of home gateway
characteristics", IMC 2010), so it is worth sweeping.

State: one byte a node for its kind (only when NAT is on); a NATed node's mapping state is
allocated when it first sends: the time of its last datagram (full cone) or a dict of
{peer address: last time sent} (filtering), pruned of expired entries as it grows.

Address families (`DualStackNat`, issue 13): a host is IPv4-only (behind its NAT kind, as
above), IPv6-only (no IPv4 address: its NAT kind is drawn but unused) or dual-stack (IPv4 behind
its NAT kind, and IPv6). IPv6 has no NAT: a host's IPv6 address is its own. A share of the
hosts with IPv6 sit behind a stateful IPv6 firewall, the home router's default (RFC 6092 REC-11:
"outbound-only"; Linux's ip6tables `-m conntrack --ctstate ESTABLISHED,RELATED`, CPEs after
RFC 7084): inbound UDP passes only from an address and port the host has sent to within
`timeout` (RFC 6092 REC-12: no less than two minutes; the IPv4 mappings' timeout is used), a
timer per peer, as FILTERING has. A host on a public IPv4 address (a server, a public peer) has
an open IPv6 address too. In the network's integers a node's IPv6 endpoint is `node | V6`
(sim/dualstack.py turns it into the (IPv6 host, port) tuple node code sees); a datagram goes
between two IPv6 endpoints or two IPv4 ones, never across.
"""

from __future__ import annotations

import math
from random import Random

from kadtalk.sim.registry import FLOW_PORTS

OPEN, FULL_CONE, FILTERING, SYMMETRIC = 0, 1, 2, 3
KIND_NAMES = ("open", "full_cone", "filtering", "symmetric")
SESSION_TYPES = frozenset((0x02, 0x03, 0x04, 0x05, 0x07))  # first bytes of session datagrams
_PRUNE_EVERY = 256  # a filtering node's peer dict is pruned each time it grows past a multiple


# Address families of a host, and its IPv6 endpoint in the simulated network's integers
V4_ONLY, V6_ONLY, DUAL_STACK = 0, 1, 2
FAMILY_NAMES = ("v4", "v6", "dual")
V6 = 1 << 48  # above every IPv4 address and flow address (sim/registry.py: below 2^40)
NODE_MASK = V6 - 1


class NatTable:
    """Kinds of every node and the NAT mappings of those that have sent something."""

    __slots__ = ("kinds", "timeout", "filtered", "_last_out", "_peers", "_session_peers")

    def __init__(self, timeout: float = 120.0):
        if timeout <= 0:
            raise ValueError("the NAT mapping timeout must be positive")
        self.kinds = bytearray()  # address -> OPEN | FULL_CONE | FILTERING
        self.timeout = timeout
        self.filtered = 0  # inbound datagrams dropped by a NAT
        self._last_out: dict[int, float] = {}  # full-cone node -> time it last sent
        self._peers: dict[int, dict[int, float]] = {}  # filtering node -> {peer: time last sent to}
        self._session_peers: dict[int, dict[int, float]] = {}  # symmetric node -> session flows

    def add_node(self, rng: Random, full_cone: float, filtering: float,
                 symmetric: float = 0.0) -> int:
        """Place the next address behind a full-cone NAT with probability `full_cone`, behind a
        filtering NAT with probability `filtering`, behind a symmetric one with probability
        `symmetric`, else on a public address (one draw a node, whatever the shares)."""
        draw = rng.random()
        if draw < full_cone:
            kind = FULL_CONE
        elif draw < full_cone + filtering:
            kind = FILTERING
        elif draw < full_cone + filtering + symmetric:
            kind = SYMMETRIC
        else:
            kind = OPEN
        self.kinds.append(kind)
        return kind

    def forget(self, addr: int) -> None:
        """The node at `addr` left: its NAT drops the mappings (a new session starts closed)."""
        self._last_out.pop(addr, None)
        self._peers.pop(addr, None)
        self._session_peers.pop(addr, None)

    def outbound(self, src: int, dst: int, now: float, payload: object = None) -> None:
        """`src` sends `payload` to `dst`: open or refresh `src`'s mapping."""
        kind = self.kinds[src]
        if not kind:
            return
        if kind == FULL_CONE:
            self._last_out[src] = now
            return
        if kind == SYMMETRIC and _is_session(payload):
            self._remember(self._session_peers, src, dst, now)
        self._remember(self._peers, src, dst, now)

    def _remember(self, table: dict[int, dict[int, float]], src: int, dst: int,
                  now: float) -> None:
        peers = table.get(src)
        if peers is None:
            peers = table[src] = {}
        fresh = dst not in peers
        peers[dst] = now
        if fresh and len(peers) % _PRUNE_EVERY == 0:
            oldest = now - self.timeout
            for peer in [p for p, t in peers.items() if t < oldest]:
                del peers[peer]

    def admits(self, dst: int, src: int, now: float, payload: object = None) -> bool:
        """Does a datagram (`payload`) from `src` reach `dst` at `now`?"""
        kind = self.kinds[dst]
        if not kind:
            return True
        if kind == FULL_CONE:
            last = self._last_out.get(dst)
        else:
            table = self._session_peers if kind == SYMMETRIC and _is_session(payload) else self._peers
            peers = table.get(dst)
            last = peers.get(src) if peers is not None else None
        return last is not None and now - last <= self.timeout

    def through_flow(self, addr: int, peer: int, now: float, payload: object = None) -> None:
        """`peer` sends `payload` to `addr`'s flow address towards it (sim/registry.py): the
        port `addr`'s NAT opened for its own datagrams to `peer` (a callee's PUNCH, seen by
        the caller: a peer-reflexive address, node/stack.py). That mapping carries whatever
        `peer` sends while it lives, session datagrams too: from then on they pass as on a
        session flow (the model names no ports: `_session_peers`)."""
        if self.kinds[addr] != SYMMETRIC or not _is_session(payload):
            return
        peers = self._peers.get(addr)
        opened = peers.get(peer) if peers is not None else None
        if opened is None or now - opened > self.timeout:
            return  # no flow towards `peer`: its NAT drops the datagram
        flows = self._session_peers.get(addr)
        if flows is None or flows.get(peer, -math.inf) < opened:
            self._remember(self._session_peers, addr, peer, opened)

    def flow_port(self, addr: int, peer: int) -> int | None:
        """The outside port `addr`'s NAT gives its flow towards `peer`: None (the node's one
        port) unless `addr` is behind a symmetric NAT. Deterministic, in FLOW_PORTS."""
        if self.kinds[addr] != SYMMETRIC:
            return None
        ports = FLOW_PORTS
        return ports.start + (addr * 2_654_435_761 + peer * 40_503) % len(ports)

    def mapped(self) -> int:
        """NATed nodes that hold mapping state now (for memory accounting)."""
        return len(self._last_out) + len(self._peers)


def _is_session(payload: object) -> bool:
    return type(payload) is bytes and len(payload) > 0 and payload[0] in SESSION_TYPES


class DualStackNat(NatTable):
    """A NatTable whose hosts also have address families (module docstring): `families[node]`
    (V4_ONLY, V6_ONLY, DUAL_STACK) and `firewalled[node]` (1: a stateful IPv6 firewall; only for
    hosts with IPv6). IPv4 datagrams follow the NAT rules; IPv6 ones (`node | V6` at both ends)
    the firewall's: an open IPv6 host takes everything, a firewalled one only what comes from a
    peer it sent to within `timeout`."""

    __slots__ = ("families", "firewalled", "_v6_peers")

    def __init__(self, timeout: float = 120.0):
        super().__init__(timeout)
        self.families = bytearray()
        self.firewalled = bytearray()
        self._v6_peers: dict[int, dict[int, float]] = {}  # firewalled node -> {v6 peer: time}

    def add_family(self, rng: Random, v6_only: float, dual_stack: float,
                   firewall: float) -> int:
        """The next host's family: IPv6-only with probability `v6_only`, dual-stack with
        probability `dual_stack`, else IPv4-only (one draw); then, if it has IPv6 and is not
        on a public IPv4 address, a firewall with probability `firewall` (a second draw, made
        for every host so that the shares move the draws of no other host). Call after its
        NAT kind is drawn (`add_node`)."""
        if not (0 <= v6_only and 0 <= dual_stack and v6_only + dual_stack <= 1
                and 0 <= firewall <= 1):
            raise ValueError("v6_only + dual_stack must be in [0, 1], firewall in [0, 1]")
        draw, walled = rng.random(), rng.random() < firewall
        node = len(self.families)
        family = V6_ONLY if draw < v6_only else DUAL_STACK if draw < v6_only + dual_stack \
            else V4_ONLY
        self.families.append(family)
        public = family == DUAL_STACK and self.kinds[node] == OPEN
        self.firewalled.append(int(walled and family != V4_ONLY and not public))
        return family

    def has_v4(self, node: int) -> bool:
        return self.families[node] != V6_ONLY

    def has_v6(self, node: int) -> bool:
        return self.families[node] != V4_ONLY

    def forget(self, addr: int) -> None:
        super().forget(addr)
        self._v6_peers.pop(addr, None)

    def outbound(self, src: int, dst: int, now: float, payload: object = None) -> None:
        if src < V6:
            NatTable.outbound(self, src, dst, now, payload)
        elif self.firewalled[src - V6]:
            self._remember(self._v6_peers, src - V6, dst, now)

    def admits(self, dst: int, src: int, now: float, payload: object = None) -> bool:
        if dst < V6:
            return NatTable.admits(self, dst, src, now, payload)
        node = dst - V6
        if not self.firewalled[node]:
            return True
        peers = self._v6_peers.get(node)
        last = peers.get(src) if peers is not None else None
        return last is not None and now - last <= self.timeout

    def mapped(self) -> int:
        return super().mapped() + len(self._v6_peers)
