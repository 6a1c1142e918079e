"""The asyncio UDP driver: one socket per node, one `loop.call_at` timer per node.

It feeds datagrams and timer expiries into a sans-I/O `Node`, sends what the node queues, and
hands its events to waiting futures and an optional callback. Nothing here knows Kademlia.

As aioquic's protocol does, servicing the node first transmits (sends every queued datagram and
re-arms the timer), then hands the events out. A callback that issues a command (decline a call,
start a lookup) gets the command's datagrams sent at once, but never re-enters the hand-out: the
running hand-out continues with the new events after the callback returns, in order. `call`
hands its events out from the event loop right after it returns, so the caller has recorded the
session id it returns before the first event about that session arrives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any, Callable

from kadtalk.node.identity import Identity
from kadtalk.node.layer import Event
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session.layer import SessionSettings
from kadtalk.node.stack import Node

log = logging.getLogger(__name__)

Address = tuple[str, int]


def parse_hostport(text: str) -> Address:
    """'HOST:PORT' -> an IPv4 (address, port); raises ValueError naming the problem."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 192.0.2.7:5004")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as error:
        raise ValueError(f"{text!r}: cannot resolve {host!r} to an IPv4 address ({error})") from None
    return infos[0][4][0], port


class UdpDriver(asyncio.DatagramProtocol):
    """Runs one node on one UDP socket."""

    def __init__(self, node: Node, on_event: Callable[[Any], None] | None = None):
        self.node = node
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[tuple[type, int], asyncio.Future] = {}  # (event type, lookup id)
        self._dispatching = False  # events are being handed out
        self._deferred: asyncio.Handle | None = None  # a hand-out scheduled by `call`

    # asyncio.DatagramProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.node.receive_datagram(data, (addr[0], addr[1]), self.loop.time())
        self.service()

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error (ICMP unreachable, say): %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._deferred is not None:
            self._deferred.cancel()
        for future in self._waiters.values():
            if not future.done():
                future.cancel()

    @property
    def address(self) -> Address:
        return self.transport.get_extra_info("sockname")[:2]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def service(self) -> None:
        """Transmit (send what the node queued, re-arm the timer), then hand out its events."""
        self.transmit()
        self._hand_out()

    def transmit(self) -> None:
        """Send every datagram the node has queued and re-arm the timer; no events."""
        node = self.node
        transport = self.transport
        for data, addr in node.datagrams_to_send(self.loop.time()):
            if transport is not None and not transport.is_closing():
                transport.sendto(data, addr)
        deadline = node.get_timer()
        if deadline != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = None if deadline is None else self.loop.call_at(deadline, self._fire)

    def _hand_out(self) -> None:
        if self._dispatching:
            return  # a callback's command: the running hand-out takes its events next
        self._dispatching = True
        try:
            node = self.node
            event = node.next_event()
            while event is not None:
                self._dispatch(event)
                event = node.next_event()
        finally:
            self._dispatching = False

    def _hand_out_deferred(self) -> None:
        self._deferred = None
        self._hand_out()

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.node.handle_timer(self.loop.time())
        self.service()

    def _dispatch(self, event: Event) -> None:
        lookup_id = getattr(event, "lookup_id", None)
        if lookup_id is not None:
            future = self._waiters.pop((type(event), lookup_id), None)
            if future is not None and not future.done():
                future.set_result(event)
        if self.on_event is not None:
            self.on_event(event)

    def _wait(self, kind: type, lookup_id: int) -> asyncio.Future:
        future = self.loop.create_future()
        self._waiters[(kind, lookup_id)] = future
        return future

    # commands that wait for their outcome (keyed by their lookup id: any number at once)
    async def join(self, bootstrap: list[Address]) -> Joined:
        lookup_id = self.node.join(bootstrap, self.loop.time())
        future = self._wait(Joined, lookup_id)
        self.service()
        return await future

    async def find_peer(self, target: int) -> LookupCompleted:
        lookup_id = self.node.find_peer(target, self.loop.time())
        future = self._wait(LookupCompleted, lookup_id)
        self.service()
        return await future

    async def find_closest(self, target: int) -> LookupCompleted:
        lookup_id = self.node.find_closest(target, self.loop.time())
        future = self._wait(LookupCompleted, lookup_id)
        self.service()
        return await future

    # session commands: they return at once; progress comes through `on_event`
    def call(self, peer_id: int, addr: Address | None = None) -> int:
        """Place a call; its first events come from the event loop once this has returned."""
        session_id = self.node.call(peer_id, self.loop.time(), addr)
        self.transmit()
        if self._deferred is None:
            self._deferred = self.loop.call_soon(self._hand_out_deferred)
        return session_id

    def answer(self, session_id: int | None = None) -> bool:
        done = self.node.answer(self.loop.time(), session_id)
        self.service()
        return done

    def hang_up(self, session_id: int | None = None) -> bool:
        done = self.node.hang_up(self.loop.time(), session_id)
        self.service()
        return done

    def send_media(self, session_id: int, payload: bytes) -> int | None:
        seq = self.node.send_media(session_id, payload, self.loop.time())
        self.service()
        return seq


async def start_node(
    identity: Identity | None = None,
    host: str = "0.0.0.0",
    port: int = 0,
    settings: RoutingSettings | None = None,
    on_event: Callable[[Any], None] | None = None,
    session_settings: SessionSettings | None = None,
    traversal: bool = False,
) -> UdpDriver:
    """Bind a UDP socket and run a node on it (a fresh ephemeral identity by default);
    `traversal`: NAT traversal (observed address, hole punching; kadtalk.node.traversal)."""
    identity = identity or Identity.generate()
    loop = asyncio.get_running_loop()
    node = Node(
        int.from_bytes(identity.node_id, "big"),
        ContactRegistry(),
        random.Random(random.SystemRandom().getrandbits(64)),
        settings,
        loop.time(),
        identity=identity,
        session_settings=session_settings,
        clock_offset=time.time() - loop.time(),
        traversal=traversal,
    )
    _, driver = await loop.create_datagram_endpoint(
        lambda: UdpDriver(node, on_event), local_addr=(host, port), family=socket.AF_INET
    )
    driver.service()
    return driver


async def start_swarm(
    count: int, port_base: int, host: str = "127.0.0.1", settings: RoutingSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[UdpDriver]:
    """`count` nodes on consecutive ports, each joined through the ones before it.

    Nodes join in waves (each wave through a random node of the earlier ones), so a large swarm
    converges quickly without hammering the first node.
    """
    rng = random.Random()
    drivers = [await start_node(host=host, port=port_base, settings=settings)]
    while len(drivers) < count:
        wave = min(len(drivers), count - len(drivers), 32)
        new = [
            await start_node(host=host, port=port_base + len(drivers) + i, settings=settings)
            for i in range(wave)
        ]
        results = await asyncio.gather(
            *(d.join([drivers[rng.randrange(len(drivers))].address]) for d in new)
        )
        for result in results:
            if not result.success:
                raise RuntimeError("a swarm node could not join; is another process on those ports?")
        drivers.extend(new)
        if progress:
            progress(len(drivers), count)
    return drivers
