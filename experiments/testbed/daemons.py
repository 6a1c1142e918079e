"""Real `kadtalk daemon`s in testbed hosts, driven through their control sockets, and a call
between two of them with its audio checked both ways (tests/testbed/test_calls.py, pairs.py).

Each daemon runs in its host's namespace with a synthetic microphone (`--capture tone:HZ`, a
different tone for each host) and records what it plays (`--playback wav:PATH`); no sound card
is involved. The control sockets are ordinary files (the namespaces share the file system), so
the daemons are driven from outside their namespaces. After a call, the WAV each side played
must hold the *other* side's tone (the FFT peak). Nothing sleeps: every wait is for a control
event, a log line or a process exit, with a timeout.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import wave
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kadtalk.app.client import ControlClient

PORT = 5004
RATE = 48000


class NsDaemon:
    """`kadtalk daemon` in a testbed host playing `tone` Hz; threads drain its output (never a
    full pipe). `args` are more daemon options (--bootstrap ...)."""

    def __init__(self, tb: Any, root: Path, host: str, tone: float, *args: str, call_no: int = 0,
                 log_level: str | None = None):
        self.tb = tb
        self.host = host
        self.tone = tone
        self.root = root
        self.socket = root / f"{host}.sock"
        self.config_dir = root / host
        self.wav = root / f"{host}-{call_no}.wav"
        self.proc = tb.popen(host, [
            sys.executable, "-m", "kadtalk", "daemon", "--config-dir", str(self.config_dir),
            "--port", str(PORT), "--socket", str(self.socket),
            "--capture", f"tone:{tone:g}", "--playback", f"wav:{self.wav}",
            *(["--log-level", log_level] if log_level else []), *args,
        ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str | None] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()
        self.client: ControlClient | None = None
        self.node_id = ""

    def _drain(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append(None)
            self._changed.notify_all()

    def log(self) -> str:
        with self._changed:
            return "".join(line for line in self.lines if line)

    def _wait_line(self, wanted: str, timeout: float) -> str | None:
        with self._changed:
            self._changed.wait_for(
                lambda: any(line is None or wanted in line for line in self.lines), timeout)
            return next((line for line in self.lines if line is None or wanted in line), None)

    async def log_line(self, wanted: str, timeout: float = 30.0) -> str:
        """The first line of the daemon's log that contains `wanted`, once there is one."""
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, self._wait_line, wanted, timeout)
        if not line:
            raise AssertionError(f"{self.host}: no {wanted!r} in the log within {timeout} s; "
                                 f"log:\n{self.log()[-3000:]}")
        return line

    async def start(self, timeout: float = 30.0) -> "NsDaemon":
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, self._wait_line, "ready:", timeout)
        if not line:
            raise AssertionError(f"{self.host}: daemon not ready; log:\n{self.log()[-3000:]}")
        self.client = await ControlClient.connect(self.socket)
        await self.client.wait_event(lambda e: e.get("event") == "hello", timeout=10)
        self.node_id = (await self.client.request("id"))["node_id"]
        return self

    async def joined(self, timeout: float = 30.0) -> dict:
        return await self.event(
            lambda e: e.get("event") == "network" and e.get("joined") and e["table_size"] > 0,
            timeout=timeout)

    async def observed(self, timeout: float = 30.0) -> dict:
        """The `network` event once peers have told this node its public address."""
        return await self.event(
            lambda e: e.get("event") == "network" and e.get("public_address"), timeout=timeout)

    def event_count(self) -> int:
        return len(self.client.seen)

    async def event(self, predicate: Callable[[dict], bool], timeout: float = 30.0,
                    since: int = 0) -> dict:
        try:
            return await self.client.wait_event(predicate, timeout=timeout, since=since)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.host}: no such event within {timeout} s; events: "
                                 f"{self.client.seen[since:][-12:]}\nlog:\n{self.log()[-3000:]}")

    def new_call(self) -> None:
        """Forget the last call's recording (the daemon writes a new WAV for the next one)."""
        self.wav.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL: no hang-up, no saving, nothing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), 15)


