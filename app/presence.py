"""The daemon's presence (issue 14 item 3): the user's status, told to contacts only and
directly, never published, and the contacts' last-known status (docs/protocol.md §15c).

The node sends our status (`SessionLayer.set_presence`) on every session with a contact, when
it opens, when the status changes and in place of its keepalives, and reports the peer's
(`PresenceReceived`). This part keeps the user's choice (`kadtalk presence`, persisted in the
history database's marks), shows only contacts' statuses (a stranger's PRESENCE is a counted
drop: `ignored`), and infers "offline": a contact with no session and nothing heard for
PRESENCE_TTL seconds is shown offline. The node cannot know better without publishing
presence in the DHT, which issue 14 forbids.

Cost, bounded: the daemon opens sessions for presence only when it has joined (start) and when
the user changes status, at most one per contact per REDIAL seconds and FANOUT per round; each
carries nothing else and closes after the session layer's chat_idle_timeout (60 s). It never
polls: a contact that comes online dials us (we are its contact), and a daemon that stops sends
"offline" on its open sessions first.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, Callable

from kadtalk.node.routing.events import Joined
from kadtalk.node.session import SessionOpened
from kadtalk.node.session.presence import OFFLINE, STATUSES, PresenceReceived
from kadtalk.node.session.state import CARRIES_MESSAGES

from . import protocol

log = logging.getLogger(__name__)

CHOICES = ("online", "away", "busy")  # what a user may choose; "offline" is inferred (or said)
PRESENCE_TTL = 15 * 60.0  # s: a contact not heard from for this long is shown offline
REDIAL = 300.0  # s: a contact is dialled for presence at most once in this long
FANOUT = 64  # contacts dialled for presence in one round (start, status change)
CHECK_EVERY = 30.0  # s between looks for contacts whose status went stale
_MARK = "presence"  # the history database's mark holding the user's status (its index)


class Presence:
    """`driver` is set by the daemon once the node runs; `history` is app/history.py's History;
    `extra_peers()` names further peers to dial on joining (app/contact_requests.py: those our
    requests and replies wait for)."""

    def __init__(self, callers: Any, history: Any, broadcast: Callable[[dict], None]):
        self.callers = callers
        self.history = history
        self.broadcast = broadcast
        self.driver: Any = None
        self.status = "online"
        self.peers: dict[str, dict[str, Any]] = {}  # contact -> status, at (wall), seen (loop)
        self.ignored = 0  # PRESENCEs from peers that are not contacts
        self.dialled: dict[str, float] = {}  # peer -> when we last opened a session for presence
        self.extra_peers: Callable[[], list[str]] = list
        self._joined = False
        self._timer: Any = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """The node runs: the saved status goes to the session layer (nothing is sent yet)."""
        db = self.history.db
        if db is not None:
            try:
                row = db.connection.execute(
                    "SELECT value FROM marks WHERE name = ?", (_MARK,)).fetchone()
            except sqlite3.Error as e:
                log.warning("cannot read the history database %s: %s", self.history.path, e)
                row = None
            if row is not None and 0 <= row[0] < len(CHOICES):
                self.status = CHOICES[row[0]]
        self._tell(self.status)
        self._timer = self.driver.loop.call_later(CHECK_EVERY, self._check)

    def close(self) -> None:
        """The daemon stops: "offline" goes on every session with a contact (before they end)."""
        if self._timer is not None:
            self._timer.cancel()
        if self.driver is not None:
            self._tell("offline")
            self.driver.service()

    def _layer(self) -> Any:
        # the node makes its session layer on the first session; make it now to hold the status
        return self.driver.node.session_layer()

    def _tell(self, status: str) -> None:
        layer = self._layer()
        if layer is not None:
            layer.set_presence(STATUSES.index(status), self.driver.loop.time())

    # -- node events ----------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        kind = type(event)
        if kind is PresenceReceived:
            self._received(f"{event.peer_id:040x}", STATUSES[event.status])
        elif kind is SessionOpened:
            peer = f"{event.peer_id:040x}"
            if peer in self.peers:
                self.peers[peer]["seen"] = self.driver.loop.time()
        elif kind is Joined and event.success and not self._joined:
            self._joined = True  # the first join: tell every contact we are here
            self.dial(self.driver.loop.time(), self.extra_peers())

    def _received(self, peer: str, status: str) -> None:
        name = self.callers.name_of(peer)
        if name is None:
            self.ignored += 1  # a stranger's status: not shown (contacts only)
            return
        entry = self.peers.get(peer)
        self.peers[peer] = {"status": status, "at": time.time(), "seen": self.driver.loop.time()}
        if entry is None or entry["status"] != status:
            self.broadcast({"event": "presence", "peer": peer, "name": name, "status": status,
                            "at": self.peers[peer]["at"]})

    def contact_added(self, peer: str) -> None:
        """`peer` became a contact (a request accepted either way, or `contacts add`): our
        status goes to it at once, on its live session or one opened for it (as at a join),
        and the status its live session already told (dropped then: not yet a contact) is
        shown from now."""
        if self.driver is None:
            return
        self._tell(self.status)
        layer = self.driver.node.session
        for s in (layer.sessions.values() if layer is not None else ()):
            if f"{s.peer_int:040x}" == peer and s.peer_presence is not None:
                self._received(peer, STATUSES[s.peer_presence])
        if peer not in self._live():
            self._open(peer, self.driver.loop.time())
        self.driver.service()

    # -- what is shown --------------------------------------------------------------------------

    def _live(self) -> set[str]:
        """Peers with a session that carries messages now (their status is current)."""
        layer = self.driver.node.session if self.driver is not None else None
        if layer is None:
            return set()
        return {f"{s.peer_int:040x}" for s in layer.sessions.values()
                if s.state in CARRIES_MESSAGES}

    def of(self, peer: str, live: set[str] | None = None) -> dict[str, Any]:
        """A contact's presence as shown: its status, and when it was last heard (Unix time)."""
        entry = self.peers.get(peer)
        if entry is None or self.driver is None:
            return {"status": "offline", "last_seen": None}
        now = self.driver.loop.time()
        if peer in (self._live() if live is None else live):
            entry["seen"] = now
        fresh = now - entry["seen"] < PRESENCE_TTL and entry["status"] != "offline"
        return {"status": entry["status"] if fresh else "offline",
                "last_seen": round(time.time() - (now - entry["seen"]), 3)}

    def _check(self) -> None:
        """Contacts whose status went stale are offline from now: told to clients once."""
        self._timer = self.driver.loop.call_later(CHECK_EVERY, self._check)
        try:
            live = self._live()
            for peer, entry in list(self.peers.items()):
                if entry["status"] != "offline" and self.of(peer, live)["status"] == "offline":
                    entry["status"] = "offline"
                    self.broadcast({"event": "presence", "peer": peer,
                                    "name": self.callers.name_of(peer), "status": "offline",
                                    "at": time.time(), "inferred": True})
        except Exception:
            log.exception("presence check failed")

    # -- dialling, bounded ----------------------------------------------------------------------

    def dial(self, now: float, extra: list[str] = ()) -> int:
        """Open a session for messages to each contact (and `extra` peer) without one, not
        dialled in the last REDIAL s, FANOUT at most; how many were opened. Each carries our
        PRESENCE (and what else waits for that peer) and closes by itself when idle."""
        if self.driver is None:
            return 0
        live = self._live()
        opened = 0
        for peer in [*self.callers.contacts.by_id, *extra]:
            if opened >= FANOUT:
                break
            if peer not in live:
                opened += self._open(peer, now)
        if opened:
            self.driver.service()
            log.info("opened %d session(s) to tell contacts our presence", opened)
        return opened

    def _open(self, peer: str, now: float) -> bool:
        """A session for messages to `peer`, unless one was opened in the last REDIAL s."""
        if now - self.dialled.get(peer, -REDIAL) < REDIAL:
            return False
        self.dialled[peer] = now
        try:
            self.driver.node.call(int(peer, 16), now, chat=True)
        except (ValueError, RuntimeError) as e:
            log.info("no session for presence with %s: %s", peer, e)
            return False
        return True

    # -- commands -------------------------------------------------------------------------------

    def cmd_presence(self, client: Any, msg: dict) -> dict:
        """Without "status": ours and our contacts'. With it: set ours (persisted), tell the
        contacts we have sessions with at once, and dial the others (bounded, see above)."""
        status = msg.get("status")
        if status is not None:
            if status not in CHOICES:
                raise protocol.BadRequest("bad_argument",
                                          f'"status" must be one of {", ".join(CHOICES)}')
            if self.driver is None:
                raise protocol.BadRequest("not_joined", "the node is not running yet")
            changed = status != self.status
            self.status = status
            db = self.history.db
            if db is not None:
                try:
                    db.connection.execute("INSERT OR REPLACE INTO marks (name, value) VALUES "
                                          "(?, ?)", (_MARK, CHOICES.index(status)))
                except sqlite3.Error as e:
                    raise protocol.BadRequest(
                        "io_error", f"cannot save the status in {self.history.path}: {e}") from None
            self._tell(status)
            self.driver.service()
            if changed:
                self.dial(self.driver.loop.time())
        live = self._live() if self.driver is not None else set()
        contacts = [{"peer": peer, "name": name, **self.of(peer, live)}
                    for peer, name in self.callers.contacts.by_id.items()] \
            if self.driver is not None else []
        return {"status": self.status, "contacts": contacts, "ignored": self.ignored}


__all__ = ["CHOICES", "OFFLINE", "PRESENCE_TTL", "Presence"]
