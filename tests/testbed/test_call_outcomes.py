"""How the testbed's `call()` reads a dial's outcome from the two daemons' control events,
with scripted stand-ins for the daemons (no namespaces, no processes; runs anywhere).

Session 12's CI saw the caller ringing and no `incoming` at the callee within 30 s (30 % core
loss through a relay): the callee had forgotten the handshake before any of the caller's RINGs
got through (node/session `handshake_timeout`, fixed in session 13), and `call()` waited on the
callee alone for 30 s although the caller's call had ended `peer_vanished` at 10 s. It now waits
for either, counts such a dial as failed (the user dials again), and names it
"callee_never_rang" only when the callee never showed the call."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from kadtalk.app.client import EventLog
from kadtalk.experiments.testbed.daemons import CallFailed, call

CALLER_ID, CALLEE_ID = "aa" * 20, "bb" * 20
HANG = 60  # s: a guard against a hang only (the script runs in milliseconds)


class Client(EventLog):
    """The control client's event log (app/client.py, which ControlClient is too), with
    `request` answered by the owner's `on_request`: what `call()` uses."""

    def __init__(self, on_request: Callable[[str, dict], dict]):
        super().__init__()
        self.on_request = on_request

    async def request(self, cmd: str, **args: Any) -> dict:
        return self.on_request(cmd, args)


class Daemon:
    """A stand-in for NsDaemon: events come from the test's script."""

    def __init__(self, host: str, node_id: str, on_request: Callable[[str, dict], dict]):
        self.host, self.node_id = host, node_id
        self.client = Client(on_request)

    def event_count(self) -> int:
        return len(self.client.seen)

    async def event(self, predicate, timeout: float = 30.0, since: int = 0) -> dict:
        try:
            return await self.client.wait_event(predicate, timeout=timeout, since=since)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.host}: no such event within {timeout} s")

    def log(self) -> str:
        return ""


def state(s: str, role: str, **more: Any) -> dict:
    return {"event": "call", "state": s, "role": role, "session": 1, **more}


def quality() -> dict:
    return {"event": "quality", "packets_rx": 50, "rx_kbps": 30.0}


def pair(dials: list[str]):
    """A caller and a callee whose dials go as `dials` says, in order: "talk" (both ring; the
    callee's answer makes a call that talks and ends at the hang-up), "unheard" (the caller
    rings, the callee never shows it, the caller's call ends peer_vanished), "unreachable"
    (ended before ringing), "busy" (the caller rings, the callee's daemon refuses it: more than
    [calls] per_caller_per_minute; its HANGUP declined arrives), "refused_unheard" (the same,
    every HANGUP lost: the caller's call ends peer_vanished). The events come on the event loop
    after each request, as a daemon's do."""
    script = iter(dials)
    daemons: dict[str, Daemon] = {}

    def later(side: str, *events: dict) -> None:
        loop = asyncio.get_running_loop()
        for e in events:
            loop.call_soon(daemons[side].client.push, e)

    def caller_request(cmd: str, args: dict) -> dict:
        if cmd == "dial":
            kind = next(script)
            later("a", state("dialling", "caller"), state("key_exchange", "caller"))
            if kind == "unreachable":
                later("a", state("ended", "caller", reason="unreachable"))
            else:
                later("a", state("ringing", "caller"))
                if kind == "unheard":
                    later("a", state("ended", "caller", reason="peer_vanished"))
                elif kind in ("busy", "refused_unheard"):  # refused: a missed call there
                    later("b", {"event": "missed", "peer": CALLER_ID,
                                "reason": "too_many_calls"})
                    later("a", state("ended", "caller", reason="declined" if kind == "busy"
                                     else "peer_vanished"))
                else:
                    later("b", {"event": "incoming", "peer": CALLER_ID, "address": "relay x:1"},
                          state("ringing", "callee"))
        elif cmd == "hangup":
            later("a", state("ended", "caller", reason="hung_up"))
            later("b", state("ended", "callee", reason="remote_hung_up"))
        elif cmd == "status":
            return {"traversal": {}}
        return {"ok": True}

    def callee_request(cmd: str, args: dict) -> dict:
        if cmd == "answer":
            later("a", state("talking", "caller"), *[quality()] * 3)
            later("b", state("talking", "callee"), *[quality()] * 3)
        elif cmd == "status":
            return {"traversal": {}}
        return {"ok": True}

    daemons["a"] = Daemon("sa", CALLER_ID, caller_request)
    daemons["b"] = Daemon("sb", CALLEE_ID, callee_request)
    return daemons["a"], daemons["b"]


def test_a_dial_the_callee_never_showed_is_dialled_again():
    """Before: the first dial raised at once ("callee_never_rang") after 30 s of waiting on
    the callee alone, though the user would dial again as after any failed dial."""
    caller, callee = pair(["unheard", "talk"])
    facts = asyncio.run(asyncio.wait_for(call(caller, callee, attempts=3), HANG))
    assert facts["attempts"] == 2 and facts["path"] == "relay x:1"
    assert facts["end_b"]["reason"] == "remote_hung_up"


def test_when_no_dial_rings_at_both_ends_the_reason_names_the_last():
    caller, callee = pair(["unreachable", "unheard"])
    with pytest.raises(CallFailed) as failed:
        asyncio.run(asyncio.wait_for(call(caller, callee, attempts=2), HANG))
    assert failed.value.reason == "callee_never_rang"
    caller, callee = pair(["unheard", "unreachable"])
    with pytest.raises(CallFailed) as failed:
        asyncio.run(asyncio.wait_for(call(caller, callee, attempts=2), HANG))
    assert failed.value.reason == "unreachable"
    caller, callee = pair(["busy"])  # refused by the callee's daemon, not lost
    with pytest.raises(CallFailed) as failed:
        asyncio.run(asyncio.wait_for(call(caller, callee), HANG))
    assert failed.value.reason == "callee_refused:too_many_calls"
    caller, callee = pair(["refused_unheard"])  # ... whose three HANGUPs were all lost
    with pytest.raises(CallFailed) as failed:
        asyncio.run(asyncio.wait_for(call(caller, callee), HANG))
    assert failed.value.reason == "callee_refused:too_many_calls"
