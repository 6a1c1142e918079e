"""Calls in the simulator: SimDriver, SimNetwork, real bytes and real crypto, explicit sim time."""

from __future__ import annotations

from random import Random

import pytest
import simpy

from kadtalk.node.identity import Identity
from kadtalk.node.routing.events import Joined
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    MediaReceived,
    ReceiverReport,
)
from kadtalk.node.stack import Node
from kadtalk.sim.latency import ConstantLatency
from kadtalk.sim.network import SimNetwork
from kadtalk.sim.registry import SharedRegistry
from kadtalk.transport.sim import SimDriver

SETTINGS = RoutingSettings(refresh_on_join=False)


class World:
    """n nodes with identities join through node 0 (without loss); then the calls."""

    def __init__(self, n: int = 12, wire: str = "bytes", loss: float = 0.0, seed: int = 3):
        self.identities = [Identity.generate() for _ in range(n)]
        ids = [int.from_bytes(i.node_id, "big") for i in self.identities]
        self.env = simpy.Environment()
        self.net = SimNetwork(self.env, ConstantLatency(0.03), Random(seed))
        self.registry = SharedRegistry(list(ids))
        self.events: dict[int, list] = {i: [] for i in range(n)}
        self.driver = SimDriver(self.env, self.net, lambda a, e: self.events[a].append(e), wire=wire)
        for i in range(n):
            node = Node(ids[i], self.registry, Random(i), SETTINGS, 0.0, identity=self.identities[i])
            self.driver.add(node)
            if i:
                node.join([0], 0.0)
                self.driver.service(i)
        self.env.run(until=2.0)
        assert all(any(type(e) is Joined and e.success for e in self.events[i]) for i in range(1, n))
        self.net.loss = loss  # the calls, not the joins, are under test

    def at(self, when: float, action) -> None:
        timeout = simpy.Timeout(self.env, when - self.env.now)
        timeout.callbacks.append(lambda _e: action())

    def command(self, addr: int, fn) -> None:
        fn(self.driver.nodes[addr], self.env.now)
        self.driver.service(addr)

    def of(self, addr: int, kind: type) -> list:
        return [e for e in self.events[addr] if type(e) is kind]


@pytest.mark.parametrize("wire", ["bytes", "objects"])
def test_two_nodes_set_up_a_call_and_exchange_media_in_the_simulator(wire):
    w = World(wire=wire)
    caller, callee = 1, len(w.identities) - 1
    callee_id = w.driver.nodes[callee].node_id
    w.command(caller, lambda n, now: n.call(callee_id, now))
    w.env.run(until=3.0)
    (incoming,) = w.of(callee, IncomingCall)
    assert incoming.peer_id == w.driver.nodes[caller].node_id and incoming.addr == caller
    w.command(callee, lambda n, now: n.answer(now))
    w.env.run(until=3.5)
    states = [e.state for e in w.of(caller, CallProgress)]
    assert states == [CallState.DIALLING, CallState.KEY_EXCHANGE, CallState.RINGING, CallState.TALKING]
    # set-up time: lookup (a few round trips) + KEY_REQ/KEY_RES (one round trip at 30 ms one way)
    ringing = w.of(caller, CallProgress)[2].at
    assert 0.06 - 1e-9 <= ringing - 2.0 <= 0.5

    session = w.of(caller, CallProgress)[0].session_id
    for i in range(50):  # one second of 20 ms frames
        w.at(3.5 + 0.02 * i, lambda i=i: w.command(
            caller, lambda n, now: n.send_media(session, i.to_bytes(2, "big") + bytes(78), now)))
    w.env.run(until=6.0)
    got = w.of(callee, MediaReceived)
    assert [int.from_bytes(e.payload[:2], "big") for e in got] == list(range(50))
    assert w.of(caller, ReceiverReport)[-1].cumulative_lost == 0

    w.command(caller, lambda n, now: n.hang_up(now))
    w.env.run(until=7.0)
    assert w.of(callee, CallEnded)[0].reason is EndReason.REMOTE_HUNG_UP
    assert w.of(caller, CallEnded)[0].reason is EndReason.HUNG_UP
    assert w.driver.nodes[callee].session.sessions == {}
    assert sum(1 for n in w.driver.nodes if n.session is not None) == 2  # the rest stay lean


def test_a_call_survives_ten_percent_loss():
    w = World(loss=0.1, seed=11)
    caller, callee = 2, len(w.identities) - 2
    callee_id = w.driver.nodes[callee].node_id
    w.command(caller, lambda n, now: n.call(callee_id, now))
    w.env.run(until=12.0)
    assert w.of(callee, IncomingCall), w.events[caller]
    w.command(callee, lambda n, now: n.answer(now))
    w.env.run(until=16.0)
    assert w.of(caller, CallProgress)[-1].state is CallState.TALKING
    assert not w.of(caller, CallEnded) and not w.of(callee, CallEnded)
