"""The user's hook commands ([hooks] in config.toml): a program run when a call rings
(`on_ring`), when a call ends (`on_call_end`) or when a message arrives (`on_message`), for an
LED, a GPIO relay, a notification or a log.

A hook is an argv list, run directly (never through a shell): what a caller controls (a message
text) only ever reaches the program as the value of an environment variable, which no shell
parses. The program gets the daemon's environment plus:

- ``KADTALK_EVENT``: ``ring``, ``call_end`` or ``message``;
- ``KADTALK_PEER_ID``: the peer's node ID (40 hex digits);
- ``KADTALK_PEER_NAME``: its contact name, empty when it is not a contact;
- ``KADTALK_SESSION``, ``KADTALK_ROLE`` (``caller`` / ``callee``), ``KADTALK_ADDRESS``;
- on_call_end: ``KADTALK_REASON`` (``hung_up``, ``remote_hung_up``, ``declined``, ...) and
  ``KADTALK_DURATION`` (seconds talked, 0 for a call never answered);
- on_message: ``KADTALK_MESSAGE`` (the text, NUL characters removed, at most 4,096 characters).

Hooks run asynchronously: the call never waits for them. Each has a time limit (``[hooks]
timeout``, 10 s): past it the hook's whole process group is killed. At most `MAX_RUNNING` run
at once (a flood of calls cannot fork without bound); one more is skipped. A hook that cannot
start, exits non-zero, or is killed is logged with its event, exit status and the last of its
stderr; the daemon goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
from typing import Any

log = logging.getLogger(__name__)

EVENTS = ("ring", "call_end", "message")  # config keys on_ring, on_call_end, on_message
MAX_RUNNING = 8
MAX_TEXT = 4096  # characters of a message text passed in the environment
STDERR_TAIL = 400  # characters of a failed hook's stderr put in the log


def hook_env(event: str, peer: str, name: str | None, **extra: Any) -> dict[str, str]:
    """The variables a hook gets on top of the daemon's environment."""
    env = {"KADTALK_EVENT": event, "KADTALK_PEER_ID": peer, "KADTALK_PEER_NAME": name or ""}
    for key, value in extra.items():
        if value is None:
            continue
        text = str(value).replace("\0", "")[:MAX_TEXT]  # NUL cannot be in an environment value
        env["KADTALK_" + key.upper()] = text
    return env


class Hooks:
    """`commands` maps an event of EVENTS to its argv (missing: no hook); `timeout` in s."""

    def __init__(self, commands: dict[str, list[str]], timeout: float = 10.0):
        unknown = set(commands) - set(EVENTS)
        if unknown:
            raise ValueError(f"unknown hook events: {sorted(unknown)}")
        self.commands = {k: list(v) for k, v in commands.items() if v}
        self.timeout = timeout
        for event, argv in self.commands.items():  # told at start, not at the first ring
            if shutil.which(argv[0]) is None:
                log.warning("hook on_%s: %s is not an executable program (a full path, or a "
                            "name on PATH); it will fail when run", event, argv[0])
            else:
                log.info("hook on_%s: %s", event, " ".join(argv))
        self.running: set[asyncio.Task] = set()
        self.started = self.failed = self.killed = self.skipped = 0

    def fire(self, event: str, peer: str, name: str | None = None,
             **extra: Any) -> asyncio.Task | None:
        """Run `event`'s hook in the background (None when there is none, or too many run)."""
        argv = self.commands.get(event)
        if argv is None:
            return None
        if len(self.running) >= MAX_RUNNING:
            self.skipped += 1
            log.warning("hook on_%s skipped: %d hooks still running", event, len(self.running))
            return None
        env = {**os.environ, **hook_env(event, peer, name, **extra)}
        task = asyncio.get_running_loop().create_task(self._run(event, argv, env))
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def _run(self, event: str, argv: list[str], env: dict[str, str]) -> int | None:
        """The hook's exit status; None when it could not start or was killed."""
        what = f"hook on_{event} ({argv[0]})"
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a kill reaches its children
            )
        except OSError as e:  # not found, not executable, ...
            self.failed += 1
            log.warning("%s cannot start: %s", what, e.strerror or e)
            return None
        self.started += 1
        try:
            err, _ = await asyncio.wait_for(
                asyncio.gather(_tail(proc.stderr), proc.wait()), self.timeout)
        except asyncio.TimeoutError:
            self.killed += 1
            _kill_group(proc)
            await proc.wait()
            log.warning("%s still ran after %g s: killed", what, self.timeout)
            return None
        except asyncio.CancelledError:  # the daemon stops (close, or the event loop's end)
            _kill_group(proc)
            await proc.wait()  # reaped, its pipes closed while the loop still runs
            raise
        if proc.returncode != 0:
            self.failed += 1
            tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
            log.warning("%s failed with exit status %s%s", what, proc.returncode,
                        f": {tail}" if tail else "")
        else:
            log.debug("%s done", what)
        return proc.returncode

    def close(self) -> None:
        """Kill the hooks still running (the daemon stops)."""
        for task in list(self.running):
            task.cancel()


async def _tail(stream: asyncio.StreamReader) -> bytes:
    """The end of what a hook writes to stderr (a chatty hook cannot fill the memory)."""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-4 * STDERR_TAIL:]
    return tail


def _kill_group(proc: Any) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
