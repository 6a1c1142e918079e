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

from kadtalk.sim.network import SimNetwork

EventHandler = Callable[[int, Any], None]


class SimDriver:
    """Feeds a SimNetwork's datagrams and timers to nodes addressed 0, 1, 2, ...

    `wire="bytes"` sends real datagrams through each node's codec; `wire="objects"` hands decoded
    message objects across (faster; tests show both give the same results).
    """

    def __init__(
        self,
        env: simpy.Environment,
        network: SimNetwork,
        on_event: EventHandler | None = None,
        wire: str = "bytes",
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
        network.receiver = self._deliver

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
                if 0 <= dst < attached:
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

    def _fire(self, event: simpy.Event) -> None:
        addr, deadline = event.value
        node = self.nodes[addr]
        if node is None or deadline != self._armed[addr]:
            return  # superseded by an earlier timer, or the node left
        self._armed[addr] = math.inf
        node.handle_timer(self.env.now)
        self.service(addr)
