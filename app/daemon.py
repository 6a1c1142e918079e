"""The kadtalk daemon: identity, node, UDP socket, audio and the control socket in one asyncio
process. Everything is event-driven: datagrams and timers drive the node (kadtalk.transport.udp),
a 20 ms timer drives the audio only while a call is talking, a 1 s timer sends call quality and
network status, and control clients are served as their lines arrive.

Control clients (the command-line client, the web bridge) speak docs/control.md over a Unix
socket that only the owner can open. Every event goes to every client; a client that goes away
changes nothing, and one that does not read is dropped once 1 MiB is queued for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from kadtalk.node.identity import Identity
from kadtalk.node.layer import Event
from kadtalk.node.routing.events import Joined
from kadtalk.node.traversal import AddressObserved, nat_kind
from kadtalk.node.routing.layer import TooManyLookups
from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    IncomingCall,
    MissedCall,
    Role,
)
from kadtalk.transport.audiopump import AudioPump
from kadtalk.transport.udp import UdpDriver, parse_hostport, start_node

from . import protocol
from .audio import AudioError, NotAllowed, check_devices, choose, offered, open_audio, swap
from .config import (
    Config, ConfigError, Contacts, load_blocked, load_peers, private_dir, remove_temporaries,
    save_blocked, save_peers,
)

log = logging.getLogger(__name__)

FRAME = 0.02
MAX_CLIENTS = 64
MAX_QUEUED = 1 << 20  # bytes queued for one client before it is dropped
# How long a client's `lookup` command waits for its answer: a limit of the control surface,
# not protocol timing (the lookup's own timeouts are the routing layer's, and it ends sooner).
LOOKUP_TIMEOUT = 30.0
# Rejoining, NAT keep-alives and address probes are the node's own upkeep (kadtalk.node.upkeep,
# kadtalk.node.traversal): the same code runs in the simulator.
SAVE_INTERVAL = 600.0  # seconds between saves of the routing table's best contacts
CODEC_DELAY = 0.0065  # Opus look-ahead at 48 kHz, part of the latency estimate


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


@dataclass
class Call:
    """The daemon's one current call (placed, ringing here, or talking)."""

    session_id: int
    peer: str  # hex node ID
    role: Role
    state: str
    audio: AudioPump | None = None
    muted: bool = False
    created: float = 0.0  # loop time
    talking_since: float | None = None  # loop time
    rtt: float | None = None  # seconds, from the key exchange
    key_exchange_at: float | None = None
    address: tuple[str, int] | None = None
    last: tuple[int, int, int, int, float] | None = None  # packets, bytes, lost, bytes_sent, at


class Client:
    __slots__ = ("writer", "peer", "closed", "task")

    def __init__(self, writer: asyncio.StreamWriter, peer: str):
        self.writer = writer
        self.peer = peer
        self.closed = False
        self.task = asyncio.current_task()

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > MAX_QUEUED:
            log.warning("control client %s does not read its events; dropping it", self.peer)
            self.closed = True
            transport.abort()
            return
        try:
            data = protocol.encode(message)
        except Exception as e:  # a bug; the client still gets an answer and keeps its connection
            log.exception("cannot encode a message for control client %s", self.peer)
            data = protocol.encode(_error(None, None, "internal", f"internal error: {e}"))
        self.writer.write(data)


