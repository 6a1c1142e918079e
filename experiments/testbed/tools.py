"""Running commands for the testbed, and removing its namespaces by name prefix.

Every namespace is named ``<prefix>-<pid>-<n>-<name>`` after the process that made it, so a
namespace whose creator is gone (a crashed or SIGKILLed run) can be found and removed.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import subprocess
import time
from typing import Any, Sequence

PREFIX = "ktb"  # every testbed namespace is named ktb-<pid>-<n>-<name>
_counter = itertools.count()


class TestbedError(RuntimeError):
    """The testbed cannot be built (not root, no `ip netns`, a command failed)."""

    __test__ = False  # not a pytest test class


def new_tag(prefix: str = PREFIX) -> str:
    """A name prefix no other testbed of this process or of another live one uses."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def unavailable_reason() -> str | None:
    """Why a testbed cannot be built here, or None when it can (root, ip, iptables and
    ip6tables, netns)."""
    if os.geteuid() != 0:
        return "the network testbed needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            return f"the network testbed needs `{tool}` (Debian: apt-get install iproute2 iptables)"
    name = f"{PREFIX}-{os.getpid()}-probe{next(_counter)}"
    try:
        result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if result.returncode != 0:
            return f"`ip netns add` fails here: {result.stderr.strip()}"
        for tool in ("iptables", "ip6tables"):  # IPv4 NATs, loss and delay for both families
            result = subprocess.run(["ip", "netns", "exec", name, tool, "-S"],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                return f"{tool} does not work in a network namespace: {result.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def netfilterqueue_reason() -> str | None:
    """Why the delaying relay cannot run, or None (the NetfilterQueue package is importable)."""
    try:
        import netfilterqueue  # noqa: F401
    except ImportError as error:
        return (f"delays need the NetfilterQueue package (pip install 'kadtalk[testbed]'; "
                f"Debian: libnetfilter-queue-dev to build it): {error}")
    return None


def sh(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run `argv` and capture its output; a failure (with `check`) is a TestbedError."""
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def readline(stream: Any, timeout: float) -> str:
    """A line from a child's pipe, or "" when none came within `timeout` seconds."""
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def stop(procs: Sequence[subprocess.Popen], timeout: float = 3.0) -> None:
    """Terminate the processes still running, and kill those not gone within `timeout`."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def list_namespaces(prefix: str = PREFIX + "-") -> list[str]:
    out = sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def kill_namespace(name: str) -> None:
    """Kill the processes left in namespace `name` (by pid), then delete it."""
    pids = sh(["ip", "netns", "pids", name], check=False).stdout.split()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(int(pid), sig)
                alive.append(pid)
            except (ProcessLookupError, ValueError):
                pass
        if not alive:
            break
        deadline = time.monotonic() + 2.0
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if os.path.exists(f"/proc/{p}")
                     and _proc_state(p) not in ("Z", "X")]
            if alive:
                time.sleep(0.02)  # teardown only: wait for the processes to go
        pids = alive
    sh(["ip", "netns", "del", name], check=False)


def _proc_state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete testbed namespaces whose creating process is gone (crashed runs); returns them."""
    removed = []
    for name in list_namespaces(prefix + "-"):
        parts = name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if os.path.exists(f"/proc/{parts[1]}"):
            continue  # its creator still runs (maybe a concurrent testbed)
        kill_namespace(name)
        removed.append(name)
    return removed
