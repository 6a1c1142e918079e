"""The control socket (docs/control.md): a Unix socket only the owner can open. A client sends one
JSON request a line and gets one reply each; events go to every client. The server knows no
command: it dispatches to the handlers the daemon gives it (`handlers`). A client that goes away
changes nothing, one that does not read is dropped once MAX_QUEUED bytes wait for it, and a
handler's bug is answered `internal` without closing the connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any, Callable

from . import protocol
from .config import private_dir

log = logging.getLogger(__name__)

MAX_CLIENTS = 64
MAX_QUEUED = 1 << 20  # bytes queued for one client before it is dropped

# handler(client, request) -> a reply's fields, or a coroutine giving them; protocol.BadRequest
# for an error reply
Handler = Callable[["Client", dict], Any]


class DaemonError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def handlers(*parts: Any) -> dict[str, Handler]:
    """The commands of `parts` (objects, or classes for the names alone): each method
    cmd_NAME handles command NAME."""
    return {name[4:]: getattr(part, name) for part in parts for name in dir(part)
            if name.startswith("cmd_")}


def reply(cmd: str, req: Any, result: dict) -> dict:
    out = {"reply": cmd, "ok": True}
    if req is not None:
        out["req"] = req
    out.update(result)
    return out


def error(cmd: Any, req: Any, code: str, message: str) -> dict:
    out = {"reply": cmd if isinstance(cmd, str) else None, "ok": False, "error": code,
           "message": message}
    if req is not None:
        out["req"] = req
    return out


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
            data = protocol.encode(error(None, None, "internal", f"internal error: {e}"))
        self.writer.write(data)


class ControlServer:
    """The socket at `path` and its clients. `own_dir`: the default runtime directory, made
    owner-only; a directory the user named (--socket) is only created. `greeting()`: the events
    a new client gets first."""

    def __init__(self, path: Path, own_dir: bool, greeting: Callable[[], list[dict]]):
        self.path = path
        self.own_dir = own_dir
        self.greeting = greeting
        self.commands: dict[str, Handler] = {}
        self.clients: set[Client] = set()
        self.closing = False  # no new clients
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        path = self.path
        if self.own_dir:
            private_dir(path.parent)
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
            self._server = await asyncio.start_unix_server(
                self._serve_client, str(path), limit=protocol.MAX_LINE
            )
        except OSError as e:
            raise DaemonError(f"cannot create control socket {path}: {e.strerror}") from e
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        """Remove the socket, let each client read what is queued for it (a second at most),
        close them and cancel the commands still running."""
        self.closing = True
        if self._server is not None:
            self._server.close()
            try:
                self.path.unlink()
            except OSError:
                pass
        serving = []
        for client in list(self.clients):
            client.closed = True
            try:
                await asyncio.wait_for(client.writer.drain(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
            client.writer.close()
            if client.task is not None:
                serving.append(client.task)
        if serving:
            await asyncio.wait(serving, timeout=1.0)  # they see end-of-file and return
        for task in list(self._tasks):
            task.cancel()

    def broadcast(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.send(event)
            if client.closed:
                self.clients.discard(client)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(writer, f"fd{writer.get_extra_info('socket').fileno()}")
        if len(self.clients) >= MAX_CLIENTS or self.closing:
            client.send(error(None, None, "too_many_clients", "too many control clients"))
            writer.close()
            return
        self.clients.add(client)
        log.debug("control client %s connected", client.peer)
        for event in self.greeting():
            client.send(event)
        lines = protocol.LineBuffer()
        try:
            while not client.closed:
                data = await reader.read(65536)
                if not data:
                    break
                for line in lines.feed(data):
                    if line is None:
                        client.send(error(None, None, "line_too_long",
                                          f"a request line has at most {protocol.MAX_LINE} bytes"))
                    elif line.strip():
                        try:
                            self.handle_line(client, line)
                        except Exception as e:  # a bug: answer, keep the connection
                            log.exception("control line failed")
                            client.send(error(None, None, "internal", f"internal error: {e}"))
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the client went away, or the daemon is stopping
        finally:
            self.clients.discard(client)
            client.closed = True
            writer.close()
            log.debug("control client %s went away", client.peer)

    def handle_line(self, client: Client, line: bytes) -> None:
        """One request line: exactly one reply, now or (a coroutine handler) when it is done."""
        req = None
        cmd = None
        try:
            message = protocol.parse(line)
            cmd, req = message["cmd"], message.get("req")
            handler = self.commands.get(cmd)
            if handler is None:
                raise protocol.BadRequest(
                    "unknown_command",
                    f"unknown command {cmd!r}; known: {', '.join(sorted(self.commands))}"
                )
            result = handler(client, message)
        except protocol.BadRequest as e:
            client.send(error(cmd, req, e.code, e.message))
            return
        except Exception as e:  # a bug must not take the daemon down
            log.exception("command %r failed", cmd)
            client.send(error(cmd, req, "internal", f"internal error: {e}"))
            return
        if asyncio.iscoroutine(result):
            async def later() -> None:
                try:
                    answer = await result
                except protocol.BadRequest as e:
                    client.send(error(cmd, req, e.code, e.message))
                except Exception as e:
                    log.exception("command %r failed", cmd)
                    client.send(error(cmd, req, "internal", f"internal error: {e}"))
                else:
                    client.send(reply(cmd, req, answer))

            task = asyncio.ensure_future(later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            client.send(reply(cmd, req, result))
