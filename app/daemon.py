"""The kadtalk daemon: identity, node, UDP socket, audio and the control socket in one asyncio
process. Everything is event-driven: datagrams and timers drive the node (kadtalk.transport.udp),
a 20 ms timer drives the audio only while a call is talking, a 1 s timer sends call quality and
network status, and control clients are served as their lines arrive.

This module only wires the parts, each one concept: app/control.py (the control socket),
app/calls.py (the call, its audio ticker and quality; app/devices.py its devices),
app/callers.py (contacts, block list, who may ring), app/messages.py (text messages),
app/presence.py (our status, contacts'), app/contact_requests.py (contact requests),
app/network.py (joining, saved peers, NAT kind, lookups) and app/systemd.py (readiness).
Commands are the parts' cmd_NAME methods.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from kadtalk.node.identity import Identity
from kadtalk.node.layer import Event
from kadtalk.node.session import SessionSettings
from kadtalk.transport.udp import UdpDriver, start_node

from . import protocol, systemd
from .callers import Callers
from .calls import Call, Calls
from .config import Config, ConfigError, remove_temporaries
from .contact_requests import ContactRequests
from .control import Client, ControlServer, DaemonError, handlers
from .devices import Devices, check_at_start
from .doctor import Doctor
from .history import History
from .messages import Messages
from .network import Network, best_peers
from .presence import Presence

log = logging.getLogger(__name__)

LOCK_NAME = "daemon.lock"  # in the config directory: one daemon per identity, contacts, peers


def lock_config_dir(directory: Path) -> int:
    """Take the config directory for this process: an exclusive flock on DIR/daemon.lock, which
    holds our pid. Two daemons sharing one would answer as one node ID from two sockets and
    overwrite each other's contacts and peers. The kernel drops the lock when the process ends,
    however it ends; DaemonError names the other daemon's pid."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise DaemonError(f"cannot open {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise DaemonError(
            f"another kadtalk daemon (pid {other or 'unknown'}) uses the config directory "
            f"{directory}; stop it (`kill {other or 'PID'}`), or give this one its own --config-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Daemon:
    def __init__(self, config: Config, identity: Identity, web: bool = False,
                 check_devices: bool = False):
        self.config = config
        self.want_web = web
        self.check_devices = check_devices  # `kadtalk daemon`: a wrong device fails at start
        self.identity = identity
        self.node_id = identity.hex_id
        self.socket_path = config.socket_path
        self.control = ControlServer(self.socket_path, own_dir=not config.socket,
                                     greeting=self._greeting)
        broadcast = self.control.broadcast
        self.callers = Callers(config, broadcast)  # ConfigError names a broken file
        self.calls = Calls(config, self.callers, broadcast)
        self.network = Network(config, self.callers, broadcast)
        self.history = self.calls.history = History(config, self.callers)  # opened at start
        self.messages = Messages(self.callers, self.history, self.calls.hooks, config, broadcast)
        self.doctor = Doctor(self.network)
        self.control.commands = handlers(self, self.calls, self.calls.devices, self.callers,
                                         self.network, self.history, self.messages, self.doctor)
        self.presence = Presence(self.callers, self.history, broadcast)
        self.requests = ContactRequests(self.callers, self.history, config, broadcast)
        self.requests.presence = self.presence
        self.callers.added = self.presence.contact_added
        self.presence.extra_peers = self.requests.waiting_peers  # dialled on joining too
        self.requests.use_mailbox(self.messages.mailbox)  # requests to offline peers, too
        self.control.commands.update(handlers(self.presence, self.requests))
        self.driver: UdpDriver | None = None
        self.web: Any = None
        self.started = time.time()
        self.stopped = asyncio.Event()
        self._stopping = False
        self._second: asyncio.TimerHandle | None = None
        self._lock: int | None = None  # lock_config_dir's file, held from start to stop

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._lock = lock_config_dir(self.config.config_dir)  # first: the most basic refusal
        try:
            if self.check_devices:  # a wrong device fails now, not at a call
                check_at_start(self.config.capture, self.config.playback)
            remove_temporaries(self.config.config_dir)  # of saves a SIGKILL interrupted
            self.history.open()  # HistoryError (a ConfigError) names a broken file
            await self._start()
        except BaseException:
            self.history.close()
            self._unlock()
            raise

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        bootstrap = self.network.bootstrap_addresses()
        try:
            # known contacts first: under a flood, a caller in the address book has an admission
            # budget of its own (kadtalk.node.session, SessionSettings.trusted)
            self.driver = await start_node(
                self.identity, self.config.host, self.config.port, on_event=self._on_node_event,
                session_settings=SessionSettings(trusted=self.callers.trusted), traversal=True,
                settings=self.config.routing_settings,  # [routing]
            )
        except OSError as e:
            raise DaemonError(
                f"cannot bind UDP {self.config.host}:{self.config.port}: {e.strerror}; is another "
                "kadtalk daemon running? choose another port with --port"
            ) from e
        self.calls.driver = self.messages.driver = self.driver
        self.presence.driver = self.requests.driver = self.driver
        self.presence.start()  # the saved status, before any session
        self.messages.start(loop.time())  # kept prekeys and the mailbox's upkeep, before joining
        self.network.start(self.driver, loop.time())
        self.doctor.start(self.driver)  # remember where the node sends, for `doctor`
        try:
            await self.control.start()
        except BaseException:
            self.driver.close()
            raise
        if self.want_web:
            from .web import WebBridge, bind_problem

            try:
                self.web = await WebBridge.start(  # the token file: pages reconnect (docs/gui.md)
                    self.socket_path, self.config.web_host, self.config.web_port,
                    token_file=self.config.config_dir / "web-token")
            except OSError as e:
                await self.control.close()
                self.driver.close()
                raise DaemonError(bind_problem(e, self.config.web_host, self.config.web_port,
                                               "--web-port N or [web] port in config.toml")) from e
            print(f"web GUI: {self.web.url}", flush=True)
            for url in self.web.lan_urls:
                print(f"web GUI on the LAN: {url}", flush=True)
        self._second = loop.call_later(1.0, self._every_second)
        # the node joins now and again whenever its table is empty, with the join-retry rule's
        # back-off, and keeps its NAT mappings open once joined (kadtalk.node.upkeep)
        self.driver.node.keep_joined(bootstrap, loop.time())
        self.driver.service()
        devices = self.calls.devices
        log.info(
            "ready: node %s, udp %s:%d, control %s, audio capture %r playback %r",
            self.node_id, *self.driver.address, self.socket_path, devices.capture,
            devices.playback,
        )

    async def stop(self) -> None:
        """Hang up, save the routing contacts, close everything. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self.control.closing = True
        log.info("shutting down")
        self.calls.hang_up()
        self.presence.close()  # "offline" to contacts, before their sessions end
        self.requests.close()
        self.messages.close()
        if self._second is not None:
            self._second.cancel()
        self.network.save_peers()
        self.control.broadcast({"event": "shutdown"})
        if self.web is not None:
            await self.web.close()
        await self.control.close()
        if self.driver is not None:
            self.driver.close()
        self.history.close()
        self._unlock()
        self.stopped.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM / SIGINT, then stop cleanly. The signals are caught before
        the start, so one sent as soon as "ready" is logged still stops cleanly."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        try:
            await self.start()
        except BaseException:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            raise
        systemd.notify("READY=1")
        waiter = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait([asyncio.ensure_future(done.wait()), waiter],
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            systemd.notify("STOPPING=1")
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def best_peers(self, limit: int = 64) -> list[tuple[str, tuple[str, int]]]:
        """What the daemon saves to peers.json (network.best_peers)."""
        return best_peers(self.driver, limit)

    # -- wiring ---------------------------------------------------------------------------------

    def _greeting(self) -> list[dict[str, Any]]:
        return [{"event": "hello", "version": protocol.VERSION, "node_id": self.node_id},
                {"event": "network", **self.network.status()}]

    def _on_node_event(self, event: Event) -> None:
        """The driver's callback: it hands events out before transmitting, never re-entered."""
        try:
            self.calls.on_event(event)
            self.messages.on_event(event)
            self.presence.on_event(event)
            self.requests.on_event(event)
            self.network.on_event(event)
        except Exception:
            log.exception("handling %s failed", type(event).__name__)

    def _every_second(self) -> None:
        loop = asyncio.get_running_loop()
        self._second = loop.call_later(1.0, self._every_second)
        try:
            now = loop.time()
            self.calls.report(now)
            self.network.every_second(now)
        except Exception:
            log.exception("periodic work failed")

    # -- commands -------------------------------------------------------------------------------

    def cmd_status(self, client: Client, msg: dict) -> dict:
        call = self.calls.call
        return {
            "node_id": self.node_id, "version": protocol.VERSION,
            "uptime": round(time.time() - self.started, 1),
            "network": self.network.status(),
            "call": self.calls.info(call) if call is not None else None,
            "audio": self.calls.devices.status(),
            "contacts": len(self.callers.contacts.by_id), "clients": len(self.control.clients),
            "accept": self.config.accept,
            "blocked": sorted(set(self.config.block) | set(self.callers.blocked)),
            "traversal": (dict(self.driver.node.traversal.stats)
                          if self.driver is not None and self.driver.node.traversal else {}),
            "history": self.history.status(),
        }

    def cmd_id(self, client: Client, msg: dict) -> dict:
        return {"node_id": self.node_id}


# every command's handler, by name (the parts' classes: for the names and the docs)
COMMANDS = handlers(Daemon, Calls, Devices, Callers, Network, History, Messages, Doctor)
COMMANDS.update(handlers(Presence, ContactRequests))


def load_identity(config: Config) -> Identity:
    from kadtalk.node.identity import IdentityError, load_or_create

    try:
        return load_or_create(config.key_path)
    except IdentityError as e:
        raise DaemonError(str(e)) from None


async def run_daemon(config: Config, web: bool = False) -> None:
    """What `kadtalk daemon` runs. DaemonError / ConfigError for problems the user can fix."""
    identity = load_identity(config)
    # ConfigError names a broken file
    daemon = Daemon(config, identity, web=web or config.web, check_devices=True)
    await daemon.run()


__all__ = ["COMMANDS", "Call", "ConfigError", "Daemon", "DaemonError", "load_identity",
           "run_daemon"]
