"""An asyncio client of the control socket (docs/control.md), used by the command-line client
and the tests."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any, Callable

from . import protocol


class ControlError(Exception):
    """The daemon answered a request with an error."""

    def __init__(self, reply: dict[str, Any]):
        super().__init__(reply.get("message") or reply.get("error"))
        self.code = reply.get("error")
        self.reply = reply


class NotRunning(Exception):
    pass


class EventLog:
    """The daemon's events as a client saw them, and waits for one that matches (the part of a
    control client the CLI's and the testbed's waits use; the testbed's tests script it)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []  # every event so far, for `wait_event`
        self._waiters: list[tuple[Callable[[dict], bool], asyncio.Future]] = []

    def push(self, message: dict[str, Any]) -> None:
        """An event arrived: keep it and wake the waits it matches."""
        self.seen.append(message)
        for item in list(self._waiters):
            predicate, future = item
            if not future.done() and predicate(message):
                future.set_result(message)
                self._waiters.remove(item)

    async def wait_event(self, predicate: Callable[[dict], bool], timeout: float = 10.0,
                         since: int = 0) -> dict[str, Any]:
        """The first event (from index `since` of `seen`) that matches."""
        for message in self.seen[since:]:
            if predicate(message):
                return message
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return await asyncio.wait_for(future, timeout)


class ControlClient(EventLog):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__()
        self.reader = reader
        self.writer = writer
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[Any, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._task = asyncio.ensure_future(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, path: Path | str) -> ControlClient:
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(path), limit=16 * protocol.MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NotRunning(
                f"no kadtalk daemon is listening on {path} ({e.strerror}); start one with "
                "`kadtalk daemon`") from None
        except PermissionError as e:
            raise NotRunning(f"cannot open {path}: {e.strerror}") from None
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "reply" in message and message.get("req") in self._replies:
                    future = self._replies.pop(message["req"])
                    if not future.done():
                        future.set_result(message)
                else:  # an event, or an error reply to no request (a huge line)
                    self.events.put_nowait(message)
                    self.push(message)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.closed.set()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(NotRunning("the daemon closed the connection"))
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(NotRunning("the daemon closed the connection"))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, cmd: str, check: bool = True, timeout: float = 60.0,
                      **args: Any) -> dict[str, Any]:
        """Send a command and await its reply; ControlError when it failed (if `check`)."""
        if self.closed.is_set():
            raise NotRunning("the daemon closed the connection")
        req = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._replies[req] = future
        self.writer.write(protocol.encode({"cmd": cmd, "req": req, **args}))
        await self.writer.drain()
        reply = await asyncio.wait_for(future, timeout)
        if check and not reply.get("ok"):
            raise ControlError(reply)
        return reply

    async def close(self) -> None:
        self._task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (OSError, ConnectionError):
            pass
