"""A call over real UDP sockets on 127.0.0.1: lookup, key exchange, ring, answer, media, hang-up."""

from __future__ import annotations

import asyncio
import socket

from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    MediaReceived,
)
from kadtalk.transport.udp import start_node


class Events:
    """Collects a node's events; `wait(predicate)` resolves when one matches (no sleeping)."""

    def __init__(self):
        self.seen: list = []
        self._waiting: list[tuple] = []

    def __call__(self, event) -> None:
        self.seen.append(event)
        for item in list(self._waiting):
            predicate, future = item
            if predicate(event) and not future.done():
                future.set_result(event)
                self._waiting.remove(item)

    async def wait(self, predicate, timeout: float = 10.0):
        for event in self.seen:
            if predicate(event):
                return event
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((predicate, future))
        return await asyncio.wait_for(future, timeout)


async def in_table(driver, node_id: int) -> None:
    """Until `driver`'s routing table holds `node_id` (real sockets: no event says so)."""
    while driver.node.routing.table.find(node_id) < 0:
        await asyncio.sleep(0.005)


def test_two_udp_nodes_set_up_a_call_and_exchange_authenticated_packets():
    async def scenario():
        ea, eb = Events(), Events()
        a = await start_node(host="127.0.0.1", on_event=ea)
        b = await start_node(host="127.0.0.1", on_event=eb)
        try:
            joined = await b.join([a.address])
            assert joined.success
            # a takes b into its table once b has answered a's address probe (a round trip)
            await asyncio.wait_for(in_table(a, b.node.node_id), 5)
            session = a.call(b.node.node_id)  # found by lookup, then KEY_REQ / KEY_RES
            incoming = await eb.wait(lambda e: type(e) is IncomingCall)
            assert incoming.peer_id == a.node.node_id and incoming.addr == a.address
            assert b.answer()
            await ea.wait(lambda e: type(e) is CallProgress and e.state is CallState.TALKING)
            for i in range(10):
                a.send_media(session, b"frame %d" % i)
            b.send_media(incoming.session_id, b"back")
            await eb.wait(lambda e: type(e) is MediaReceived and e.payload == b"frame 9")
            await ea.wait(lambda e: type(e) is MediaReceived and e.payload == b"back")

            # garbage and forgeries on the same socket change nothing
            junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for data in (b"\x04" + bytes(40), b"\x05" + bytes(13), b"\x02\x30\x00", b"\x03"):
                junk.sendto(data, b.address)
            junk.close()
            b.send_media(incoming.session_id, b"still fine")
            await ea.wait(lambda e: type(e) is MediaReceived and e.payload == b"still fine")

            a.hang_up(session)
            ended = await eb.wait(lambda e: type(e) is CallEnded)
            assert ended.reason is EndReason.REMOTE_HUNG_UP
            assert ended.stats.packets >= 11 and ended.stats.rejected == 0
            return ea.seen, eb.seen, b.node.drop_counts()
        finally:
            a.close()
            b.close()

    seen_a, seen_b, drops = asyncio.run(scenario())
    states = [e.state for e in seen_a if type(e) is CallProgress]
    assert states == [CallState.DIALLING, CallState.KEY_EXCHANGE, CallState.RINGING, CallState.TALKING]
    received = [e.payload for e in seen_b if type(e) is MediaReceived]
    assert received[:10] == [b"frame %d" % i for i in range(10)]
    assert drops["no_session"] + drops["auth_failed"] >= 2 and drops["bad_der"] >= 1


def test_a_udp_call_to_a_node_that_is_busy():
    async def scenario():
        ea, eb = Events(), Events()
        a = await start_node(host="127.0.0.1", on_event=ea)
        b = await start_node(host="127.0.0.1", on_event=eb)
        try:
            b.node.set_busy(True)
            a.call(b.node.node_id, b.address)
            return await ea.wait(lambda e: type(e) is CallEnded)
        finally:
            a.close()
            b.close()

    assert asyncio.run(scenario()).reason is EndReason.BUSY
