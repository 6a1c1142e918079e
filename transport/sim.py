"""The SimPy driver: runs sans-I/O nodes on a simulated network.

No SimPy process per node. Each node has at most one useful timer event in SimPy's queue: a new
one is scheduled only when the node's deadline moves earlier; a timer that fires early is
harmless (`handle_timer` does only what is due) and re-arms; a superseded one is recognised as
stale and ignored, since SimPy cannot cancel an event.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Callable

import simpy

from kadtalk.node.traversal import ADDR_REQ, PUNCH, PUNCH_REQ, PUNCH_REQ_RELAY, TRAVERSAL
from kadtalk.sim.environment import call_later
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import MAX_NODES, flow_address, split_flow

EventHandler = Callable[[int, Any], None]
# PUNCH_REQ_RELAY too (before, a symmetric caller offering a relay was forwarded at its plain
# address, which the callee's PUNCH then reached); PUNCH: its source is a peer-reflexive
# address to the caller (node/stack.py `_reflexive`), as on a real symmetric NAT
_REPORTED = frozenset((ADDR_REQ, PUNCH_REQ, PUNCH_REQ_RELAY, PUNCH))


class SimDriver:
    """Feeds a SimNetwork's datagrams and timers to nodes addressed 0, 1, 2, ...

    `wire="bytes"` sends real datagrams through each node's codec; `wire="objects"` hands decoded
    message objects across (faster; tests show both give the same results).

    `traversal=True` models what NAT traversal (node/traversal.py, type 0x06) sees of symmetric
    NATs: the requests whose source address the receiver reports or relays (ADDR_REQ,
    PUNCH_REQ(_RELAY)) and PUNCH (a peer-reflexive address) come in from a node behind one at
    its flow address towards the receiver (sim/registry.py,
    sim/nat.py `flow_port`), so an address probe reports it and a rendezvous forwards it; a
    datagram sent to a flow address reaches the node only from the flow's own peer. `traversal_tap(dst, payload, src)` sees every traversal datagram delivered;
    `application` receives the datagrams of `application_types` meant for code beside a node;
    `relayed_types` are other requests that come in from flow addresses.
    """

    def __init__(
        self,
        env: simpy.Environment,
        network: SimNetwork,
        on_event: EventHandler | None = None,
        wire: str = "bytes",
        traversal: bool = False,
    ):
        if wire not in ("bytes", "objects"):
            raise ValueError("wire must be 'bytes' or 'objects'")
        self.env = env
        self.network = network
        self.on_event = on_event
        self.wire_objects = wire == "objects"
        self.nodes: list[Any] = []
        self._armed = array("d")
        self.unroutable = 0
        self.misaddressed = 0  # datagrams to a flow port no NAT holds for their sender
        self.traversal_tap: Callable[[int, bytes, int], None] | None = None
        # datagrams of these first bytes go to `application(dst, payload, src)`, not the node
        # (code beside the node on its address: the call study's directory client)
        self.application: Callable[[int, bytes, int], None] | None = None
        self.application_types: frozenset[int] = frozenset()
        # other requests whose source address the receiver relays (a directory's QUERY)
        self.relayed_types: frozenset[int] = frozenset()
        network.receiver = self._deliver_inspected if traversal else self._deliver
        self._plain = type(self)._route is SimDriver._route  # not a subclass's routing
        # timers are light events where the environment has them (sim/environment.py)
        self._later = getattr(env, "call_later", None) or (
            lambda delay, fn, *args: call_later(env, delay, fn, *args))

    def add(self, node: Any) -> int:
        """Attach a node at the next address and return that address."""
        self.nodes.append(node)
        self._armed.append(math.inf)
        addr = len(self.nodes) - 1
        self.service(addr)
        return addr

    def place(self, addr: int, node: Any | None) -> None:
        """Put a node at an existing address (a rejoin), or None to take it offline silently."""
        self.nodes[addr] = node
        self._armed[addr] = math.inf
        if node is not None:
            self.service(addr)

    def service(self, addr: int) -> None:
        """Send what the node has queued, hand its events on and re-arm its timer."""
        self._service(addr, self.nodes[addr], self.env._now)

    def _service(self, addr: int, node: Any, now: float) -> None:
        out = node.messages_to_send(now) if self.wire_objects else node.datagrams_to_send(now)
        if out:
            self._route(addr, out)
        event = node.next_event()
        while event is not None:
            if self.on_event is not None:
                self.on_event(addr, event)
            event = node.next_event()
        deadline = node.get_timer()
        if deadline is not None and deadline < self._armed[addr]:
            self._armed[addr] = deadline
            self._later(max(0.0, deadline - now), self._fire, addr, deadline)

    def _route(self, addr: int, out: list) -> None:
        """Hand node `addr`'s datagrams to the network by destination (sim/dualstack.py's
        driver routes by family instead)."""
        self.network.send_out(addr, out, len(self.nodes), self._stray)

    def _stray(self, src: int, dst: int, payload: Any) -> None:
        """A datagram to an address outside the attached nodes' (`SimNetwork.send_out`)."""
        if dst >= MAX_NODES:
            self._send_to_flow(src, dst, payload)  # NAT traversal's view of an address
        else:
            self.unroutable += 1  # an address no node was ever placed at: lost

    def _deliver(self, dst: int, payload: Any, src: int) -> None:
        """The arrival of a datagram, and `_service` after it, inline (one call less for every
        datagram: a join phase is nearly all arrivals; issue 15 item 2)."""
        node = self.nodes[dst]
        if node is None:
            return
        now = self.env._now  # not the `now` property: a Python call
        if self.wire_objects:
            node.receive_message(payload, src, now)
            out = node.messages_to_send(now)
        else:
            node.receive_datagram(payload, src, now)
            out = node.datagrams_to_send(now)
        if out:
            if self._plain:  # `_route`, inline
                self.network.send_out(dst, out, len(self.nodes), self._stray)
            else:
                self._route(dst, out)
        event = node.next_event()
        while event is not None:
            if self.on_event is not None:
                self.on_event(dst, event)
            event = node.next_event()
        deadline = node.get_timer()
        if deadline is not None and deadline < self._armed[dst]:
            self._armed[dst] = deadline
            self._later(max(0.0, deadline - now), self._fire, dst, deadline)

    def seen_address(self, addr: int, seen_by: int) -> int:
        """The address `seen_by` sees the node at `addr` at: a flow address (sim/registry.py)
        when `addr` is behind a symmetric NAT, else `addr`."""
        nat = self.network.nat
        port = nat.flow_port(addr, seen_by) if nat is not None else None
        return addr if port is None else flow_address(addr, port)

    def _send_to_flow(self, src: int, dst: int, payload: Any) -> None:
        addr, port = split_flow(dst)
        if addr >= len(self.nodes):
            self.unroutable += 1
        elif self.seen_address(addr, src) != dst:
            # a port of the destination's symmetric NAT held for somebody else (or a port a
            # node without one does not have): its NAT drops it
            self.misaddressed += 1
        else:
            nat = self.network.nat
            if nat is not None:
                nat.through_flow(addr, src, self.env.now, payload)
            self.network.send(src, addr, payload)

    def send(self, src: int, dst: int, payload: Any) -> None:
        """Put a datagram from `src` on the network (application code beside a node)."""
        if 0 <= dst < len(self.nodes):
            self.network.send(src, dst, payload)
        else:
            self._stray(src, dst, payload)

    def _deliver_inspected(self, dst: int, payload: Any, src: int) -> None:
        if payload.__class__ is not bytes or not payload:
            self._deliver(dst, payload, src)  # a routing message object
            return
        first = payload[0]
        if first in self.application_types:
            if self.application is not None and self.nodes[dst] is not None:
                self.application(dst, payload, src)
            return
        if first in self.relayed_types:
            src = self.seen_address(src, dst)
        if first == TRAVERSAL:
            node = self.nodes[dst]
            if node is None:
                return
            if self.traversal_tap is not None:
                self.traversal_tap(dst, payload, src)
            # a request whose source address the receiver reports or relays comes from the
            # sender's flow address; answers come from the address the receiver asked
            seen = (self.seen_address(src, dst) if len(payload) > 1 and payload[1] in _REPORTED
                    else src)
            node.receive_datagram(payload, seen, self.env._now)
            self.service(dst)
            return
        self._deliver(dst, payload, src)

    def _fire(self, addr: int, deadline: float) -> None:
        node = self.nodes[addr]
        if node is None or deadline != self._armed[addr]:
            return  # superseded by an earlier timer, or the node left
        self._armed[addr] = math.inf
        now = self.env._now
        node.handle_timer(now)
        self._service(addr, node, now)