class Daemon:
    def __init__(self, config: Config, identity: Identity, web: bool = False):
        self.config = config
        self.want_web = web
        self.identity = identity
        self.node_id = identity.hex_id
        remove_temporaries(config.config_dir)  # of saves a SIGKILL interrupted
        self.contacts = Contacts(config.contacts_path)  # ConfigError names a broken file
        self._recent_calls: dict[str, collections.deque] = {}  # caller -> times it rang, last minute
        self._blocked = load_blocked(config.blocked_path)  # from `kadtalk block`; ConfigError if broken
        self.clients: set[Client] = set()
        self.call: Call | None = None
        self.last_call: dict[str, Any] | None = None
        self.capture = config.capture
        self.playback = config.playback
        self.audio_error: str | None = None
        self.driver: UdpDriver | None = None
        self.server: asyncio.AbstractServer | None = None
        self.web: Any = None
        self.socket_path = config.socket_path
        self.started = time.time()
        self.stopped = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_t0 = 0.0
        self._tick_n = 0
        self._second: asyncio.TimerHandle | None = None
        self._network: tuple[int, bool] | None = None
        self._joined = False
        self._last_save = 0.0
        self._bootstrap: list[tuple[str, int]] = []
        self._observed: AddressObserved | None = None  # the latest answer to an address probe
        self._nat = "unknown"  # none | cone | symmetric | unknown (docs/testbed.md)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._bootstrap = self._bootstrap_addresses()
        try:
            self.driver = await start_node(
                self.identity, self.config.host, self.config.port, on_event=self._on_node_event,
                traversal=True,
            )
        except OSError as e:
            raise DaemonError(
                f"cannot bind UDP {self.config.host}:{self.config.port}: {e.strerror}; is another "
                "kadtalk daemon running? choose another port with --port"
            ) from e
        try:
            await self._start_control()
        except BaseException:
            self.driver.close()
            raise
        if self.want_web:
            from .web import WebBridge

            try:
                self.web = await WebBridge.start(
                    self.socket_path, self.config.web_host, self.config.web_port)
            except OSError as e:
                self.server.close()
                self.socket_path.unlink(missing_ok=True)
                self.driver.close()
                raise DaemonError(f"cannot serve the web GUI on {self.config.web_host}:"
                                  f"{self.config.web_port}: {e.strerror}") from e
            print(f"web GUI: {self.web.url}", flush=True)
        self._last_save = loop.time()
        self._second = loop.call_later(1.0, self._every_second)
        # the node joins now and again whenever its table is empty, with the join-retry rule's
        # back-off, and keeps its NAT mappings open once joined (kadtalk.node.upkeep)
        self.driver.node.keep_joined(self._bootstrap, loop.time())
        self.driver.service()
        log.info(
            "ready: node %s, udp %s:%d, control %s, audio capture %r playback %r",
            self.node_id, *self.driver.address, self.socket_path, self.capture, self.playback,
        )

    async def _start_control(self) -> None:
        path = self.socket_path
        if not self.config.socket:
            private_dir(path.parent)  # the runtime directory: owner-only
        else:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists() and not path.is_socket():
            raise DaemonError(f"control socket path {path} exists and is not a socket; "
                              "choose another --socket")
        if path.is_socket():
            try:
                _, writer = await asyncio.open_unix_connection(str(path))
            except OSError:
                path.unlink()  # a stale socket of a daemon that died
            else:
                writer.close()
                raise DaemonError(
                    f"another kadtalk daemon is running on {path}; stop it, or give this one "
                    "its own --socket"
                )
        old = os.umask(0o177)
        try:
            self.server = await asyncio.start_unix_server(
                self._serve_client, str(path), limit=protocol.MAX_LINE
            )
        except OSError as e:
            raise DaemonError(f"cannot create control socket {path}: {e.strerror}") from e
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    async def stop(self) -> None:
        """Hang up, save the routing contacts, close everything. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        log.info("shutting down")
        if self.call is not None and self.driver is not None:
            self.driver.hang_up(self.call.session_id)  # CallEnded comes synchronously
            if self.call is not None:
                self._end_call("hung_up", None)
        self._stop_ticker()
        if self._second is not None:
            self._second.cancel()
        self.save_peers()
        self._broadcast({"event": "shutdown"})
        if self.web is not None:
            await self.web.close()
        if self.server is not None:
            self.server.close()
            try:
                self.socket_path.unlink()
            except OSError:
                pass
        handlers = []
        for client in list(self.clients):
            client.closed = True
            try:
                await asyncio.wait_for(client.writer.drain(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            client.writer.close()
            if client.task is not None:
                handlers.append(client.task)
        if handlers:
            await asyncio.wait(handlers, timeout=1.0)  # they see end-of-file and return
        for task in list(self._tasks):
            task.cancel()
        if self.driver is not None:
            self.driver.close()
        self.stopped.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM / SIGINT, then stop cleanly."""
        loop = asyncio.get_running_loop()
        await self.start()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        _sd_notify("READY=1")
        waiter = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait([asyncio.ensure_future(done.wait()), waiter],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            _sd_notify("STOPPING=1")
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    # -- routing state --------------------------------------------------------------------------

    def _bootstrap_addresses(self) -> list[tuple[str, int]]:
        addresses: list[tuple[str, int]] = []
        for text in self.config.bootstrap:
            try:
                addresses.append(parse_hostport(text))
            except ValueError as e:
                raise DaemonError(f"bootstrap {e}") from None
        for _, addr in load_peers(self.config.peers_path):
            if addr not in addresses:
                addresses.append(addr)
        return addresses

    def best_peers(self, limit: int = 64) -> list[tuple[str, tuple[str, int]]]:
        """The table's longest-lived contacts, taken round-robin across buckets (Node.best_peers)."""
        return [(f"{node_id:040x}", tuple(addr))
                for node_id, addr in self.driver.node.best_peers(limit)]

    def save_peers(self) -> None:
        if self.driver is None:
            return
        peers = self.best_peers()
        if not peers:
            return  # keep the previous list: an empty table teaches nothing
        try:
            save_peers(self.config.peers_path, peers)
            log.info("saved %d routing contacts to %s", len(peers), self.config.peers_path)
        except OSError as e:
            log.warning("cannot save routing contacts to %s: %s", self.config.peers_path, e)

    def _nat_kind(self, event: AddressObserved) -> str:
        """The node's rule (kadtalk.node.traversal.nat_kind), given our local address as routed
        towards the observer: the I/O part, which only the daemon can do."""
        local = None
        if not event.symmetric:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.connect(event.observer)  # no packet: just the route's source address
                    local = (s.getsockname()[0], self.driver.address[1])
            except (OSError, TypeError, ValueError):
                pass
        return nat_kind(event, local)

    def network_status(self) -> dict[str, Any]:
        size = len(self.driver.node.routing.table) if self.driver is not None else 0
        host, port = self.driver.address if self.driver is not None else (None, None)
        return {"table_size": size, "reachable": size > 0, "joined": self._joined,
                "host": host, "port": port,
                "public_address": (f"{self._observed.public[0]}:{self._observed.public[1]}"
                                   if self._observed is not None else None),
                "nat": self._nat}

    # -- control clients ------------------------------------------------------------------------

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer, f"fd{writer.get_extra_info('socket').fileno()}")
        if len(self.clients) >= MAX_CLIENTS or self._stopping:
            client.send(_error(None, None, "too_many_clients", "too many control clients"))
            writer.close()
            return
        self.clients.add(client)
        log.debug("control client %s connected", client.peer)
        client.send({"event": "hello", "version": protocol.VERSION, "node_id": self.node_id})
        client.send({"event": "network", **self.network_status()})
        lines = protocol.LineBuffer()
        try:
            while not client.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for line in lines.feed(data):
                    if line is None:
                        client.send(_error(None, None, "line_too_long",
                                           f"a request line has at most {protocol.MAX_LINE} bytes"))
                    elif line.strip():
                        try:
                            self._handle_line(client, line)
                        except Exception as e:  # a bug: answer, keep the connection
                            log.exception("control line failed")
                            client.send(_error(None, None, "internal", f"internal error: {e}"))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the daemon is stopping
        finally:
            self.clients.discard(client)
            client.closed = True
            writer.close()
            log.debug("control client %s went away", client.peer)

    def _handle_line(self, client: Client, line: bytes) -> None:
        req = None
        cmd = None
        try:
            message = protocol.parse(line)
            cmd, req = message["cmd"], message.get("req")
            handler = COMMANDS.get(cmd)
            if handler is None:
                raise protocol.BadRequest(
                    "unknown_command", f"unknown command {cmd!r}; known: {', '.join(sorted(COMMANDS))}"
                )
            result = handler(self, client, message)
        except protocol.BadRequest as e:
            client.send(_error(cmd, req, e.code, e.message))
            return
        except Exception as e:  # a bug must not take the daemon down
            log.exception("command %r failed", cmd)
            client.send(_error(cmd, req, "internal", f"internal error: {e}"))
            return
        if asyncio.iscoroutine(result):
            async def later() -> None:
                try:
                    reply = await result
                except protocol.BadRequest as e:
                    client.send(_error(cmd, req, e.code, e.message))
                except Exception as e:
                    log.exception("command %r failed", cmd)
                    client.send(_error(cmd, req, "internal", f"internal error: {e}"))
                else:
                    client.send(_reply(cmd, req, reply))

            self._spawn(later())
        else:
            client.send(_reply(cmd, req, result))

    def _broadcast(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.send(event)
            if client.closed:
                self.clients.discard(client)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- node events ----------------------------------------------------------------------------

    def _on_node_event(self, event: Event) -> None:
        """The driver's callback: it hands events out after transmitting, never re-entered."""
        try:
            self._node_event(event)
        except Exception:
            log.exception("handling %s failed", type(event).__name__)

    def _node_event(self, event: Event) -> None:
        call = self.call
        kind = type(event)
        if call is not None and call.audio is not None and getattr(event, "session_id", None) == call.session_id:
            if call.audio.on_event(event):
                return
        if kind is CallProgress:
            if call is None or call.session_id != event.session_id:
                return
            call.state = event.state.value
            loop_now = event.at
            if event.state is CallState.KEY_EXCHANGE:
                call.key_exchange_at = loop_now
            elif event.state is CallState.RINGING and call.key_exchange_at is not None:
                call.rtt = loop_now - call.key_exchange_at
            if event.state is CallState.TALKING:
                call.talking_since = loop_now
                self._start_ticker()
            self._broadcast(self._call_event(call))
        elif kind is IncomingCall:
            peer = f"{event.peer_id:040x}"
            refusal = self._refusal(peer, event.at)
            if refusal is not None:
                # Unwanted: declined before it rings; the user only sees a missed call.
                self.driver.node.decline(self.driver.loop.time(), event.session_id)
                self.driver.service()
                log.info("refused a call from %s: %s", peer, refusal)
                self._broadcast({"event": "missed", "peer": peer, "name": self.contacts.name_of(peer),
                                 "reason": refusal})
                return
            if call is not None:
                # one call at a time: a second caller is declined (the session layer already
                # answers BUSY while a call rings or talks)
                self.driver.node.decline(self.driver.loop.time(), event.session_id)
                self.driver.service()
                self._broadcast({"event": "missed", "peer": peer, "name": self.contacts.name_of(peer),
                                 "reason": "busy"})
                return
            self.call = call = Call(event.session_id, peer, Role.CALLEE, "ringing",
                                    created=event.at, address=tuple(event.addr))
            session = self.driver.node.session.sessions.get(event.session_id)
            if session is not None:
                call.rtt = max(0.0, event.at - session.started)
            log.info("incoming call from %s (%s)", peer, self.contacts.name_of(peer) or "unknown")
            self._broadcast({
                "event": "incoming", "session": event.session_id, "peer": peer,
                "name": self.contacts.name_of(peer), "address": f"{event.addr[0]}:{event.addr[1]}",
            })
            self._broadcast(self._call_event(call))
        elif kind is MissedCall:
            peer = f"{event.peer_id:040x}"
            self._broadcast({"event": "missed", "peer": peer, "name": self.contacts.name_of(peer),
                             "reason": "busy"})
        elif kind is CallEnded:
            if call is not None and call.session_id == event.session_id:
                self._end_call(event.reason.value, event.stats)
        elif kind is Joined:
            log.info("join: %d contacts after %d RPCs (%d timeouts)",
                     event.table_size, event.rpcs, event.timeouts)
            self._joined = event.success
            if event.success:
                self.save_peers()  # a daemon killed before its shutdown save still rejoins
            self._check_network(force=True)  # after the save: clients may rely on peers.json
        elif kind is AddressObserved:
            self._observed = event
            self._nat = self._nat_kind(event)
            self._check_network()

    def _call_event(self, call: Call, reason: str | None = None) -> dict[str, Any]:
        event = {"event": "call", **self._call_info(call)}
        if reason is not None:
            event["reason"] = reason
        return event

    def _call_info(self, call: Call) -> dict[str, Any]:
        loop_now = asyncio.get_running_loop().time()
        return {
            "session": call.session_id, "peer": call.peer, "name": self.contacts.name_of(call.peer),
            "role": call.role.value, "state": call.state, "muted": call.muted,
            "duration": round(loop_now - call.talking_since, 3) if call.talking_since else 0.0,
            "address": f"{call.address[0]}:{call.address[1]}" if call.address else None,
        }

    def _end_call(self, reason: str, stats: Any) -> None:
        call = self.call
        if call is None:
            return
        self.call = None
        self._stop_ticker()
        call.state = "ended"
        summary = self._call_event(call, reason)
        summary["stats"] = _session_stats(stats) if stats is not None else None
        if call.audio is not None:
            summary["media"] = _jsonable(call.audio.stats())
            call.audio.close()
            call.audio = None
        self.last_call = summary
        log.info("call with %s ended: %s", call.peer, reason)
        self._broadcast(summary)

    # -- audio ticks ----------------------------------------------------------------------------

    def _start_ticker(self) -> None:
        self._stop_ticker()
        loop = asyncio.get_running_loop()
        self._tick_t0 = loop.time()
        self._tick_n = 0
        self._tick_handle = loop.call_soon(self._tick)

    def _stop_ticker(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None

    def _tick(self) -> None:
        call = self.call
        driver = self.driver
        if call is None or call.state != "talking" or driver is None:
            self._tick_handle = None
            return
        loop = driver.loop
        now = loop.time()
        audio = call.audio
        if audio is not None:
            payload = audio.tick(now, call.muted)
            if payload is not None:
                driver.node.send_media(call.session_id, payload, now)
                driver.service()
            while audio.errors:
                message = audio.errors.pop(0)
                self.audio_error = message
                self._broadcast({"event": "audio_error", "message": message})
        if self.call is not call:  # send_media may end the call (sequence space exhausted)
            return
        self._tick_n += 1
        due = self._tick_t0 + self._tick_n * FRAME
        if due < now - 5 * FRAME:  # the loop was held up: drop the lost ticks, do not burst
            self._tick_t0, self._tick_n, due = now, 0, now
        self._tick_handle = loop.call_at(due, self._tick)

    # -- once a second --------------------------------------------------------------------------

    def _every_second(self) -> None:
        loop = asyncio.get_running_loop()
        self._second = loop.call_later(1.0, self._every_second)
        try:
            call = self.call
            if call is not None and call.state == "talking":
                self._broadcast(self._quality(call, loop.time()))
            self._check_network()
            now = loop.time()
            if now - self._last_save >= SAVE_INTERVAL:
                self._last_save = now
                self.save_peers()
        except Exception:
            log.exception("periodic work failed")

    def _check_network(self, force: bool = False) -> None:
        status = self.network_status()
        key = (status["table_size"], status["reachable"], status["public_address"], status["nat"])
        if force or key != self._network:
            self._network = key
            self._broadcast({"event": "network", **status})

    def _quality(self, call: Call, now: float) -> dict[str, Any]:
        session = self.driver.node.session
        stats = session.session_stats(call.session_id) if session is not None else None
        event: dict[str, Any] = {"event": "quality", "session": call.session_id,
                                 "duration": round(now - (call.talking_since or now), 3)}
        if stats is None:
            return event
        last = call.last or (0, 0, 0, 0, call.talking_since or now)
        dt = max(now - last[4], 1e-3)
        packets, lost = stats.packets - last[0], stats.lost - last[2]
        call.last = (stats.packets, stats.bytes, stats.lost, stats.bytes_sent, now)
        media = call.audio.stats() if call.audio is not None and call.audio.media else {}
        target = media.get("target_delay") or 0.0
        event.update(
            rx_kbps=round((stats.bytes - last[1]) * 8 / dt / 1000, 2),
            tx_kbps=round((stats.bytes_sent - last[3]) * 8 / dt / 1000, 2),
            bitrate_kbps=round(media.get("bitrate", 0) / 1000, 2),
            loss=round(max(lost, 0) / max(packets + lost, 1), 4),
            jitter_ms=round(stats.jitter * 1000, 2),
            rtt_ms=round(call.rtt * 1000, 2) if call.rtt is not None else None,
            latency_ms=round(((call.rtt or 0.0) / 2 + target + FRAME + CODEC_DELAY) * 1000, 1),
            packets_rx=stats.packets, packets_tx=stats.packets_sent, lost=stats.lost,
            concealed=media.get("concealed", 0), fec=media.get("fec", 0),
        )
        return event

    # -- commands -------------------------------------------------------------------------------

    def cmd_status(self, client: Client, msg: dict) -> dict:
        return {
            "node_id": self.node_id, "version": protocol.VERSION,
            "uptime": round(time.time() - self.started, 1),
            "network": self.network_status(),
            "call": self._call_info(self.call) if self.call is not None else None,
            "audio": {"capture": self.capture, "playback": self.playback, "error": self.audio_error},
            "contacts": len(self.contacts.by_id), "clients": len(self.clients),
            "traversal": (dict(self.driver.node.traversal.stats)
                          if self.driver is not None and self.driver.node.traversal else {}),
        }

    def cmd_id(self, client: Client, msg: dict) -> dict:
        return {"node_id": self.node_id}

    def _target(self, msg: dict, key: str = "to") -> str:
        text = msg.get(key)
        if not isinstance(text, str) or not text.strip():
            raise protocol.BadRequest("bad_argument", f'"{key}" must be a node ID or a contact name')
        node_id = self.contacts.resolve(text)
        if node_id is None:
            raise protocol.BadRequest(
                "unknown_contact", f"{text!r} is neither a node ID (40 hex digits) nor a contact"
            )
        return node_id

    def cmd_dial(self, client: Client, msg: dict) -> dict:
        peer = self._target(msg)
        if peer == self.node_id:
            raise protocol.BadRequest("bad_argument", "that is this node's own ID")
        if self.call is not None:
            raise protocol.BadRequest("busy", f"already in a call ({self.call.state}); hang up first")
        audio = self._open_audio()
        # The call's first events (dialling; key exchange when the peer is in the table; the
        # end when no lookup can start) come from the event loop after driver.call returns
        # (transport/udp.py), so self.call is set when they arrive.
        try:
            session_id = self.driver.call(int(peer, 16))
        except Exception:
            audio.close()
            raise
        self.call = Call(session_id, peer, Role.CALLER, "dialling", audio=audio,
                         created=self.driver.loop.time())
        audio.attach(session_id)
        log.info("dialling %s (%s)", peer, self.contacts.name_of(peer) or "unknown")
        return {"session": session_id, "peer": peer, "name": self.contacts.name_of(peer)}

    def _open_audio(self) -> AudioPump:
        try:
            audio = open_audio(self.capture, self.playback)
        except AudioError as e:
            self.audio_error = str(e)
            self._broadcast({"event": "audio_error", "message": str(e)})
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.audio_error = None
        return audio

    def _ringing(self) -> Call:
        call = self.call
        if call is None or call.role is not Role.CALLEE or call.state != "ringing":
            raise protocol.BadRequest("no_call", "no incoming call is ringing")
        return call

    def cmd_answer(self, client: Client, msg: dict) -> dict:
        call = self._ringing()
        if call.audio is None:
            call.audio = self._open_audio()  # on failure it keeps ringing: fix, then answer
            call.audio.attach(call.session_id)
        if not self.driver.answer(call.session_id):
            if self.call is not call and call.audio is not None:
                call.audio.close()
            raise protocol.BadRequest("no_call", "the call ended before it could be answered")
        return {"session": call.session_id}

    def cmd_decline(self, client: Client, msg: dict) -> dict:
        call = self._ringing()
        done = self.driver.node.decline(self.driver.loop.time(), call.session_id)
        self.driver.service()
        if self.call is call:  # CallEnded normally ended it synchronously
            self._end_call("declined", None)
        return {"session": call.session_id, "declined": done}

    def cmd_hangup(self, client: Client, msg: dict) -> dict:
        call = self.call
        if call is None:
            raise protocol.BadRequest("no_call", "there is no call to hang up")
        self.driver.hang_up(call.session_id)
        if self.call is call:
            self._end_call("hung_up", None)
        return {"session": call.session_id}

    def cmd_mute(self, client: Client, msg: dict) -> dict:
        call = self.call
        if call is None:
            raise protocol.BadRequest("no_call", "mute applies to a call; there is none")
        on = msg.get("on", not call.muted)
        if not isinstance(on, bool):
            raise protocol.BadRequest("bad_argument", '"on" must be true or false')
        call.muted = on
        self._broadcast(self._call_event(call))
        return {"muted": on}

    async def cmd_lookup(self, client: Client, msg: dict) -> dict:
        peer = self._target(msg)
        started = self.driver.loop.time()
        try:
            result = await asyncio.wait_for(self.driver.find_peer(int(peer, 16)), LOOKUP_TIMEOUT)
        except asyncio.TimeoutError:
            raise protocol.BadRequest("timeout", "the lookup took too long") from None
        except TooManyLookups:
            raise protocol.BadRequest("busy", "too many lookups are running; try again") from None
        found = result.peer is not None
        return {
            "peer": peer, "found": found,
            "address": f"{result.peer[1][0]}:{result.peer[1][1]}" if found else None,
            "rpcs": result.rpcs, "hops": result.hops, "timeouts": result.timeouts,
            "ms": round((self.driver.loop.time() - started) * 1000, 1),
        }

    def _refusal(self, peer: str, now: float) -> str | None:
        """Why a verified caller must not ring: blocked, not a contact, or calling too often."""
        if peer in self.config.block or peer in self._blocked:
            return "blocked"
        if self.config.accept == "contacts" and self.contacts.name_of(peer) is None:
            return "not_a_contact"
        recent = self._recent_calls.setdefault(peer, collections.deque())
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= self.config.calls_per_minute:
            return "too_many_calls"
        recent.append(now)
        if len(self._recent_calls) > 1024:  # forget callers with nothing recent
            self._recent_calls = {p: q for p, q in self._recent_calls.items() if q and q[-1] > now - 60}
        return None

    def cmd_block(self, client: Client, msg: dict) -> dict:
        peer = self.contacts.resolve(msg.get("who"))
        if peer is None:
            raise protocol.BadRequest("bad_argument", '"who" must be a node ID or a contact name')
        if peer not in self._blocked:
            self._blocked.append(peer)
            self._save_blocked()
        return {"blocked": self._blocked_list()}

    def cmd_unblock(self, client: Client, msg: dict) -> dict:
        peer = self.contacts.resolve(msg.get("who"))
        if peer in self.config.block:
            raise protocol.BadRequest(
                "bad_argument", f"{peer} is blocked in {self.config.config_dir / 'config.toml'}")
        if peer is None or peer not in self._blocked:
            raise protocol.BadRequest("bad_argument", f"{msg.get('who')!r} is not blocked")
        self._blocked.remove(peer)
        self._save_blocked()
        return {"blocked": self._blocked_list()}

    def _blocked_list(self) -> list[str]:
        return sorted(set(self.config.block) | set(self._blocked))

    def _save_blocked(self) -> None:
        try:
            save_blocked(self.config.blocked_path, self._blocked)
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.config.blocked_path}: {e.strerror}") from None

    def cmd_accept(self, client: Client, msg: dict) -> dict:
        mode = msg.get("from")
        if mode not in ("anyone", "contacts"):
            raise protocol.BadRequest("bad_argument", '"from" must be "anyone" or "contacts"')
        self.config.accept = mode
        return {"accept": mode}

    def cmd_contacts(self, client: Client, msg: dict) -> dict:
        return {"contacts": self._contact_list()}

    def _contact_list(self) -> list[dict[str, str]]:
        return [{"peer": c["id"], "name": c["name"]} for c in self.contacts.list()]

    def _contacts_changed(self) -> None:
        self._broadcast({"event": "contacts", "contacts": self._contact_list()})

    def _contact_op(self, action: Callable[[], dict]) -> dict:
        try:
            entry = action()
        except ValueError as e:
            raise protocol.BadRequest("bad_argument", str(e)) from None
        except KeyError as e:
            raise protocol.BadRequest("unknown_contact", e.args[0]) from None
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"cannot save {self.contacts.path}: {e.strerror}") from None
        self._contacts_changed()
        return {"peer": entry["id"], "name": entry["name"]}

    def cmd_add_contact(self, client: Client, msg: dict) -> dict:
        return self._contact_op(lambda: self.contacts.add(msg.get("peer"), msg.get("name")))

    def cmd_rename_contact(self, client: Client, msg: dict) -> dict:
        return self._contact_op(lambda: self.contacts.rename(msg.get("who"), msg.get("name")))

    def cmd_remove_contact(self, client: Client, msg: dict) -> dict:
        return self._contact_op(lambda: self.contacts.remove(msg.get("who")))

    def _choose(self, kind: str, value: Any) -> str | None:
        """A device a client named, if it may choose it (audio.choose: configured, listed, or a
        WAV file in the recordings directory)."""
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > 4096:
            raise protocol.BadRequest("bad_argument", f'"{kind}" must be a device name')
        configured = (self.config.capture, self.config.playback)
        try:
            if value.strip().startswith("wav:"):
                self.config.recordings_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            return choose(value, kind, configured, self.config.recordings_path)
        except NotAllowed as e:
            raise protocol.BadRequest("not_allowed", str(e)) from None
        except (ValueError, ConfigError) as e:
            raise protocol.BadRequest("bad_argument", f"{kind} {value!r}: {e}") from None
        except OSError as e:
            raise protocol.BadRequest(
                "io_error", f"recordings directory {self.config.recordings_path}: {e}") from None

    def cmd_devices(self, client: Client, msg: dict) -> dict:
        fixed = ["none", "default", self.config.capture, self.config.playback]
        lists = {kind: list(dict.fromkeys(fixed + (["tone:440"] if kind == "capture" else [])
                                          + offered(kind))) for kind in ("capture", "playback")}
        return {**lists, "recordings_dir": str(self.config.recordings_path)}

    def cmd_set_audio(self, client: Client, msg: dict) -> dict:
        capture = self._choose("capture", msg.get("capture"))
        playback = self._choose("playback", msg.get("playback"))
        try:
            call = self.call
            if call is not None and call.audio is not None:
                swap(call.audio, capture, playback)
            else:
                check_devices(capture or self.capture, playback or self.playback)
        except AudioError as e:
            self.audio_error = str(e)
            raise protocol.BadRequest("audio_device", str(e)) from None
        self.capture = capture or self.capture
        self.playback = playback or self.playback
        self.audio_error = None
        audio = {"capture": self.capture, "playback": self.playback}
        self._broadcast({"event": "audio", **audio})
        return audio

    def cmd_stats(self, client: Client, msg: dict) -> dict:
        call = self.call
        if call is None:
            if self.last_call is None:
                raise protocol.BadRequest("no_call", "no call yet")
            return {"current": False, "call": self.last_call}
        session = self.driver.node.session
        stats = session.session_stats(call.session_id) if session is not None else None
        info = self._call_info(call)
        info["stats"] = _session_stats(stats) if stats is not None else None
        info["media"] = _jsonable(call.audio.stats()) if call.audio is not None else None
        info["rtt_ms"] = round(call.rtt * 1000, 2) if call.rtt is not None else None
        return {"current": True, "call": info}


