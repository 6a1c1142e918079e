"""Two real nodes (identities, session layer) in one process: a call with explicit time.

The nodes sit on a `MemoryNet` whose `Link` gives every datagram a fixed delay plus uniform
jitter and randomly loses MEDIA packets; every 20 ms each side's `AudioPump` (the daemon's own)
captures, encodes and plays one frame, and the payload goes out through `Node.send_media`.
"""

from __future__ import annotations

from random import Random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session import CallState, IncomingCall
from kadtalk.node.stack import Node
from kadtalk.transport.audiopump import AudioPump, Endless
from kadtalk.transport.memory import Link, MemoryNet

WALL = 1_767_225_600.0
A, B = ("10.0.0.1", 5004), ("10.0.0.2", 5004)
MEDIA = 0x04


def make_node(seed: int) -> Node:
    ident = Identity.generate()
    node_id = int.from_bytes(ident.node_id, "big")
    return Node(node_id, ContactRegistry(), Random(seed), RoutingSettings(refresh_on_join=False),
                0.0, identity=ident, clock_offset=WALL)


class CallNet:
    def __init__(self, delay=0.03, jitter=0.0, loss=0.0, seed=7):
        self.link = Link(delay, jitter, loss, Random(seed), lossy=lambda p: p.payload[0] == MEDIA)
        self.net = MemoryNet(self.link)
        self.nodes = {A: make_node(1), B: make_node(2)}
        for addr, node in self.nodes.items():
            self.net.attach(addr, node)
        self.events = self.net.events
        self.pumps: dict = {}
        self._told: dict = {}  # addr -> events already handed to its pump

    @property
    def lost(self) -> int:
        return self.link.lost

    def run_until(self, t: float) -> None:
        """Deliveries and timers due by `t`, then the new events to the pumps."""
        self.net.run_until(t)
        for addr, pump in self.pumps.items():
            events = self.events[addr]
            for event in events[self._told[addr]:]:
                pump.on_event(event)
            self._told[addr] = len(events)

    def connect(self) -> tuple[int, int]:
        """A calls B (known address), B answers: (A's session id, B's session id)."""
        a, b = self.nodes[A], self.nodes[B]
        sid_a = a.call(b.node_id, 0.0, addr=B)
        self.net.service(A)
        t = 0.0
        while not any(type(e) is IncomingCall for e in self.events[B]):
            t = round(t + 0.01, 6)
            self.run_until(t)
            assert t < 5, "no ring"
        sid_b = next(e for e in self.events[B] if type(e) is IncomingCall).session_id
        b.answer(t, sid_b)
        self.net.service(B)
        while a.session.state_of(sid_a) is not CallState.TALKING:
            t = round(t + 0.01, 6)
            self.run_until(t)
            assert t < 5, "no answer"
        self.start = t
        return sid_a, sid_b

    def talk(self, sid_a, sid_b, sources, sinks, seconds, settings=None, step=0.02) -> None:
        for addr, sid, source, sink in ((A, sid_a, sources[0], sinks[0]),
                                        (B, sid_b, sources[1], sinks[1])):
            self.pumps[addr] = AudioPump(Endless(source), sink, settings)
            self.pumps[addr].attach(sid)
            self._told[addr] = len(self.events[addr])
        sessions = {A: sid_a, B: sid_b}
        t = self.start
        end = self.start + seconds
        while t < end:
            t = round(t + step, 6)
            # arrivals and timers due by now first, then one frame each way
            self.run_until(t)
            for addr, pump in self.pumps.items():
                payload = pump.tick(t)
                if payload is not None:
                    self.nodes[addr].send_media(sessions[addr], payload, t)
                    self.net.service(addr)
