"""The SimPy driver: runs sans-I/O nodes on a simulated network.

No SimPy process per node. Each node has at most one useful timer event in SimPy's queue: a new
one is scheduled only when the node's deadline moves earlier; a timer that fires early is
harmless (`handle_timer` does only what is due) and re-arms; a superseded one is recognised as
stale and ignored, since SimPy cannot cancel an event.
"""

from __future__ import annotations

import ipaddress
import math
from array import array
from typing import Any, Callable

import simpy

from kadtalk.node.traversal import TRAVERSAL
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SIM_PORT, SharedRegistry

EventHandler = Callable[[int, Any], None]
_BASE = int(ipaddress.IPv4Address(SharedRegistry.addr_to_wire(0)[:4]))
_TRAVERSAL_BYTE = bytes((TRAVERSAL,))


class SimDriver:
    """Feeds a SimNetwork's datagrams and timers to nodes addressed 0, 1, 2, ...

    `wire="bytes"` sends real datagrams through each node's codec; `wire="objects"` hands decoded
    message objects across (faster; tests show both give the same results).

    `traversal=True` lets NAT traversal (node/traversal.py, type 0x06) run: its datagrams carry
    IPv4 addresses (an observed address, a PUNCH's destination), so they are handed in with the
    sender's wire address (sim/registry.py: 10.0.0.0 + address; behind a symmetric NAT, the port
    of the sender's flow towards the receiver, sim/nat.py `flow_port`), and a datagram a node
    sends to such an address goes to the node there, if the port is one its NAT holds for the
    sender. `traversal_tap(dst, payload, src)` sees every traversal datagram delivered.
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
        self.misaddressed = 0  # traversal datagrams to a port no NAT holds for their sender
        self.traversal_tap: Callable[[int, bytes, int], None] | None = None
        network.receiver = self._deliver_traversal if traversal else self._deliver

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
        node = self.nodes[addr]
        now = self.env.now
        out = node.messages_to_send(now) if self.wire_objects else node.datagrams_to_send(now)
        if out:
            send = self.network.send
            attached = len(self.nodes)
            for payload, dst in out:
                if dst.__class__ is tuple:
                    self._send_to_wire_address(addr, dst, payload)
                elif 0 <= dst < attached:
                    send(addr, dst, payload)
                else:
                    self.unroutable += 1  # an address no node was ever placed at: lost
        event = node.next_event()
        while event is not None:
            if self.on_event is not None:
                self.on_event(addr, event)
            event = node.next_event()
        deadline = node.get_timer()
        if deadline is not None and deadline < self._armed[addr]:
            self._armed[addr] = deadline
            timer = simpy.Timeout(self.env, max(0.0, deadline - now), (addr, deadline))
            timer.callbacks.append(self._fire)

    def _deliver(self, dst: int, payload: Any, src: int) -> None:
        node = self.nodes[dst]
        if node is None:
            return
        if self.wire_objects:
            node.receive_message(payload, src, self.env.now)
        else:
            node.receive_datagram(payload, src, self.env.now)
        self.service(dst)

    def wire_address(self, addr: int, seen_by: int) -> tuple[str, int]:
        """Where the node at `addr` is seen from `seen_by`: its IPv4 address and the port of
        its NAT's flow towards `seen_by` (sim/nat.py)."""
        nat = self.network.nat
        port = nat.flow_port(addr, seen_by) if nat is not None else None
        return str(ipaddress.IPv4Address(_BASE + addr)), SIM_PORT if port is None else port

    def _send_to_wire_address(self, src: int, dst: tuple[str, int], payload: Any) -> None:
        try:
            addr = int(ipaddress.IPv4Address(dst[0])) - _BASE
        except (ValueError, TypeError):
            addr = -1
        if not 0 <= addr < len(self.nodes):
            self.unroutable += 1
            return
        if dst[1] != self.wire_address(addr, src)[1]:
            # a port of the destination's symmetric NAT held for somebody else (or a port a
            # full-cone/filtering/open node does not use): the NAT drops it
            self.misaddressed += 1
            return
        self.network.send(src, addr, payload)

    def _deliver_traversal(self, dst: int, payload: Any, src: int) -> None:
        if payload.__class__ is bytes and payload[:1] == _TRAVERSAL_BYTE:
            node = self.nodes[dst]
            if node is None:
                return
            if self.traversal_tap is not None:
                self.traversal_tap(dst, payload, src)
            node.receive_datagram(payload, self.wire_address(src, dst), self.env.now)
            self.service(dst)
            return
        self._deliver(dst, payload, src)

    def _fire(self, event: simpy.Event) -> None:
        addr, deadline = event.value
        node = self.nodes[addr]
        if node is None or deadline != self._armed[addr]:
            return  # superseded by an earlier timer, or the node left
        self._armed[addr] = math.inf
        node.handle_timer(self.env.now)
        self.service(addr)
