"""The push-button example (tools/gpio_button.py): debounce and press -> command logic, also
against real daemons. The pin access itself is untested: no GPIO simulator on this machine."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import connect, is_call, start_daemon

_PATH = Path(__file__).resolve().parents[2] / "tools" / "gpio_button.py"
_spec = importlib.util.spec_from_file_location("gpio_button", _PATH)
button = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(button)


def test_bounces_give_one_press_and_glitches_none():
    d = button.Debouncer(hold=0.03)
    # a press that bounces for 8 ms, then holds; a release that bounces too
    samples = [(0.000, True), (0.002, False), (0.004, True), (0.006, False), (0.008, True)]
    samples += [(0.008 + 0.005 * i, True) for i in range(1, 12)]
    samples += [(0.2, False), (0.201, True), (0.203, False)]
    samples += [(0.203 + 0.005 * i, False) for i in range(1, 12)]
    out = [(t, e) for t, p in samples if (e := d.feed(p, t))]
    assert [e for _, e in out] == ["press", "release"]
    assert out[0][0] == pytest.approx(0.038)  # 30 ms after the last bounce
    glitch = button.Debouncer(hold=0.03)
    assert [glitch.feed(p, t) for t, p in [(0, True), (0.01, True), (0.02, False),
                                           (0.05, False), (0.1, False)]] == [None] * 5


def test_a_press_answers_a_ringing_call_and_hangs_up_any_other():
    assert button.action_for({"role": "callee", "state": "ringing"}) == "answer"
    for role, state in [("callee", "talking"), ("caller", "ringing"), ("caller", "dialling"),
                        ("caller", "key_exchange"), ("caller", "talking")]:
        assert button.action_for({"role": role, "state": state}) == "hangup"
    assert button.action_for(None) is None
    assert button.action_for({"role": "caller", "state": "ended"}) is None
    assert button.action_for(None, dial="Door") == "dial"


def test_the_button_answers_and_hangs_up_real_calls(sock_root):
    """Two daemons; b's button (a fake pin) answers a's call, then hangs it up."""

    async def scenario():
        a = await start_daemon(sock_root, "a", capture="tone:440")
        b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            ca, cb = await connect(a), await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await a.driver.find_peer(b.driver.node.node_id)
            loop = button.ButtonLoop(cb.request)
            clock = [0.0]

            async def press() -> str | None:
                for event in cb.seen:
                    loop.on_event(event)
                done = None
                for level in [True, False, True] + [True] * 10 + [False] * 10:
                    clock[0] += 0.005
                    done = await loop.sample(level, clock[0]) or done
                return done

            assert await press() is None  # no call: nothing
            since_a, since_b = len(ca.seen), len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b)
            await cb.wait_event(is_call("ringing"), since=since_b)
            assert await press() == "answer"
            await ca.wait_event(is_call("talking"), since=since_a)
            await cb.wait_event(is_call("talking"), since=since_b)
            assert await press() == "hangup"
            e = await ca.wait_event(is_call("ended"), since=since_a)
            assert e["reason"] == "remote_hung_up"
            await ca.close()
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 80)), max_size=30))
@settings(max_examples=200, deadline=None)
def test_debounce_counts_exactly_the_levels_held_long_enough(segments):
    """Any pattern of levels, sampled every millisecond: a press (or release) is reported once
    for each run of one level held at least `hold`, and a shorter run never counts."""
    d = button.Debouncer(hold=0.0295)  # 30 samples after the first of a run
    got, i = [], 0
    for level, length in segments:
        for _ in range(length):
            event = d.feed(level, i / 1000)
            if event:
                got.append(event)
            i += 1
    merged: list[list] = []  # runs of one level
    for level, length in segments:
        if merged and merged[-1][0] == level:
            merged[-1][1] += length
        else:
            merged.append([level, length])
    state, expected = False, []
    for level, length in merged:
        if level != state and length >= 31:
            state = level
            expected.append("press" if level else "release")
    assert got == expected
