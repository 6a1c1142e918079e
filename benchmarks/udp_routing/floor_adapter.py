"""The floor of part (a): kadtalk's UDP driver (`UdpDriver`, asyncio, this kernel) serving a
stand-in node that does no work of its own, so that the CPU per answer of a real server splits
into what any node behind this driver pays (read, event loop, send) and the node's own work.

Not a compared system: it runs only in the "limits lifted" row, driven by kadtalk's load (its
answers have kadtalk's ROUTE_RES layout: type, responder, the request's target echoed, 20
contacts of 26 bytes, prebuilt). Reported as "the floor" and "above the floor" (report.py).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from benchmarks.udp_routing.config import HOST, K
from benchmarks.udp_routing.system import Contacts, Running

CONTACT_BYTES = 26  # ROUTE_RES: node ID (20) + IPv4 address and port (6)


class FloorNode:
    """The sans-I/O surface UdpDriver calls, with no protocol: each datagram of a request's
    size is answered with the same prebuilt answer around the request's target (bytes 21-41);
    no events, no timer."""

    def __init__(self, contacts: Contacts):
        entries = b"".join(node_id.to_bytes(20, "big") + socket.inet_aton(host)
                           + port.to_bytes(2, "big") for node_id, (host, port) in contacts[:K])
        self.head = b"\x01" + bytes(20)  # ROUTE_RES, responder ID
        self.tail = entries + bytes(CONTACT_BYTES * (K - len(contacts[:K])))
        self.out: list[tuple[bytes, Any]] = []
        self.answered = 0

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if len(data) >= 41:
            self.out.append((self.head + data[21:41] + self.tail, addr))

    def next_event(self) -> None:
        return None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out, self.out = self.out, []
        self.answered += len(out)
        return out

    def get_timer(self) -> None:
        return None


async def start_server(port: int, contacts: Contacts, limits: bool) -> Running:
    from kadtalk.transport.udp import UdpDriver, open_socket

    node = FloorNode(contacts)
    driver = UdpDriver(node, open_socket(HOST, port))  # type: ignore[arg-type]
    await asyncio.sleep(0)

    def stop() -> dict[str, Any]:
        driver.close()
        return {"answered": node.answered}

    return Running({"table": len(contacts)}, stop)
