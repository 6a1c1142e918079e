"""Two real nodes (identities, session layer) in one process: a call with explicit time.

Datagrams go through a path with a fixed delay, optional random loss of MEDIA packets and
uniform jitter; every 20 ms each side's `AudioPump` (the daemon's own) captures, encodes and
plays one frame, and the payload goes out through `Node.send_media`.
"""

from __future__ import annotations

import heapq
from random import Random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session import CallState, IncomingCall
from kadtalk.node.stack import Node
from kadtalk.transport.audiopump import AudioPump, Endless

WALL = 1_767_225_600.0
A, B = ("10.0.0.1", 5004), ("10.0.0.2", 5004)


def make_node(seed: int) -> Node:
    ident = Identity.generate()
    node_id = int.from_bytes(ident.node_id, "big")
    return Node(node_id, ContactRegistry(), Random(seed), RoutingSettings(refresh_on_join=False),
                0.0, identity=ident, clock_offset=WALL)


class CallNet:
    def __init__(self, delay=0.03, jitter=0.0, loss=0.0, seed=7):
        self.nodes = {A: make_node(1), B: make_node(2)}
        self.delay, self.jitter, self.loss = delay, jitter, loss
        self.rng = Random(seed)
        self.queue: list = []
        self.n = 0
        self.pumps: dict = {}
        self.events: dict = {A: [], B: []}
        self.lost = 0

    def flush(self, now: float) -> None:
        moved = True
        while moved:
            moved = False
            for src, node in self.nodes.items():
                for data, dst in node.datagrams_to_send(now):
                    if data[0] == 0x04 and self.loss and self.rng.random() < self.loss:
                        self.lost += 1
                        continue
                    at = now + self.delay + self.rng.uniform(0, self.jitter)
                    self.n += 1
                    heapq.heappush(self.queue, (at, self.n, dst, data, src))
            while self.queue and self.queue[0][0] <= now:
                at, _, dst, data, src = heapq.heappop(self.queue)
                self.nodes[dst].receive_datagram(data, src, at)
                moved = True
            for addr, node in self.nodes.items():
                for event in iter(node.next_event, None):
                    self.events[addr].append(event)
                    pump = self.pumps.get(addr)
                    if pump is not None:
                        pump.on_event(event)

    def timers(self, now: float) -> None:
        for node in self.nodes.values():
            timer = node.get_timer()
            if timer is not None and timer <= now:
                node.handle_timer(now)

    def connect(self) -> tuple[int, int]:
        """A calls B (known address), B answers: (A's session id, B's session id)."""
        a, b = self.nodes[A], self.nodes[B]
        sid_a = a.call(b.node_id, 0.0, addr=B)
        t = 0.0
        while not any(type(e) is IncomingCall for e in self.events[B]):
            t = round(t + 0.01, 6)
            self.timers(t)
            self.flush(t)
            assert t < 5, "no ring"
        sid_b = next(e for e in self.events[B] if type(e) is IncomingCall).session_id
        b.answer(t, sid_b)
        while a.session.state_of(sid_a) is not CallState.TALKING:
            t = round(t + 0.01, 6)
            self.timers(t)
            self.flush(t)
            assert t < 5, "no answer"
        self.start = t
        return sid_a, sid_b

    def talk(self, sid_a, sid_b, sources, sinks, seconds, settings=None, step=0.02) -> None:
        for addr, sid, source, sink in ((A, sid_a, sources[0], sinks[0]),
                                        (B, sid_b, sources[1], sinks[1])):
            self.pumps[addr] = AudioPump(Endless(source), sink, settings)
            self.pumps[addr].attach(sid)
        sessions = {A: sid_a, B: sid_b}
        t = self.start
        end = self.start + seconds
        while t < end:
            t = round(t + step, 6)
            # arrivals due by now first, then one frame each way
            self.timers(t)
            self.flush(t)
            for addr, pump in self.pumps.items():
                payload = pump.tick(t)
                if payload is not None:
                    self.nodes[addr].send_media(sessions[addr], payload, t)
            self.flush(t)
