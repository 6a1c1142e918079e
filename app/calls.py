"""The daemon's one call at a time: its state from the node's session events, the 20 ms audio
ticker (running only while the call talks), the once-a-second quality report, and the call
commands (dial, answer, decline, hangup, mute, stats). Who may ring is app/callers.py's rule.

Headless calling (issue 16): an incoming call rings on a playback device (app/ringer.py), is
answered at once for a contact with ``[calls] auto_answer = "contacts"``, and runs the user's
``on_ring`` / ``on_call_end`` hooks (app/hooks.py; `hooks` is also where a messages part fires
``on_message``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from kadtalk.node import addresses
from kadtalk.node.layer import Event
from kadtalk.node.relay import RelayPath
from kadtalk.node.session import CallEnded, CallProgress, CallState, IncomingCall, MissedCall, Role
from kadtalk.transport.audiopump import AudioPump
from kadtalk.transport.udp import UdpDriver

from . import protocol
from .callers import Callers
from .config import Config
from .devices import Devices
from .hooks import Hooks
from .ringer import Ringer, load_ring_tone

log = logging.getLogger(__name__)

FRAME = 0.02
CODEC_DELAY = 0.0065  # Opus look-ahead at 48 kHz, part of the latency estimate


@dataclass
class Call:
    """The daemon's one current call (placed, ringing here, or talking)."""

    session_id: int
    peer: str  # hex node ID
    role: Role
    state: str
    audio: AudioPump | None = None
    muted: bool = False
    created: float = 0.0  # loop time
    talking_since: float | None = None  # loop time
    rtt: float | None = None  # seconds, from the key exchange (until receiver reports refine it)
    key_exchange_at: float | None = None
    address: str | None = None  # "host:port", or "relay host:port" for a relayed call
    last: tuple[int, int, int, int, float] | None = None  # packets, bytes, lost, bytes_sent, at


