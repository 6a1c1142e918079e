"""Helpers for the calling-service tests: daemons in this process (asyncio) or as real
`kadtalk daemon` subprocesses, and control clients. Nothing sleeps: every wait is for an event,
a line of output or a process exit, with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kadtalk.app.client import ControlClient
from kadtalk.app.config import Config
from kadtalk.app.daemon import Daemon, load_identity

KADTALK = [sys.executable, "-m", "kadtalk"]


def short_tmp(tmp_path: Path) -> Path:
    """Unix socket paths are limited to 108 bytes; pytest's tmp paths can be longer."""
    return tmp_path


async def start_daemon(root: Path, name: str, **settings) -> Daemon:
    """A daemon on 127.0.0.1 (any free UDP port), config dir root/name, socket root/name.sock."""
    directory = root / name
    config = Config(host="127.0.0.1", port=0, capture="none", playback="none",
                    socket=str(root / f"{name}.sock"), config_dir=directory,
                    recordings_dir=str(root / f"{name}-recordings"))
    for key, value in settings.items():
        setattr(config, key, value)
    daemon = Daemon(config, load_identity(config), web=settings.pop("web", False))
    await daemon.start()
    return daemon


async def connect(daemon_or_path) -> ControlClient:
    path = daemon_or_path.socket_path if isinstance(daemon_or_path, Daemon) else daemon_or_path
    client = await ControlClient.connect(path)
    await client.wait_event(lambda e: e.get("event") == "hello", timeout=5)
    return client


class Pair:
    """Two daemons on loopback: `a` (the first node) and `b`, joined through it, with a control
    client each (`ca`, `cb`)."""

    def __init__(self, root: Path):
        self.root = root
        self.a = self.b = self.ca = self.cb = None

    async def start_b(self, **settings) -> None:
        """(Re)start b, joined through a, and connect `cb` once b's table is not empty."""
        self.b = await start_daemon(self.root, "b", **settings,
                                    bootstrap=[f"127.0.0.1:{self.a.driver.address[1]}"])
        self.cb = await connect(self.b)
        await self.cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])

    async def stop_b(self) -> None:
        if self.cb is not None:
            await self.cb.close()
            self.cb = None
        if self.b is not None:
            await self.b.stop()
            self.b = None


@contextlib.asynccontextmanager
async def joined_pair(root: Path, a_settings: dict | None = None, b_settings: dict | None = None):
    """The two-daemon scenario (a Pair), stopped on the way out."""
    pair = Pair(root)
    pair.a = await start_daemon(root, "a", **(a_settings or {}))
    try:
        pair.ca = await connect(pair.a)
        await pair.start_b(**(b_settings or {}))
        yield pair
    finally:
        await pair.stop_b()
        if pair.ca is not None:
            await pair.ca.close()
        await pair.a.stop()


def is_call(state: str, reason: str | None = None):
    return lambda e: (e.get("event") == "call" and e.get("state") == state
                      and (reason is None or e.get("reason") == reason))


class DaemonProcess:
    """`kadtalk daemon` as a subprocess. Threads drain its stdout and stderr (so it never blocks
    on a full pipe); `ready()` waits for its "ready:" log line, `stdout_line` for a line."""

    def __init__(self, root: Path, name: str, *args: str, env: dict | None = None):
        self.root = root
        self.name = name
        self.socket = root / f"{name}.sock"
        self.config_dir = root / name
        self.log_path = root / f"{name}.log"
        self.proc = subprocess.Popen(
            [*KADTALK, "daemon", "--config-dir", str(self.config_dir), "--host", "127.0.0.1",
             "--port", "0", "--socket", str(self.socket), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, "stderr"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream, name: str) -> None:
        for line in stream:
            with self._changed:
                self.lines[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines[name].append(None)  # end of stream
            self._changed.notify_all()

    def _wait_line(self, name: str, wanted: str, timeout: float) -> str | None:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(line is None or wanted in line for line in self.lines[name]), timeout)
            if not found:
                return None
            return next(line for line in self.lines[name] if line is None or wanted in line)

    async def _line(self, name: str, wanted: str, timeout: float) -> str:
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, self._wait_line, name, wanted, timeout)
        if line is None:
            raise AssertionError(f"{self.name}: no {wanted!r} on {name}; log:\n{self.log()[-3000:]}")
        return line

    def log(self) -> str:
        with self._changed:
            return "".join(line for line in self.lines["stderr"] if line)

    async def ready(self, timeout: float = 20.0) -> str:
        return await self._line("stderr", "ready:", timeout)

    async def stdout_line(self, wanted: str, timeout: float = 20.0) -> str:
        return await self._line("stdout", wanted, timeout)

    async def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        code = await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout)
        for thread in self._threads:
            thread.join(5)
        self.log_path.write_text(self.log())
        return code

    # synchronous versions, for code that runs where an event loop already runs (Playwright)
    def ready_sync(self, timeout: float = 20.0) -> str:
        return self._check_line(self._wait_line("stderr", "ready:", timeout), "ready:")

    def stdout_line_sync(self, wanted: str, timeout: float = 20.0) -> str:
        return self._check_line(self._wait_line("stdout", wanted, timeout), wanted)

    def _check_line(self, line: str | None, wanted: str) -> str:
        if line is None:
            raise AssertionError(f"{self.name}: no {wanted!r}; log:\n{self.log()[-3000:]}")
        return line

    def terminate_sync(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        self.log_path.write_text(self.log())
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def request_sync(path: Path, cmd: str, **args) -> dict:
    """One control request over a plain blocking socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(json.dumps({"cmd": cmd, "req": 1, **args}).encode() + b"\n")
        stream = s.makefile("rb")
        for line in stream:
            message = json.loads(line)
            if message.get("req") == 1:
                return message
    raise AssertionError(f"no reply to {cmd}")


@pytest.fixture
def sock_root(tmp_path):
    return short_tmp(tmp_path)
