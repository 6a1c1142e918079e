"""Swarm robustness (issue 15 item 5): larger socket buffers, receive-buffer drops counted and
shown, paced joins that are retried when they fail. Real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kadtalk.node.routing.events import Joined
from kadtalk.transport import udp
from kadtalk.transport.udp import (
    SWARM_BUFFER,
    SwarmReport,
    UdpDriver,
    socket_drops,
    start_node,
    start_swarm,
    udp_receive_buffer_drops,
)
from tests.transport.test_udp import free_port_range

linux_only = pytest.mark.skipif(udp_receive_buffer_drops() is None, reason="needs /proc/net/snmp")


def kernel_max(name: str) -> int:
    with open(f"/proc/sys/net/core/{name}") as f:
        return int(f.read())


@linux_only
def test_a_node_gets_the_buffers_it_asks_for():
    async def scenario():
        plain = await start_node(host="127.0.0.1")
        big = await start_node(host="127.0.0.1", buffer=3 << 20)
        try:
            return plain.buffer_sizes(), big.buffer_sizes()
        finally:
            plain.close()
            big.close()

    (plain_rcv, _), (rcv, snd) = asyncio.run(scenario())
    # Linux grants twice what is asked (half is bookkeeping); without root, at most rmem_max
    assert rcv >= min(3 << 20, kernel_max("rmem_max"))
    assert snd >= min(3 << 20, kernel_max("wmem_max"))
    assert rcv > plain_rcv  # more than the kernel's default


@linux_only
def test_a_full_receive_buffer_is_counted_at_the_socket_and_on_the_host():
    """While the event loop is busy (here: this coroutine sends without yielding), datagrams
    wait in the socket's buffer; past it the kernel drops them and counts them."""

    async def scenario():
        node = await start_node(host="127.0.0.1", buffer=4096)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            before_socket = socket_drops([node.address])
            before_host = udp_receive_buffer_drops()
            for _ in range(300):  # the loop cannot read meanwhile
                sender.sendto(b"\x00" * 187, node.address)
            return (socket_drops([node.address]) - before_socket,
                    udp_receive_buffer_drops() - before_host)
        finally:
            sender.close()
            node.close()

    at_socket, on_host = asyncio.run(scenario())
    assert at_socket > 0
    assert on_host >= at_socket  # the host's counter has every socket's (others' too)


@linux_only
def test_swarm_reports_joins_buffers_and_drops():
    async def scenario():
        base = free_port_range(12)
        report = SwarmReport()
        swarm = await start_swarm(12, base, report=report, concurrency=3)
        try:
            tables = [len(d.node.routing.table) for d in swarm]
        finally:
            for d in swarm:
                d.close()
        return report, tables

    report, tables = asyncio.run(scenario())
    assert report.nodes == report.joined == 12 and min(tables) > 0
    assert report.buffers[0] >= min(SWARM_BUFFER, kernel_max("rmem_max"))
    assert report.socket_drops is not None and report.socket_drops >= 0
    assert report.rcvbuf_errors is not None and report.rcvbuf_errors >= 0
    assert "12 of 12 nodes joined" in report.line() and "RcvbufErrors" in report.line()


def test_a_failed_join_is_retried_through_another_node(monkeypatch):
    real_join = UdpDriver.join
    failures = []

    async def flaky_join(self, bootstrap):
        if not failures:  # the first join of all ends with an empty table (its datagrams lost)
            failures.append(bootstrap)
            return Joined(0.0, 0, 1, 1)
        return await real_join(self, bootstrap)

    monkeypatch.setattr(UdpDriver, "join", flaky_join)
    monkeypatch.setattr(udp.asyncio, "sleep", _no_wait(asyncio.sleep))

    async def scenario():
        base = free_port_range(5)
        report = SwarmReport()
        swarm = await start_swarm(5, base, report=report, concurrency=2)
        for d in swarm:
            d.close()
        return report

    report = asyncio.run(scenario())
    assert failures and report.failed_attempts == 1 and report.joined == 5


def test_a_join_that_keeps_failing_fails_the_swarm_with_the_report(monkeypatch):
    async def dead_join(self, bootstrap):
        return Joined(0.0, 0, 1, 1)

    monkeypatch.setattr(UdpDriver, "join", dead_join)
    monkeypatch.setattr(udp.asyncio, "sleep", _no_wait(asyncio.sleep))

    async def scenario():
        await start_swarm(3, free_port_range(3), attempts=2)

    with pytest.raises(RuntimeError, match=r"1 of 3 nodes joined .* \(4 joins retried\)"):
        asyncio.run(scenario())


def _no_wait(sleep):
    """asyncio.sleep without the back-off's wait (the retry pauses are not what is tested)."""

    async def quick(delay, result=None):
        return await sleep(0, result)

    return quick