def is_call(state: str, reason: str | None = None) -> Callable[[dict], bool]:
    return lambda e: (e.get("event") == "call" and e.get("state") == state
                      and (reason is None or e.get("reason") == reason))


def peak_hz(path: Path) -> float:
    """The dominant frequency of the audible part of a WAV file."""
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 500)
    assert len(loud) > RATE // 2, f"{path.name}: less than half a second of audible audio"
    x = x[loud[0]: loud[-1] + 1]
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


class CallFailed(AssertionError):
    """No attempt set up: the caller's call ended before ringing (`reason`: its end reason), or
    while ringing ("callee_never_rang" when the callee never showed the call; else the caller's
    end reason, the callee having rung)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


async def call(caller: NsDaemon, callee: NsDaemon, talk_reports: int = 2, attempts: int = 1,
               hang_up: bool = True, lossy: bool = False, ring_timeout: float = 40) -> dict:
    """caller dials callee by ID; callee answers on `incoming`; both talk until each has seen
    `talk_reports` quality events with audio arriving; the caller hangs up. Returns facts:
    attempts, setup (s from the dial to ringing), talking (s from the answer to both talking),
    path (the callee's view of the caller's address at ringing: "relay H:P" when relayed),
    rx_kbps (each side's talk reports), the end events. Raises CallFailed (with the reason)
    when no attempt rings at both ends.

    The caller shows ringing once its KEY_RES came; the callee rings when the caller's first
    RING (sent every second) reaches it. Under heavy loss every RING may be lost: the caller's
    call then ends `peer_vanished` (10 s without a word from the callee) and the callee never
    showed it (the callee waits as long for the RING: node/session `handshake_timeout`, session
    13). Such an attempt failed, as one that ended before ringing: the user dials again."""
    loop = asyncio.get_running_loop()
    for attempt in range(1, attempts + 1):
        since_a, since_b = caller.event_count(), callee.event_count()
        dialled = loop.time()
        await caller.client.request("dial", to=callee.node_id)
        first = await caller.event(
            lambda e: e.get("event") == "call" and e.get("state") in ("ringing", "ended"),
            timeout=ring_timeout, since=since_a)
        ring = None
        if first["state"] == "ended":
            reason = first.get("reason") or "ended"
        else:
            setup = loop.time() - dialled
            ring, reason = await _callee_rings(caller, callee, since_a, since_b)
        if ring is not None:
            break
        if attempt == attempts:
            raise CallFailed(
                f"{caller.host} -> {callee.host}: {reason}; traversal: "
                f"{(await caller.client.request('status'))['traversal']} / "
                f"{(await callee.client.request('status'))['traversal']}\n"
                f"caller events: {caller.client.seen[since_a:][-8:]}\n"
                f"callee events: {callee.client.seen[since_b:][-8:]}\n"
                f"caller log:\n{caller.log()[-2000:]}\ncallee log:\n{callee.log()[-2000:]}",
                reason)
        # under heavy loss the key exchange (or every RING) may be lost: dial again, once the
        # callee has no call left (one that rang ends at the caller's HANGUP or by itself)
        await _callee_idle(callee, since_b)
    states = [e["state"] for e in caller.client.seen[since_a:] if e.get("event") == "call"]
    assert states[:3] == ["dialling", "key_exchange", "ringing"], states
    assert ring["peer"] == caller.node_id
    answered = loop.time()
    await callee.client.request("answer")
    await caller.event(is_call("talking"), since=since_a)
    await callee.event(is_call("talking"), since=since_b)
    talking = loop.time() - answered
    rx_kbps = {}
    for side, since in ((caller, since_a), (callee, since_b)):
        seen, rates = since, []
        for _ in range(talk_reports):
            q = await side.event(lambda e: e.get("event") == "quality" and e["packets_rx"] > 0,
                                 timeout=10, since=seen)
            seen = side.client.seen.index(q) + 1
            rates.append(q["rx_kbps"])
        # audio arrives at the end; under heavy loss (51 % a relayed direction at 30 %) one
        # report of a call that set up once read 0 kbit/s (docs/testbed.md: not traced), so
        # there audio in any report counts, and the rates are in the facts
        assert (max(rates) if lossy else rates[-1]) > 1, (side.host, rates, q)
        rx_kbps[side.host] = rates
    facts: dict[str, Any] = {"attempts": attempt, "since": (since_a, since_b), "setup": setup,
                             "talking": talking, "path": ring.get("address"), "rx_kbps": rx_kbps}
    if hang_up:
        await caller.client.request("hangup")
        end_a = await caller.event(is_call("ended"), since=since_a)
        end_b = await callee.event(is_call("ended"), since=since_b)
        # under loss all three HANGUP copies may be lost (0.3^3 = 2.7 % at 30 %): the callee
        # then ends the call 10 s later as peer_vanished
        allowed = ("remote_hung_up", "peer_vanished") if lossy else ("remote_hung_up",)
        assert end_a["reason"] == "hung_up" and end_b["reason"] in allowed, (end_a, end_b)
        facts.update(end_a=end_a, end_b=end_b)
    return facts


async def _callee_rings(caller: NsDaemon, callee: NsDaemon, since_a: int,
                        since_b: int) -> tuple[dict | None, str]:
    """The caller rings: the callee's `incoming` event, or (None, why) when the caller's call
    ended first: its end reason, "callee_refused:WHY" when the callee's daemon refused it (a
    `missed` event), "callee_never_rang" for `peer_vanished` with the callee never having shown
    the call (every RING lost). The caller's ringing ends by itself
    (`peer_vanished` after 10 s unheard, `no_answer` after 45 s), so a wait past 60 s is a bug
    in the node or the daemon, not loss: an AssertionError, never CallFailed."""
    waits = {
        "incoming": asyncio.ensure_future(callee.client.wait_event(
            lambda e: e.get("event") == "incoming", timeout=60, since=since_b)),
        "ended": asyncio.ensure_future(caller.client.wait_event(
            is_call("ended"), timeout=60, since=since_a)),
    }
    done, pending = await asyncio.wait(waits.values(), return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    ended = [e for e in caller.client.seen[since_a:] if is_call("ended")(e)]
    if ended:  # also when both came at once: the call is over before it was answered
        reason = ended[0].get("reason") or "ended"
        shown = [e for e in callee.client.seen[since_b:]
                 if e.get("event") in ("incoming", "missed") and e.get("peer") == caller.node_id]
        missed = next((e for e in shown if e["event"] == "missed"), None)
        if missed is not None:
            # the callee's daemon refused it (busy, too_many_calls: [calls]
            # per_caller_per_minute, ...); its HANGUP may all be lost: then peer_vanished
            return None, f"callee_refused:{missed.get('reason')}"
        return None, "callee_never_rang" if reason == "peer_vanished" and not shown else reason
    if waits["incoming"] in done and waits["incoming"].exception() is None:
        return waits["incoming"].result(), ""
    raise AssertionError(
        f"{caller.host} -> {callee.host}: the caller rang 60 s without the callee showing the "
        f"call or the caller's call ending; caller events: {caller.client.seen[since_a:][-8:]}"
        f"\ncallee events: {callee.client.seen[since_b:][-8:]}\ncaller log:\n"
        f"{caller.log()[-2000:]}\ncallee log:\n{callee.log()[-2000:]}")


async def _callee_idle(callee: NsDaemon, since_b: int) -> None:
    """Before dialling again: a call the callee showed has ended there too (else the next dial
    gets BUSY)."""
    if any(e.get("event") == "incoming" for e in callee.client.seen[since_b:]):
        await callee.event(is_call("ended"), timeout=30, since=since_b)


def heard(listener: NsDaemon, talker: NsDaemon) -> float:
    """The peak frequency of what `listener` played (its WAV is complete once the call ended)."""
    return peak_hz(listener.wav)


def assert_heard_each_other(a: NsDaemon, b: NsDaemon, tolerance: float = 5.0) -> None:
    """Each side played the other's tone."""
    for listener, talker in ((a, b), (b, a)):
        hz = heard(listener, talker)
        assert abs(hz - talker.tone) < tolerance, (listener.host, hz, talker.tone)


async def stop_all(daemons: dict[str, NsDaemon]) -> None:
    for d in daemons.values():
        try:
            await d.stop()
        except Exception:
            d.kill()