class Calls:
    """`driver` is set by the daemon once the node runs."""

    def __init__(self, config: Config, callers: Callers, broadcast: Callable[[dict], None]):
        self.callers = callers
        self.broadcast = broadcast
        self.config = config
        self.devices = Devices(config, broadcast, lambda: self.call.audio if self.call else None)
        self.hooks = Hooks(config.hooks, config.hook_timeout)
        self.ringer = Ringer(load_ring_tone(config.ring_tone), None,  # logs a bad tone file now
                             volume=lambda: config.ring_volume)
        if config.auto_answer == "contacts":
            log.info("calls from contacts are answered by themselves ([calls] auto_answer)")
        self.driver: UdpDriver | None = None
        self.call: Call | None = None
        self.last_call: dict[str, Any] | None = None
        self.history: Any = None  # app/history.py's History, set by the daemon: records each call
        self._tick_handle: asyncio.TimerHandle | None = None
        self._play_handle: asyncio.TimerHandle | None = None
        self._tick_t0 = 0.0
        self._tick_n = 0

    def hang_up(self) -> None:
        """The daemon stops: end the call, if any (hooks still running are killed when the
        event loop ends: their tasks are cancelled)."""
        if self.call is not None and self.driver is not None:
            self.driver.hang_up(self.call.session_id)  # CallEnded comes synchronously
            if self.call is not None:
                self._end_call("hung_up", None)
        self._stop_ticker()
        self.ringer.stop()

    # -- node events ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """A node event; those of no call are ignored."""
        call = self.call
        kind = type(event)
        if call is not None and call.audio is not None and getattr(event, "session_id", None) == call.session_id:
            if call.audio.on_event(event):
                self._schedule_play()  # the first frame starts playout, phased to its arrival
                return
        if kind is CallProgress:
            if call is None or call.session_id != event.session_id:
                return
            call.state = event.state.value
            loop_now = event.at
            if event.state is CallState.KEY_EXCHANGE:
                call.key_exchange_at = loop_now
            elif event.state is CallState.RINGING and call.key_exchange_at is not None:
                call.rtt = loop_now - call.key_exchange_at
            if event.state is CallState.TALKING:
                self.ringer.stop()
                call.talking_since = loop_now
                self._start_ticker()
            self.broadcast(self._call_event(call))
        elif kind is IncomingCall:
            self._incoming(event)
        elif kind is MissedCall:
            peer = f"{event.peer_id:040x}"
            log.info("refused a call from %s (%s): busy", peer,
                     self.callers.name_of(peer) or "unknown")
            self._missed(peer, "busy")
        elif kind is CallEnded:
            if call is not None and call.session_id == event.session_id:
                self._end_call(event.reason.value, event.stats)

    def _incoming(self, event: IncomingCall) -> None:
        peer = f"{event.peer_id:040x}"
        refusal = self.callers.refusal(peer, event.at)
        if refusal is not None or self.call is not None:
            # Unwanted: declined before it rings; the user only sees a missed call. One call at a
            # time: a second caller is declined too (the session layer already answers BUSY
            # while a call rings or talks).
            self.driver.node.decline(self.driver.loop.time(), event.session_id)
            self.driver.service()
            log.info("refused a call from %s (%s): %s", peer,
                     self.callers.name_of(peer) or "unknown", refusal or "busy, in a call already")
            self._missed(peer, refusal or "busy")
            return
        self.call = call = Call(event.session_id, peer, Role.CALLEE, "ringing",
                                created=event.at, address=address_text(event.addr))
        session = self.driver.node.session.sessions.get(event.session_id)
        if session is not None:
            call.rtt = max(0.0, event.at - session.started)
        name = self.callers.name_of(peer)
        log.info("incoming call from %s (%s)", peer, name or "unknown")
        address = call.address
        self.broadcast({
            "event": "incoming", "session": event.session_id, "peer": peer,
            "name": name, "address": address,
        })
        self.broadcast(self._call_event(call))
        self.hooks.fire("ring", peer, name, session=call.session_id, role="callee",
                        address=address)
        if self.config.auto_answer == "contacts" and name is not None:
            try:
                self._answer(call)
                log.info("answered the call from %s (%s) by itself ([calls] auto_answer)",
                         peer, name)
                return
            except protocol.BadRequest as e:  # the devices failed: it rings, as any call
                log.warning("cannot answer the call from %s by itself: %s", name, e.message)
        self._ring()

    def _ring(self) -> None:
        """Ring on [calls] ring_device, else on the playback device unless that is none or a
        wav: recording (app/ringer.py)."""
        device = (self.config.ring_device or self.devices.playback).strip()
        if device == "none" or (device.startswith("wav:") and not self.config.ring_device):
            device = None
        self.ringer.device = device
        self.ringer.start()

    def _missed(self, peer: str, reason: str) -> None:
        if self.history is not None:
            self.history.refused(peer, self.callers.name_of(peer), reason)
        self.broadcast({"event": "missed", "peer": peer, "name": self.callers.name_of(peer),
                        "reason": reason})

    def _call_event(self, call: Call, reason: str | None = None) -> dict[str, Any]:
        event = {"event": "call", **self.info(call)}
        if reason is not None:
            event["reason"] = reason
        return event

    def info(self, call: Call) -> dict[str, Any]:
        loop_now = asyncio.get_running_loop().time()
        return {
            "session": call.session_id, "peer": call.peer, "name": self.callers.name_of(call.peer),
            "role": call.role.value, "state": call.state, "muted": call.muted,
            "duration": round(loop_now - call.talking_since, 3) if call.talking_since else 0.0,
            "address": call.address,
        }

    def _end_call(self, reason: str, stats: Any) -> None:
        call = self.call
        if call is None:
            return
        self.call = None
        self._stop_ticker()
        self.ringer.stop()
        call.state = "ended"
        summary = self._call_event(call, reason)
        summary["stats"] = _session_stats(stats) if stats is not None else None
        if call.audio is not None:
            summary["media"] = _jsonable(call.audio.stats())
            call.audio.close()
            call.audio = None
        self.last_call = summary
        log.info("call with %s ended: %s", call.peer, reason)
        if self.history is not None:
            self.history.call_ended(call, reason, summary["duration"], summary["name"])
        self.broadcast(summary)
        self.hooks.fire("call_end", call.peer, self.callers.name_of(call.peer),
                        session=call.session_id, role=call.role.value, reason=reason,
                        duration=summary["duration"], address=summary["address"])

    # -- audio ticks ----------------------------------------------------------------------------

    def _start_ticker(self) -> None:
        self._stop_ticker()
        loop = asyncio.get_running_loop()
        self._tick_t0 = loop.time()
        self._tick_n = 0
        self._tick_handle = loop.call_soon(self._tick)

    def _stop_ticker(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._play_handle is not None:
            self._play_handle.cancel()
            self._play_handle = None

    def _tick(self) -> None:
        call = self.call
        driver = self.driver
        if call is None or call.state != "talking" or driver is None:
            self._tick_handle = None
            return
        loop = driver.loop
        now = loop.time()
        audio = call.audio
        if audio is not None:
            payload = audio.capture(now, call.muted)
            if payload is not None:
                driver.node.send_media(call.session_id, payload, now)
                driver.service()
            while audio.errors:
                self.devices.failed(audio.errors.pop(0))
        if self.call is not call:  # send_media may end the call (sequence space exhausted)
            return
        self._schedule_play()  # frames that came before the call talked
        self._tick_n += 1
        due = self._tick_t0 + self._tick_n * FRAME
        if due < now - 5 * FRAME:  # the loop was held up: drop the lost ticks, do not burst
            self._tick_t0, self._tick_n, due = now, 0, now
        self._tick_handle = loop.call_at(due, self._tick)

    def _schedule_play(self) -> None:
        """Playout runs on its own 20 ms clock, started when the peer's first frame is due
        (node/media/playout.py), so a frame waits for the jitter buffer's target only, not
        for the capture tick (issue 16)."""
        call = self.call
        if (self._play_handle is not None or call is None or call.audio is None
                or call.state != "talking" or self.driver is None):
            return
        loop = self.driver.loop
        at = call.audio.next_play(loop.time())
        if at is not None:
            self._play_handle = loop.call_at(at, self._play)

    def _play(self) -> None:
        self._play_handle = None
        call = self.call
        if call is None or call.state != "talking" or call.audio is None or self.driver is None:
            return
        call.audio.play(self.driver.loop.time())
        while call.audio.errors:
            self.devices.failed(call.audio.errors.pop(0))
        self._schedule_play()

    # -- once a second --------------------------------------------------------------------------

    def report(self, now: float) -> None:
        """The talking call's quality event, if one talks."""
        call = self.call
        if call is not None and call.state == "talking":
            self.broadcast(self._quality(call, now))

    def _quality(self, call: Call, now: float) -> dict[str, Any]:
        session = self.driver.node.session
        stats = session.session_stats(call.session_id) if session is not None else None
        event: dict[str, Any] = {"event": "quality", "session": call.session_id,
                                 "duration": round(now - (call.talking_since or now), 3)}
        if stats is None:
            return event
        last = call.last or (0, 0, 0, 0, call.talking_since or now)
        dt = max(now - last[4], 1e-3)
        packets, lost = stats.packets - last[0], stats.lost - last[2]
        call.last = (stats.packets, stats.bytes, stats.lost, stats.bytes_sent, now)
        media = call.audio.stats() if call.audio is not None and call.audio.media else {}
        target = media.get("target_delay") or 0.0
        rtt = self._rtt(call)
        event.update(
            rx_kbps=round((stats.bytes - last[1]) * 8 / dt / 1000, 2),
            tx_kbps=round((stats.bytes_sent - last[3]) * 8 / dt / 1000, 2),
            bitrate_kbps=round(media.get("bitrate", 0) / 1000, 2),
            loss=round(max(lost, 0) / max(packets + lost, 1), 4),
            jitter_ms=round(stats.jitter * 1000, 2),
            rtt_ms=round(rtt * 1000, 2) if rtt is not None else None,
            latency_ms=round(((rtt or 0.0) / 2 + target + FRAME + CODEC_DELAY) * 1000, 1),
            packets_rx=stats.packets, packets_tx=stats.packets_sent, lost=stats.lost,
            concealed=media.get("concealed", 0), fec=media.get("fec", 0),
        )
        return event

    # -- commands -------------------------------------------------------------------------------

    def cmd_dial(self, client: Any, msg: dict) -> dict:
        peer = self.callers.target(msg)
        if peer == f"{self.driver.node.node_id:040x}":
            raise protocol.BadRequest("bad_argument", "that is this node's own ID")
        if self.call is not None:
            raise protocol.BadRequest("busy", f"already in a call ({self.call.state}); hang up first")
        self._check_joined()
        audio = self.devices.open()
        # The call's first events (dialling; key exchange when the peer is in the table; the
        # end when no lookup can start) come from the event loop after driver.call returns
        # (transport/udp.py), so self.call is set when they arrive.
        try:
            session_id = self.driver.call(int(peer, 16))
        except Exception:
            audio.close()
            raise
        self.call = Call(session_id, peer, Role.CALLER, "dialling", audio=audio,
                         created=self.driver.loop.time())
        audio.attach(session_id)
        log.info("dialling %s (%s)", peer, self.callers.name_of(peer) or "unknown")
        return {"session": session_id, "peer": peer, "name": self.callers.name_of(peer)}

    def _check_joined(self) -> None:
        """A lookup needs contacts: with an empty routing table a dial could only end
        `unreachable`, which would blame the peer (issue 14 item 6)."""
        node = self.driver.node
        if len(node.routing.table):
            return
        rejoin = node.rejoin
        if rejoin is not None and rejoin.running is not None:
            why = "the join is still running; try again in a moment (`kadtalk status` shows it)"
        elif rejoin is not None and rejoin.bootstrap:
            why = "the join found nobody yet; it is retried (is the bootstrap node up?)"
        else:
            why = "no bootstrap node: start the daemon with --bootstrap HOST:PORT"
        raise protocol.BadRequest("not_joined", f"not joined yet: {why}")

    def _ringing(self) -> Call:
        call = self.call
        if call is None or call.role is not Role.CALLEE or call.state != "ringing":
            raise protocol.BadRequest("no_call", "no incoming call is ringing")
        return call

    def cmd_answer(self, client: Any, msg: dict) -> dict:
        call = self._ringing()
        try:
            self._answer(call)
        except protocol.BadRequest as e:
            if e.code == "audio_device" and self.call is call:
                self._ring()  # it keeps ringing: fix the device, then answer
            raise
        return {"session": call.session_id}

    def _answer(self, call: Call) -> None:
        self.ringer.stop()  # the call's audio may need the ringing device
        if call.audio is None:
            call.audio = self.devices.open()  # on failure it keeps ringing: fix, then answer
            call.audio.attach(call.session_id)
        if not self.driver.answer(call.session_id):
            if self.call is not call and call.audio is not None:
                call.audio.close()
            raise protocol.BadRequest("no_call", "the call ended before it could be answered")

    def cmd_decline(self, client: Any, msg: dict) -> dict:
        call = self._ringing()
        self.ringer.stop()
        done = self.driver.node.decline(self.driver.loop.time(), call.session_id)
        self.driver.service()
        if self.call is call:  # CallEnded normally ended it synchronously
            self._end_call("declined", None)
        return {"session": call.session_id, "declined": done}

    def cmd_hangup(self, client: Any, msg: dict) -> dict:
        call = self.call
        if call is None:
            raise protocol.BadRequest("no_call", "there is no call to hang up")
        self.driver.hang_up(call.session_id)
        if self.call is call:
            self._end_call("hung_up", None)
        return {"session": call.session_id}

    def cmd_mute(self, client: Any, msg: dict) -> dict:
        call = self.call
        if call is None:
            raise protocol.BadRequest("no_call", "mute applies to a call; there is none")
        on = msg.get("on", not call.muted)
        if not isinstance(on, bool):
            raise protocol.BadRequest("bad_argument", '"on" must be true or false')
        call.muted = on
        self.broadcast(self._call_event(call))
        return {"muted": on}

    def cmd_stats(self, client: Any, msg: dict) -> dict:
        call = self.call
        if call is None:
            if self.last_call is None:
                raise protocol.BadRequest("no_call", "no call yet")
            return {"current": False, "call": self.last_call}
        session = self.driver.node.session
        stats = session.session_stats(call.session_id) if session is not None else None
        info = self.info(call)
        info["stats"] = _session_stats(stats) if stats is not None else None
        info["media"] = _jsonable(call.audio.stats()) if call.audio is not None else None
        rtt = self._rtt(call)
        info["rtt_ms"] = round(rtt * 1000, 2) if rtt is not None else None
        return {"current": True, "call": info}

    def _rtt(self, call: Call) -> float | None:
        """The round trip from the peer's receiver reports (refreshed through the call, issue
        16), else the estimate from the call's set-up."""
        session = self.driver.node.session if self.driver is not None else None
        rtt = session.rtt_of(call.session_id) if session is not None else None
        return rtt if rtt is not None else call.rtt


def address_text(addr: Any) -> str:
    """A peer's address for people: "host:port", or "relay host:port" when the call runs
    through a relay (RelayPath)."""
    if type(addr) is RelayPath:
        return f"relay {addresses.text(addr.relay)}"
    return addresses.text(addr)


def _session_stats(stats: Any) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in stats.__slots__}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
            for k, v in data.items()}
