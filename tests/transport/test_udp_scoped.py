"""A datagram from a scoped (link-local) IPv6 source on a real socket: `normalise` rejects it
(node code carries no interface, so it could not answer there), and the driver's batch reader
counts it in `dropped` and hands the node nothing (review R1, session 10: that count was
untested). A real link-local address of this host sends it; without one the test is skipped."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from kadtalk.node.routing.messages import ROUTE_RES, RouteRequest, encode_request
from kadtalk.transport.udp import start_node


def _link_local() -> tuple[str, int] | None:
    """A link-local IPv6 address of this host and its interface index (Linux), or None."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hexaddr, index, _, scope, *_ = line.split()
        if int(scope, 16) == 0x20:  # IPV6_ADDR_LINKLOCAL
            host = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
                    s.bind((host, 0, 0, int(index, 16)))
            except OSError:
                continue
            return host, int(index, 16)
    return None


LINK_LOCAL = _link_local()


@pytest.mark.skipif(LINK_LOCAL is None, reason="no usable link-local IPv6 address here")
def test_a_datagram_from_a_scoped_source_is_a_counted_drop():
    host, index = LINK_LOCAL

    async def scenario():
        node = await start_node()  # "::", dual-stack: the batch reader normalises sources
        scoped = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        scoped.bind((host, 0, 0, index))
        scoped.setblocking(False)
        plain = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        plain.bind(("::1", 0))
        plain.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            request = encode_request(RouteRequest(7, 9))
            scoped.sendto(request, (host, node.address[1], 0, index))
            plain.sendto(request, ("::1", node.address[1]))  # queued after it: read after it
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(plain, 2048), 5)
            try:
                answered = scoped.recv(2048)
            except BlockingIOError:
                answered = None
            return data, answered, node.dropped
        finally:
            scoped.close()
            plain.close()
            node.close()

    data, answered, dropped = asyncio.run(scenario())
    assert data[0] == ROUTE_RES  # the plain source is answered ...
    assert answered is None and dropped == 1  # ... the scoped one counted, not answered
