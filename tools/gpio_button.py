#!/usr/bin/env python3
"""One push button on a GPIO pin answers and hangs up kadtalk calls (a door phone, an intercom).

    python tools/gpio_button.py --chip gpiochip0 --line 17 [--dial Alice]

Wiring: a push button between the pin (BCM 17 here, header pin 11) and ground; the pin's
internal pull-up holds it high, a press pulls it low (``--active-high`` for the other way).

What a press does depends on the call (`action_for`): a call ringing here is answered; a call
under way (dialling, ringing at the other end, talking) is hung up; with no call, the contact of
``--dial`` is called (nothing without it). Presses are debounced (`Debouncer`: the pin must hold
its new level for ``--debounce`` seconds, 30 ms by default, before a press counts).

The tool talks to the daemon through its control socket (docs/control.md), like `kadtalk`
itself: it follows the ``call`` events to know the call's state and sends ``answer``,
``hangup`` and ``dial``. It reads the pin through libgpiod's Python bindings: Debian's
``python3-libgpiod`` (API 1.x, Debian 12 / Raspberry Pi OS bookworm) or PyPI's ``gpiod``
(API 2.x), polling every 5 ms.

Tested: the debounce and the press -> command logic (`Debouncer`, `action_for`,
`ButtonLoop`), also against real daemons (tests/app/test_gpio_button.py). Not tested: the pin
access (`open_pin`), because the machines the project is tested on have no GPIO simulator (no
gpio-sim: its configfs is not available there). A chip that vanishes (a pin read fails) is
logged and reopened every few seconds; the daemon is another process and never notices.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any, Callable

log = logging.getLogger("gpio_button")

POLL = 0.005  # seconds between pin reads
REOPEN = 5.0  # seconds between attempts to reopen a chip that failed


class Debouncer:
    """Debounce a contact: the level must hold `hold` seconds before it counts.

    `feed(pressed, now)` takes each raw sample and returns "press" or "release" once a new level
    has been stable for `hold` seconds, else None. Contact bounce (several edges within a few
    milliseconds) therefore gives one press, and a glitch shorter than `hold` gives none.
    """

    def __init__(self, hold: float = 0.03, pressed: bool = False):
        self.hold = hold
        self.state = pressed  # the debounced level
        self._candidate = pressed
        self._since: float | None = None

    def feed(self, pressed: bool, now: float) -> str | None:
        if pressed == self.state:
            self._candidate, self._since = pressed, None
            return None
        if pressed != self._candidate or self._since is None:
            self._candidate, self._since = pressed, now
        if now - self._since >= self.hold:
            self.state, self._since = pressed, None
            return "press" if pressed else "release"
        return None


def action_for(call: dict[str, Any] | None, dial: str | None = None) -> str | None:
    """What one press does: "answer" a call ringing here, "hangup" any other call under way,
    "dial" the configured contact when there is no call, else nothing."""
    if call is None or call.get("state") in (None, "ended"):
        return "dial" if dial else None
    if call.get("role") == "callee" and call.get("state") == "ringing":
        return "answer"
    return "hangup"


class ButtonLoop:
    """The button's life: pin samples in (`sample`), call events in (`on_event`), control
    commands out through `send(cmd, **args)` (an awaitable: the control client's request)."""

    def __init__(self, send: Callable[..., Any], dial: str | None = None, hold: float = 0.03):
        self.send = send
        self.dial = dial
        self.debouncer = Debouncer(hold)
        self.call: dict[str, Any] | None = None

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "call":
            self.call = None if event.get("state") == "ended" else event

    async def sample(self, pressed: bool, now: float) -> str | None:
        """Feed one pin sample; the command sent for a press, if any."""
        if self.debouncer.feed(pressed, now) != "press":
            return None
        action = action_for(self.call, self.dial)
        if action is None:
            log.info("button pressed: no call, nothing to do")
            return None
        args = {"to": self.dial} if action == "dial" else {}
        reply = await self.send(action, check=False, **args)
        if reply.get("ok"):
            log.info("button pressed: %s", action)
        else:
            log.warning("button pressed: %s refused: %s", action, reply.get("message"))
        return action


# -- the pin (untested: no GPIO simulator on the test machines) ---------------------------------


def open_pin(chip: str, line: int, active_high: bool) -> Callable[[], bool]:
    """A function that reads the pin: True while the button is pressed. libgpiod 2.x or 1.x."""
    import gpiod  # python3-libgpiod (Debian) or gpiod (PyPI)

    path = chip if chip.startswith("/") else f"/dev/{chip}"
    if hasattr(gpiod, "request_lines"):  # libgpiod 2.x
        from gpiod.line import Bias, Direction, Value

        request = gpiod.request_lines(path, consumer="kadtalk-button", config={
            line: gpiod.LineSettings(direction=Direction.INPUT,
                                     bias=Bias.PULL_DOWN if active_high else Bias.PULL_UP)})
        return lambda: (request.get_value(line) == Value.ACTIVE) == active_high
    pin = gpiod.Chip(path).get_line(line)  # libgpiod 1.x
    flags = getattr(gpiod, "LINE_REQ_FLAG_BIAS_PULL_DOWN" if active_high
                    else "LINE_REQ_FLAG_BIAS_PULL_UP", 0)
    pin.request(consumer="kadtalk-button", type=gpiod.LINE_REQ_DIR_IN, flags=flags)
    return lambda: bool(pin.get_value()) == active_high


async def run(args: argparse.Namespace) -> None:
    from kadtalk.app.client import ControlClient
    from kadtalk.app.config import default_socket

    client = await ControlClient.connect(args.socket or default_socket())
    loop = ButtonLoop(client.request, args.dial, args.debounce)
    status = await client.request("status")
    loop.on_event({"event": "call", **status["call"]} if status.get("call") else {})
    read: Callable[[], bool] | None = None
    next_open = 0.0
    while not client.closed.is_set():
        while not client.events.empty():
            loop.on_event(client.events.get_nowait())
        client.seen.clear()  # the client keeps every event for wait_event; this tool never waits
        now = time.monotonic()
        if read is None and now >= next_open:
            try:
                read = open_pin(args.chip, args.line, args.active_high)
                log.info("watching %s line %d", args.chip, args.line)
            except Exception as e:  # no such chip or line, busy, no permission, no gpiod
                log.warning("cannot open %s line %d: %s; trying again in %g s", args.chip,
                            args.line, e, REOPEN)
                next_open = now + REOPEN
        if read is not None:
            try:
                await loop.sample(read(), now)
            except OSError as e:  # the chip vanished (unplugged, driver unloaded)
                log.warning("reading %s line %d failed: %s; reopening", args.chip, args.line, e)
                read, next_open = None, now + REOPEN
        await asyncio.sleep(POLL)
    log.warning("the daemon closed the control connection")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chip", default="gpiochip0", help="GPIO chip (default gpiochip0)")
    parser.add_argument("--line", type=int, default=17, help="line offset, BCM number on a Pi")
    parser.add_argument("--active-high", action="store_true",
                        help="pressed = high (button to 3.3 V, pull-down); default: pressed = low")
    parser.add_argument("--debounce", type=float, default=0.03, help="seconds (default 0.03)")
    parser.add_argument("--dial", help="contact (or node ID) to call on a press with no call")
    parser.add_argument("--socket", help="the daemon's control socket (default: as kadtalk)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # NotRunning, ...
        log.error("%s", e)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
