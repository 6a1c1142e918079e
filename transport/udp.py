"""The asyncio UDP driver: one socket per node, one `loop.call_at` timer per node.

It feeds datagrams and timer expiries into a sans-I/O `Node`, sends what the node queues, and
hands its events to waiting futures and an optional callback. Nothing here knows Kademlia.
The socket is read by a reader callback that drains it (a batch of datagrams per wake-up, one
transmit per batch: `UdpDriver._reader`), not through asyncio's one-datagram-per-callback
DatagramProtocol; the timer is re-armed only when the node's deadline moves earlier.

As aioquic's protocol does, servicing the node first hands the events out, then transmits (sends
every queued datagram and re-arms the timer): an answer leaves only once the owner has handled
what drew it (in a batch, every datagram's events go before the batch's answers), so a
message's RECEIPT goes after the daemon has committed the message to its history (a SIGKILL
between the two lost an acknowledged message: tests/app/test_history_sigkill.py). A callback
that issues a command (decline a call, start a lookup) never re-enters the hand-out: the
running hand-out continues with the new events after the callback returns, in order, and the
command's datagrams go when the hand-out ends. `call` hands its
events out from the event loop right after it returns, so the caller has recorded the session
id it returns before the first event about that session arrives.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from kadtalk.node.identity import Identity
from kadtalk.node.layer import Event
from kadtalk.node.relay import RELAY
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.session.layer import SessionSettings
from kadtalk.node.stack import Node
from kadtalk.node.upkeep import JoinRetry

log = logging.getLogger(__name__)

Address = tuple[str, int]

SWARM_BUFFER = 1 << 20  # bytes of socket buffer a swarm node asks for (the kernel doubles it)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; root may exceed rmem_max
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def parse_hostport(text: str) -> Address:
    """'HOST:PORT' or '[IPv6]:PORT' -> (address, port), IPv4 preferred for a name that has
    both (every peer speaks IPv4); raises ValueError naming the problem."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 192.0.2.7:5004 or [2001:db8::7]:5004")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [2001:db8::7]:5004")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port must be between 1 and 65535")
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except socket.gaierror as error:
        raise ValueError(f"{text!r}: cannot resolve {host!r} ({error})") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    found = normalise(infos[0][4])
    if found is None:
        raise ValueError(f"{text!r}: {host!r} is a scoped (link-local) address")
    return found


def normalise(addr: tuple) -> Address | None:
    """A socket's address as node code sees it: IPv4 as ('a.b.c.d', port), also when it came
    IPv4-mapped through a dual-stack socket (::ffff:a.b.c.d, with flow and scope); IPv6 as
    (canonical compressed host, port). None for a scoped (link-local) IPv6 address: node code
    carries no interface, so it could not answer there."""
    host = addr[0]
    if ":" not in host:
        return (host, addr[1])
    if host.startswith("::ffff:") and "." in host:
        return (host[7:], addr[1])
    if len(addr) > 3 and addr[3]:
        return None
    if "%" in host or host != host.lower():
        try:
            host = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, host))
        except OSError:
            return None
    return (host, addr[1])


