"""Traffic accounting: datagrams in the simulated network by message type and by purpose.

The routing layer's lookups serve a user (find_peer, find_closest), a join (a lookup of the
node's own ID) or a table refresh (a lookup of a random ID in an idle bucket, and after a join
of every bucket beyond the closest neighbour). Purposes are not on the wire, but they can be
read from it exactly enough:

- a ROUTE_REQ whose target is its origin's own ID serves a join, as does the ROUTE_RES to it
  (its target is the ID of the node it goes to); with `keyed_requests` a join's target differs
  from the ID in its last 64 bits only (RoutingSettings.keyed_requests), so the first 96 bits
  are compared;
- a target that some user lookup looked for (the study tells `user_targets`) serves a user;
- anything else serves a refresh: refresh targets are random 160-bit IDs, which collide with a
  node's ID or a user's target with probability ~2^-140.

The tap runs once per datagram sent, only when a study asks for traffic accounting: the
network calls it only when it is set (sim/network.py). Counting can start late (`start()`),
so that a study counts its measurement window only.
"""

from __future__ import annotations

from typing import Any, Sequence

from kadtalk.node.routing.messages import ROUTE_REQ, RouteRequest

PURPOSES = ("user", "join", "refresh")
USER, JOIN, REFRESH = 0, 1, 2


class TrafficTap:
    """Counts requests and responses per purpose: `counts[purpose][0 request | 1 response]`."""

    __slots__ = ("ids", "user_targets", "counts", "other", "active", "started")

    def __init__(self, ids: Sequence[int], active: bool = True):
        self.ids = ids  # address -> node ID (the simulator's registry: address i has ID ids[i])
        self.user_targets: set[int] = set()
        self.counts = [[0, 0], [0, 0], [0, 0]]
        self.other = 0  # datagrams that are not routing messages
        self.active = active
        self.started = 0.0

    def start(self, now: float) -> None:
        """Forget what was counted so far and count from `now` on."""
        self.counts = [[0, 0], [0, 0], [0, 0]]
        self.other = 0
        self.active = True
        self.started = now

    def __call__(self, src: int, dst: int, payload: Any) -> None:
        if not self.active:
            return
        if type(payload) is bytes:
            if len(payload) < 41 or payload[0] > 1:
                self.other += 1
                return
            response = payload[0] != ROUTE_REQ
            target = int.from_bytes(payload[21:41], "big")
            join = (not (target ^ self.ids[dst]) >> 64 if response
                    else payload[1:13] == payload[21:33])
        else:
            response = type(payload) is not RouteRequest
            target = payload.target
            join = not (target ^ (self.ids[dst] if response else payload.origin)) >> 64
        purpose = JOIN if join else USER if target in self.user_targets else REFRESH
        self.counts[purpose][response] += 1

    def requests(self, purpose: int) -> int:
        return self.counts[purpose][0]

    def summary(self, nodes: int, now: float) -> dict[str, Any]:
        """Requests per purpose in the counted window, and the share that maintains tables."""
        user, join, refresh = (self.counts[p][0] for p in (USER, JOIN, REFRESH))
        total = user + join + refresh
        window = now - self.started
        maintenance = join + refresh
        return {
            "requests_user": user,
            "requests_join": join,
            "requests_refresh": refresh,
            "maintenance_share": maintenance / total if total else None,
            "maintenance_req_per_node_s": maintenance / (nodes * window) if window > 0 else None,
        }
