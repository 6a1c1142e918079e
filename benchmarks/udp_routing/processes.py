"""Child processes (multiprocessing, spawn) that run one system's server or swarm, so that the
measured side has a core of its own: start it, report what it holds, wait for 'stop', report
again and close."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from typing import Any

from benchmarks.udp_routing.system import adapter

ROLES = ("server", "swarm")  # each adapter's start_<role>


def quiet_logging() -> None:
    """kademlia and rpcudp log every unanswered ping; keep their noise out of the output."""
    for name in ("kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.ERROR)


def _child_main(system: str, role: str, conn: Any, *args: Any) -> None:
    """Entry point of every child process (spawned): run `role`, report, wait for 'stop'."""
    quiet_logging()
    try:
        asyncio.run(_run(system, role, conn, *args))
    except BaseException as error:  # report anything, so the parent fails with a message
        try:
            conn.send(("error", f"{system}-{role}: {type(error).__name__}: {error}"))
        except Exception:
            pass
        raise


async def _run(system: str, role: str, conn: Any, *args: Any) -> None:
    start = getattr(adapter(system), f"start_{role}")
    started = time.perf_counter()
    running = await start(*args)
    conn.send(("ready", {**running.info, "build_s": time.perf_counter() - started}))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # 'stop'
    conn.send(("done", running.stop()))


class Child:
    """A spawned child process running `system`'s `role`; `ready()` returns what it reported."""

    def __init__(self, system: str, role: str, *args: Any):
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {ROLES}")
        ctx = multiprocessing.get_context("spawn")
        self.role = f"{system}-{role}"
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child_main, args=(system, role, child_conn, *args),
                                   name=f"udp_routing-{self.role}", daemon=True)
        self.process.start()
        child_conn.close()
        self.info: dict[str, Any] = {}
        self.final: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    def _receive(self, timeout: float) -> tuple[str, Any]:
        if not self.conn.poll(timeout):
            state = "exited" if not self.process.is_alive() else "did not answer"
            raise RuntimeError(f"{self.role} {state} within {timeout:.0f} s")
        try:
            message = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.role} exited (code {self.process.exitcode})") from None
        if message[0] == "error":
            raise RuntimeError(message[1])
        return message

    def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        _, self.info = self._receive(timeout)
        return self.info

    def stop(self) -> dict[str, Any]:
        if self.process.is_alive():
            try:
                self.conn.send("stop")
                _, self.final = self._receive(10.0)
            except (OSError, RuntimeError, EOFError):
                pass
            self.process.join(5.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5.0)
        self.conn.close()
        return self.final