COMMANDS: dict[str, Callable] = {
    "status": Daemon.cmd_status,
    "id": Daemon.cmd_id,
    "dial": Daemon.cmd_dial,
    "answer": Daemon.cmd_answer,
    "decline": Daemon.cmd_decline,
    "hangup": Daemon.cmd_hangup,
    "mute": Daemon.cmd_mute,
    "lookup": Daemon.cmd_lookup,
    "contacts": Daemon.cmd_contacts,
    "add_contact": Daemon.cmd_add_contact,
    "rename_contact": Daemon.cmd_rename_contact,
    "remove_contact": Daemon.cmd_remove_contact,
    "set_audio": Daemon.cmd_set_audio,
    "devices": Daemon.cmd_devices,
    "stats": Daemon.cmd_stats,
    "block": Daemon.cmd_block,
    "unblock": Daemon.cmd_unblock,
    "accept": Daemon.cmd_accept,
}


def _reply(cmd: str, req: Any, result: dict) -> dict:
    out = {"reply": cmd, "ok": True}
    if req is not None:
        out["req"] = req
    out.update(result)
    return out


def _error(cmd: Any, req: Any, code: str, message: str) -> dict:
    out = {"reply": cmd if isinstance(cmd, str) else None, "ok": False, "error": code,
           "message": message}
    if req is not None:
        out["req"] = req
    return out


def _session_stats(stats: Any) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in stats.__slots__}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
            for k, v in data.items()}


def _sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about readiness; no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
    except OSError as e:
        log.debug("sd_notify failed: %s", e)


def load_identity(config: Config) -> Identity:
    from kadtalk.node.identity import IdentityError, load_or_create

    try:
        return load_or_create(config.key_path)
    except IdentityError as e:
        raise DaemonError(str(e)) from None


async def run_daemon(config: Config, web: bool = False) -> None:
    """What `kadtalk daemon` runs. DaemonError / ConfigError for problems the user can fix."""
    identity = load_identity(config)
    daemon = Daemon(config, identity, web=web or config.web)
    await daemon.run()


__all__ = ["Call", "ConfigError", "Daemon", "DaemonError", "load_identity", "run_daemon"]