class UdpDriver:
    """Runs one node on one UDP socket, read by a reader callback of the event loop.

    One wake-up drains the socket (up to `BATCH` datagrams, non-blocking `recvfrom` until the
    kernel has no more), hands each datagram to the node and its events out, then transmits
    once for the whole batch: under load a wake-up (and the scheduling it costs on a busy host)
    serves many datagrams instead of one, as asyncio's DatagramProtocol does. A datagram's
    events are still handed out before any answer leaves (the transmit is in a `finally`), and
    no answer waits longer than its batch. Sends go straight to the socket: a send the kernel
    refuses (full buffer, unreachable) is a counted drop (`send_failed`), as UDP loses it
    anyway; asyncio's transport would have queued or logged it."""

    BATCH = 64  # datagrams read per wake-up at most: timers and other sockets get their turn
    BUSY = 0.0005  # s: a wake-up this soon after the previous one drains the socket
    RECEIVE_SIZE = 65535  # the largest UDP payload

    def __init__(self, node: Node, sock: socket.socket,
                 on_event: Callable[[Any], None] | None = None, dual_stack: bool = False):
        self.node = node
        self.sock = sock
        self.family = sock.family  # AF_INET or AF_INET6
        # an AF_INET6 socket that also carries IPv4: IPv4 destinations go out IPv4-mapped
        self.dual_stack = dual_stack
        self.dropped = 0  # datagrams in from, or out to, an address this socket cannot use
        self.send_failed = 0  # datagrams the kernel refused to send (full buffer, no route)
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._sockname = sock.getsockname()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None  # when the armed timer fires (at or before the node's)
        self._waiters: dict[tuple[type, int], asyncio.Future] = {}  # (event type, lookup id)
        self._dispatching = False  # events are being handed out, or a batch is being read
        self._deferred: asyncio.Handle | None = None  # a hand-out scheduled by `call`
        sock.setblocking(False)
        self._fd = sock.fileno()
        self.loop.add_reader(self._fd, self._reader())

    def _reader(self) -> Callable[[], None]:
        """The socket's reader callback: drain the socket, each datagram to the node and its
        events handed out, then one transmit. Made once per driver, with what it uses bound
        in (socket methods, clock, family, limits): it runs at every wake-up, and each lookup
        it does not repeat is memory a wake-up after 10-20 ms asleep does not fetch again.

        Two savings for a relay's steady traffic (benchmarks/relay.py), neither skipping a
        rule: a relayed DATA goes through `RelayLayer.forward` (the server's checks, then
        straight back out) with no hand-out, transmit or timer re-check after it, since it
        makes no event, no other datagram and no earlier deadline; and a wake-up that comes
        `BUSY` or more after the previous one ended reads one datagram only, not then a
        second `recvfrom` that finds the socket empty (a system call and an exception per
        wake-up on a quiet socket): if more was queued, the loop calls back at once, and a
        wake-up that soon drains the socket as before. (Reading that quiet wake-up ahead of
        the loop, in a second function or inline, measured no cheaper: docs/results.md, Relay
        cost, run 8. What is left is asyncio's own wake-up and the kernel's.)"""
        recvfrom, clock = self.sock.recvfrom, self.loop.time
        ipv4 = self.family == socket.AF_INET
        # forwarded DATA goes to an owner's or a peer's address, both seen on this socket: in
        # its family, so only a dual-stack socket maps (IPv4 to IPv4-mapped)
        send = self._send_mapped if self.dual_stack else self.sock.sendto
        batch, busy, size = self.BATCH, self.BUSY, self.RECEIVE_SIZE
        woken = [float("-inf")]  # when the last wake-up that read a datagram ended

        def readable() -> None:
            if self._dispatching:  # never: the loop does not call back into a running batch
                return
            self._dispatching = True
            node = self.node
            now = quiet = None
            slow = False  # a datagram went to receive_datagram: transmit after the batch
            try:
                for _ in range(batch):
                    try:
                        data, addr = recvfrom(size)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as error:  # an ICMP error queued on the socket, say
                        if self.closed:
                            break  # a callback closed the driver
                        log.debug("socket error: %s", error)
                        continue
                    source = addr if ipv4 else normalise(addr)  # AF_INET: already (host, port)
                    if source is None:
                        self.dropped += 1
                        continue
                    now = clock()
                    if quiet is None:
                        quiet = now - woken[0] >= busy
                    taken = False
                    if data and data[0] == RELAY:
                        relay = getattr(node, "relay", None)  # made on first use, as receive does
                        try:
                            taken = relay is not None and relay.forward(data, source, now, send)
                        except OSError as error:
                            taken = True  # the kernel refused the forwarded copy (as transmit)
                            self.send_failed += 1
                            log.debug("forward from %s failed: %s", source, error)
                    if not taken:  # (a forwarded DATA: no event, no answer, no earlier timer)
                        slow = True
                        node.receive_datagram(data, source, now)
                        self._hand_out_events()
                    if quiet:
                        break  # the loop calls back at once if more is queued
            finally:
                self._dispatching = False
                if slow:
                    self.transmit()  # the batch's answers, even if a callback raised
                if now is not None:
                    woken[0] = clock()

        return readable

    def _send_mapped(self, data: bytes, addr: Address) -> None:
        """`sendto` on a dual-stack socket: an IPv4 address (node form) goes IPv4-mapped."""
        self.sock.sendto(data, addr if ":" in addr[0] else ("::ffff:" + addr[0], addr[1]))

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        """One datagram from `addr` (as the socket reports it), serviced at once."""
        source = normalise(addr)
        if source is None:
            self.dropped += 1
            return
        self.node.receive_datagram(data, source, self.loop.time())
        self.service()

    @property
    def address(self) -> Address:
        return normalise(self._sockname) or ("::", 0)

    def buffer_sizes(self) -> tuple[int, int]:
        """(receive, send) buffer bytes the kernel granted this socket (Linux reports twice
        what was asked for: the other half is its bookkeeping)."""
        sock = self.sock
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))

    def close(self) -> None:
        """Stop reading, cancel the timer and the waiting commands, close the socket."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self._fd)  # by the fd it was added with: the socket may be closed
        self.sock.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._deferred is not None:
            self._deferred.cancel()
        for future in self._waiters.values():
            if not future.done():
                future.cancel()

    def service(self) -> None:
        """Hand out the node's events, then transmit (send what it queued, re-arm the timer)."""
        self._hand_out()  # it ends by transmitting

    def transmit(self) -> None:
        """Send every datagram the node has queued and re-arm the timer; no events. During a
        hand-out or a batch nothing goes: it transmits when it ends."""
        if self._dispatching:
            return
        node = self.node
        out = node.datagrams_to_send(self.loop.time())
        if out and not self.closed:
            sendto = self.sock.sendto
            ipv6 = self.family == socket.AF_INET6
            for data, addr in out:
                if (":" in addr[0]) != ipv6:
                    if not self.dual_stack:
                        self.dropped += 1  # a family this socket cannot send to
                        continue
                    addr = ("::ffff:" + addr[0], addr[1])
                try:
                    sendto(data, addr)
                except (OSError, OverflowError, TypeError, ValueError) as error:
                    # full send buffer, no route, refused by a firewall; or an address the
                    # socket cannot take (a port over 65535): counted, the rest still goes
                    self.send_failed += 1
                    log.debug("send to %s failed: %s", addr, error)
        deadline = node.get_timer()
        if deadline is not None and not self.closed and (
                self._timer_at is None or deadline < self._timer_at):
            # only when the deadline moves earlier: a timer that fires early is harmless
            # (`handle_timer` does only what is due) and re-arms, as in transport/sim.py
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._fire)

    def _hand_out(self) -> None:
        if self._dispatching:
            return  # a callback's command: the running hand-out takes its events next
        self._dispatching = True
        try:
            self._hand_out_events()
        finally:
            self._dispatching = False
            self.transmit()  # what the callbacks' commands queued, even if one of them raised

    def _hand_out_events(self) -> None:
        node = self.node
        event = node.next_event()
        while event is not None:
            self._dispatch(event)
            event = node.next_event()

    def _hand_out_deferred(self) -> None:
        self._deferred = None
        self._hand_out()

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.closed:
            return
        try:
            self.node.handle_timer(self.loop.time())
        finally:
            self.service()  # re-armed even if the node raised: a quiet node would never wake

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
    buffer: int | None = None,
    ipv6: bool | None = None,
) -> UdpDriver:
    """Bind a UDP socket and run a node on it (a fresh ephemeral identity by default);
    `traversal`: NAT traversal (observed address, hole punching; kadtalk.node.traversal);
    `buffer`: ask for this many bytes of receive and send buffer (`set_buffers`), so that
    bursts wait in the kernel rather than being dropped while the event loop is busy;
    `ipv6`: whether the node asks peers for IPv6 contacts (RoutingSettings.ipv6); None: when
    its socket is IPv6 and, unless bound to one IPv6 address, the host has an IPv6 route out."""
    identity = identity or Identity.generate()
    loop = asyncio.get_running_loop()
    sock = open_socket(host, port, buffer)
    dual_stack = sock.family == socket.AF_INET6 and not sock.getsockopt(
        socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)  # bound to "::", IPv4 too
    settings = settings or RoutingSettings()
    if ipv6 is None:
        ipv6 = settings.ipv6 or not dual_stack or has_ipv6_route()
    settings = dataclasses.replace(settings, ipv6=ipv6 and sock.family == socket.AF_INET6)
    try:
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
            random_bytes=os.urandom,  # probe secrets: peers see the rng's draws
        )
    except BaseException:
        sock.close()
        raise
    try:
        driver = UdpDriver(node, sock, on_event, dual_stack)
    except BaseException:
        sock.close()
        raise
    driver.service()
    return driver


