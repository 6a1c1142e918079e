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
"""

from __future__ import annotations

import math
from random import Random

from kadtalk.sim.registry import FLOW_PORTS

OPEN, FULL_CONE, FILTERING, SYMMETRIC = 0, 1, 2, 3
KIND_NAMES = ("open", "full_cone", "filtering", "symmetric")
SESSION_TYPES = frozenset((0x02, 0x03, 0x04, 0x05, 0x07))  # first bytes of session datagrams
_PRUNE_EVERY = 256  # a filtering node's peer dict is pruned each time it grows past a multiple


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
