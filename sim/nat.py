"""NAT in the simulated network: which inbound datagrams reach a node behind a NAT.

Three kinds of node (RFC 4787 terms; one UDP port a node, so "address" means the node's address):

- OPEN: a public address; everything reaches it.
- FULL_CONE: endpoint-independent mapping and filtering. Once the node has sent a datagram (to
  anyone), anyone can reach it, until `timeout` seconds pass without the node sending anything.
- FILTERING: endpoint-independent mapping, address-dependent filtering (a "restricted cone"):
  only addresses the node has sent to within the last `timeout` seconds can reach it. Replies
  to its own requests get through; unsolicited requests from anyone else are dropped.

Mappings keep the address the node sends from (endpoint-independent mapping), so the address
others learn from its packets stays valid: this is the design's assumption (a sender's address
is the one its packets come from). Symmetric NATs, which change the mapping per destination,
are not modelled.

`timeout` defaults to 120 s, the least RFC 4787 (REQ-5) allows for a UDP mapping; measured
home gateways often use less (Hätönen et al., "An experimental study of home gateway
characteristics", IMC 2010), so it is worth sweeping.

State: one byte a node for its kind (only when NAT is on); a NATed node's mapping state is
allocated when it first sends: the time of its last datagram (full cone) or a dict of
{peer address: last time sent} (filtering), pruned of expired entries as it grows.
"""

from __future__ import annotations

from random import Random

OPEN, FULL_CONE, FILTERING = 0, 1, 2
KIND_NAMES = ("open", "full_cone", "filtering")
_PRUNE_EVERY = 256  # a filtering node's peer dict is pruned each time it grows past a multiple


class NatTable:
    """Kinds of every node and the NAT mappings of those that have sent something."""

    __slots__ = ("kinds", "timeout", "filtered", "_last_out", "_peers")

    def __init__(self, timeout: float = 120.0):
        if timeout <= 0:
            raise ValueError("the NAT mapping timeout must be positive")
        self.kinds = bytearray()  # address -> OPEN | FULL_CONE | FILTERING
        self.timeout = timeout
        self.filtered = 0  # inbound datagrams dropped by a NAT
        self._last_out: dict[int, float] = {}  # full-cone node -> time it last sent
        self._peers: dict[int, dict[int, float]] = {}  # filtering node -> {peer: time last sent to}

    def add_node(self, rng: Random, full_cone: float, filtering: float) -> int:
        """Place the next address behind a full-cone NAT with probability `full_cone`, behind a
        filtering NAT with probability `filtering`, else on a public address."""
        draw = rng.random()
        if draw < full_cone:
            kind = FULL_CONE
        elif draw < full_cone + filtering:
            kind = FILTERING
        else:
            kind = OPEN
        self.kinds.append(kind)
        return kind

    def forget(self, addr: int) -> None:
        """The node at `addr` left: its NAT drops the mappings (a new session starts closed)."""
        self._last_out.pop(addr, None)
        self._peers.pop(addr, None)

    def outbound(self, src: int, dst: int, now: float) -> None:
        """`src` sends to `dst`: open or refresh `src`'s mapping."""
        kind = self.kinds[src]
        if not kind:
            return
        if kind == FULL_CONE:
            self._last_out[src] = now
            return
        peers = self._peers.get(src)
        if peers is None:
            peers = self._peers[src] = {}
        fresh = dst not in peers
        peers[dst] = now
        if fresh and len(peers) % _PRUNE_EVERY == 0:
            oldest = now - self.timeout
            for peer in [p for p, t in peers.items() if t < oldest]:
                del peers[peer]

    def admits(self, dst: int, src: int, now: float) -> bool:
        """Does a datagram from `src` reach `dst` at `now`?"""
        kind = self.kinds[dst]
        if not kind:
            return True
        if kind == FULL_CONE:
            last = self._last_out.get(dst)
        else:
            peers = self._peers.get(dst)
            last = peers.get(src) if peers is not None else None
        return last is not None and now - last <= self.timeout

    def mapped(self) -> int:
        """NATed nodes that hold mapping state now (for memory accounting)."""
        return len(self._last_out) + len(self._peers)