def has_ipv6_route(probe: str = "2001:4860:4860::8888") -> bool:
    """Whether the host would send to the IPv6 internet (a global address and a route): a
    UDP connect sends nothing, it only picks the route and source address."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            source = s.getsockname()[0]
    except OSError:
        return False
    return not (source.startswith("fe80:") or source == "::1")


def open_socket(host: str, port: int, buffer: int | None = None) -> socket.socket:
    """A bound UDP socket. '0.0.0.0' or '::' (any address): one AF_INET6 socket that carries
    IPv4 too (IPV6_V6ONLY off) where the OS allows, else AF_INET on 0.0.0.0. An IPv4 address:
    AF_INET there; an IPv6 one: AF_INET6 there."""
    if host in ("0.0.0.0", "::", ""):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:  # no IPv6 in this kernel (or disabled): IPv4 only
            return _bind(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "0.0.0.0", port, buffer)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            return _bind(sock, "::", port, buffer)
        except OSError:  # dual stack refused, or no IPv6 address to bind: IPv4 only
            sock.close()
            return _bind(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), "0.0.0.0", port, buffer)
    if ":" not in host:
        return _bind(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), host, port, buffer)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # one IPv6 address: no IPv4
    return _bind(sock, host, port, buffer)


def _bind(sock: socket.socket, host: str, port: int, buffer: int | None) -> socket.socket:
    try:
        if buffer:
            set_buffers(sock, buffer)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def set_buffers(sock: socket.socket, size: int) -> tuple[int, int]:
    """Ask for `size` bytes of receive and send buffer: beyond net.core.rmem_max/wmem_max when
    allowed (root: SO_RCVBUFFORCE), else up to them. Return what the kernel granted."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:  # not root: the kernel caps it at its maximum
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def udp_receive_buffer_drops() -> int | None:
    """Datagrams the kernel dropped so far, all sockets together, because a UDP socket's
    receive buffer was full (Linux: RcvbufErrors in /proc/net/snmp; None elsewhere)."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def socket_drops(addresses: list[Address]) -> int | None:
    """Datagrams the kernel dropped at these IPv4 sockets since they were opened (full receive
    buffer, among others: the `drops` column of Linux's /proc/net/udp; None elsewhere). IPv6
    addresses are left out (/proc/net/udp6)."""
    wanted = {f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
              for host, port in addresses if ":" not in host}
    try:
        with open("/proc/net/udp") as f:
            next(f)
            rows = [line.split() for line in f]
    except (OSError, StopIteration):
        return None
    return sum(int(row[-1]) for row in rows if len(row) > 12 and row[1] in wanted)


@dataclass
class SwarmReport:
    """How a swarm's start went: join attempts and failures, time, buffers, kernel drops."""

    nodes: int = 0
    joined: int = 0
    failed_attempts: int = 0  # joins that ended with an empty table and were tried again
    seconds: float = 0.0
    buffers: tuple[int, int] = (0, 0)  # (receive, send) bytes the kernel granted each socket
    socket_drops: int | None = None  # at the swarm's sockets (/proc/net/udp)
    rcvbuf_errors: int | None = None  # the whole host's, during the start (/proc/net/snmp)

    def line(self) -> str:
        def n(value: int | None) -> str:
            return "unknown" if value is None else f"{value:,}"

        return (f"{self.joined} of {self.nodes} nodes joined in {self.seconds:.1f} s "
                f"({self.failed_attempts} joins retried); socket buffers granted: receive "
                f"{self.buffers[0]:,} B, send {self.buffers[1]:,} B; receive-buffer drops: "
                f"{n(self.socket_drops)} at the swarm's sockets, {n(self.rcvbuf_errors)} on the "
                "host (RcvbufErrors)")


# The node's join-retry rule (node/upkeep.py), quicker: the swarm's peers are all on this host.
SWARM_RETRY = JoinRetry(first=0.2, quick=1, longest=1.6)


async def start_swarm(
    count: int, port_base: int, host: str = "127.0.0.1", settings: RoutingSettings | None = None,
    progress: Callable[[int, int], None] | None = None, buffer: int | None = SWARM_BUFFER,
    concurrency: int = 8, attempts: int = 4, report: SwarmReport | None = None,
) -> list[UdpDriver]:
    """`count` nodes on consecutive ports, each joined through a random one of those before it.

    Many nodes share one process and one event loop, so a burst of datagrams waits for it in
    the kernel: each socket asks for `buffer` bytes (the default is far above the kernel's
    212,992; None keeps the kernel's), at most `concurrency` nodes join at once (each join and
    the refresh lookups after it; a new one starts as one finishes), and a join that ends with
    an empty table (its requests dropped or too late) is tried again, through another node,
    after a pause, up to `attempts` times. `report` (a SwarmReport) is filled in: joins, time,
    buffers granted, drops.
    """
    report = report if report is not None else SwarmReport()
    report.nodes = count
    host_drops = udp_receive_buffer_drops()
    started = time.perf_counter()
    rng = random.Random()
    first = await start_node(host=host, port=port_base, settings=settings, buffer=buffer)
    drivers = [first]
    report.buffers = first.buffer_sizes()
    joined = [first]  # those a newcomer may join through
    slots = asyncio.Semaphore(concurrency)

    async def join(driver: UdpDriver) -> bool:
        async with slots:
            for attempt in range(attempts):
                result = await driver.join([joined[rng.randrange(len(joined))].address])
                if result.success:
                    await _settled(driver)
                    joined.append(driver)
                    if progress:
                        progress(len(joined), count)
                    return True
                report.failed_attempts += 1
                await asyncio.sleep(SWARM_RETRY.delay(attempt + 1))  # the loop is overloaded
            return False

    try:
        for i in range(1, count):
            drivers.append(await start_node(host=host, port=port_base + i, settings=settings,
                                            buffer=buffer))
        results = await asyncio.gather(*(join(d) for d in drivers[1:]))
    except BaseException:
        for driver in drivers:
            driver.close()
        raise
    report.joined = 1 + sum(results)
    report.seconds = time.perf_counter() - started
    report.socket_drops = socket_drops([d.address for d in drivers])
    after = udp_receive_buffer_drops()
    if after is not None and host_drops is not None:
        report.rcvbuf_errors = after - host_drops
    if report.joined < count:
        for driver in drivers:
            driver.close()
        raise RuntimeError(f"swarm: {report.line()}; is another process on those ports?")
    return drivers


async def _settled(driver: UdpDriver, limit: float = 10.0) -> None:
    """Wait until the node's lookups after its join (refreshing farther buckets) are over."""
    deadline = driver.loop.time() + limit
    while driver.node.routing.lookups_running and driver.loop.time() < deadline:
        await asyncio.sleep(0.02)
