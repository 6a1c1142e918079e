"""Contact requests (issue 14 item 3), like Tox's friend requests: `kadtalk contact request ID`,
`contact requests`, `contact accept|decline ID`, and the `contact_request` / `contact_reply`
events (docs/control.md; the frames: docs/protocol.md §15c).

A request goes as a CONTACT_REQ on a session with the peer (opened for it if need be), sent
again until its RECEIPT and, if the session ends first, on the next one (as long as it is
pending here). One whose RECEIPT has not come RETRY_FIRST s later (the peer is offline, or not
found yet) is sent again then, and again after twice as long each time up to RETRY_MAX, for
RETRY_FOR (the mailbox's lifetime), and each time also sealed into the peer's DHT mailbox like
a message (app/mailbox.py): state `stored` once storers hold it, and no further retries in this
run. So a request reaches a peer that comes online after we went offline, at its join's fetch,
as in Jami; a peer never seen online (no prekey to seal to) gets it from a retry while it is
online. A reply (accept, or a told decline) goes the same way. The receiver takes one from the
mailbox as one from a session (the same limits), and shows a request id once however often
and by whichever way it comes (docs/design-decisions.md, "Contact requests to offline
peers"). The receiver keeps it in the history database (table contact_requests, one row
per peer and direction: a repeat replaces the note) until the user answers. Accepting adds the
requester as a contact and sends a CONTACT_REPLY; the requester's daemon adds the accepter when
that reply arrives, and only if it names a request of ours to that same peer still pending (an
unsolicited "accepted" changes nothing). Declining is silent unless the user asks to tell
(`tell`): a requester cannot tell a declined request from one not seen yet, as in Tox.

Requests get through in contacts-only mode (that is what they are for: strangers' calls and
messages are refused, a request is how one stops being a stranger), within limits: the node's
per-session and all-strangers budgets (§15b), then here at most RATE new requests a second in
all (burst BURST), at most MAX_PENDING waiting, and nothing from a peer blocked or declined in
the last QUIET s. What is over a limit is dropped and counted (`dropped`); its sender had its
RECEIPT and learns nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from typing import Any, Callable

from kadtalk.node.ratelimit import TokenBucket
from kadtalk.node.routing.events import Joined
from kadtalk.node.session import MessageDelivered, SessionOpened
from kadtalk.node.session.presence import (
    CONTACT_REQ,
    MAX_NOTE,
    ContactReplied,
    ContactRequested,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from kadtalk.node.session.wire import Drop

from . import protocol
from .config import check_name, parse_id

log = logging.getLogger(__name__)

MAX_PENDING = 100  # incoming requests waiting for the user's answer
RATE = 1 / 6  # new incoming requests a second, in all (10 a minute) ...
BURST = 20.0  # ... with this burst
QUIET = 24 * 3600.0  # s: a peer declined (or blocked) is not heard again for this long
RESEND = 32  # waiting requests and replies sent again when a session with their peer opens
RETRY_FIRST = 30.0  # s after a request or reply without RECEIPT: sent again, and mailed
RETRY_MAX = 3600.0  # s: the interval between retries doubles up to this
RETRY_FOR = 7 * 24 * 3600.0  # s after it was made a request or reply is retried (mail's ttl)
_KEYS = ("peer", "direction", "request_id", "note", "name", "state", "made", "answered")


class ContactRequests:
    """`driver` is set by the daemon once the node runs; `history` is app/history.py's History
    (its `db` holds the table); `presence` (app/presence.py) is told of a new contact."""

    def __init__(self, callers: Any, history: Any, config: Any,
                 broadcast: Callable[[dict], None]):
        self.callers = callers
        self.history = history
        self.config = config
        self.broadcast = broadcast
        self.driver: Any = None
        self.presence: Any = None
        self.dropped = 0  # requests over a limit, from blocked or recently declined peers
        self.unsolicited = 0  # replies that answer no request of ours
        self.mailbox: Any = None  # app/mailbox.py's Mailbox (`use_mailbox`)
        self.retry_at: dict[str, tuple[float, float]] = {}  # peer -> (when, interval): loop s
        self.stored: set[tuple[str, str]] = set()  # (peer, frame id) storers hold, this run
        self._bucket: TokenBucket | None = None
        self._joined = False
        self._timer: Any = None

    def use_mailbox(self, mailbox: Any) -> None:
        """Requests and replies also go through the peer's DHT mailbox (and come from ours)."""
        self.mailbox = mailbox
        mailbox.frames = self

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the table ------------------------------------------------------------------------------

    def _db(self) -> Any:
        db = self.history.db
        if db is None:
            raise protocol.BadRequest("io_error", "the history database is not open")
        return db.connection

    def _row(self, peer: str, direction: str) -> dict[str, Any] | None:
        row = self._db().execute(
            f"SELECT {', '.join(_KEYS)}, reply_id, reply_stored FROM contact_requests WHERE "
            "peer = ? AND direction = ?", (peer, direction)).fetchone()
        return None if row is None else dict(zip((*_KEYS, "reply_id", "reply_stored"), row))

    def _put(self, peer: str, direction: str, request_id: str, note: str, name: str | None,
             state: str) -> None:
        self._db().execute(
            "INSERT OR REPLACE INTO contact_requests (peer, direction, request_id, note, name, "
            "state, made) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (peer, direction, request_id, note, name, state, time.time()))

    def _set(self, peer: str, direction: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._db().execute(f"UPDATE contact_requests SET {sets} WHERE peer = ? AND direction = ?",
                           (*fields.values(), peer, direction))

    def waiting_peers(self) -> list[str]:
        """Peers our requests or replies wait for (dialled when the node joins)."""
        try:
            rows = self._db().execute(
                "SELECT peer FROM contact_requests WHERE (direction = 'out' AND state IN "
                "('pending', 'stored')) OR reply_id IS NOT NULL LIMIT ?", (RESEND,)).fetchall()
        except (sqlite3.Error, protocol.BadRequest):
            return []
        return [peer for (peer,) in rows]

    # -- node events ----------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """A request or reply on a session is confirmed to the node (its RECEIPT goes) once it
        is kept here, or refused for good (a limit, blocked, a repeat); one that cannot be
        written is not, so its sender sends it again (as a message: app/messages.py)."""
        kind = type(event)
        try:
            if kind is ContactRequested:
                self._requested(f"{event.peer_id:040x}", event.request_id.hex(), event.note)
                self._confirm(event.session_id, event.request_id)
            elif kind is ContactReplied:
                self._replied(f"{event.peer_id:040x}", event.request_id.hex(), event.accepted)
                self._confirm(event.session_id, event.reply_id)
            elif kind is MessageDelivered:
                self._delivered(f"{event.peer_id:040x}", event.message_id.hex())
            elif kind is SessionOpened:
                self._resend(f"{event.peer_id:040x}")
            elif kind is Joined and event.success and not self._joined:
                self._joined = True  # what waits from an earlier run: retried from now on
                now = self.driver.loop.time()
                for peer in self.waiting_peers():
                    self._schedule(peer, now)
        except (sqlite3.Error, protocol.BadRequest, OSError) as e:
            self.history.write_errors += 1
            log.warning("cannot keep a contact request in %s: %s", self.history.path, e)

    def _confirm(self, session_id: int, frame_id: bytes) -> None:
        driver = self.driver
        layer = driver.node.session_layer() if driver is not None else None
        if layer is not None and layer.confirm(session_id, frame_id, driver.loop.time()):
            driver.service()

    def _requested(self, peer: str, request_id: str, note: str) -> None:
        if peer in self.config.block or peer in self.callers.blocked:
            self.dropped += 1
            return
        row = self._row(peer, "in")
        if row is not None and row["request_id"] == request_id:
            return  # seen already (on another session, from the mailbox too): shown once
        if self.callers.name_of(peer) is not None:  # a contact asks again (it lost us): yes
            self._put(peer, "in", request_id, note, None, "accepted")
            self._send_reply(peer, request_id, True)
            return
        now = self.driver.loop.time() if self.driver is not None else time.monotonic()
        if row is not None and row["state"] == "declined" and \
                time.time() - (row["answered"] or 0) < QUIET:
            self.dropped += 1  # declined lately: not shown again
            return
        if row is None or row["state"] != "pending":  # a new one: the limits
            (waiting,) = self._db().execute(
                "SELECT count(*) FROM contact_requests WHERE direction = 'in' AND state = "
                "'pending'").fetchone()
            if self._bucket is None:
                self._bucket = TokenBucket(RATE, BURST, now)
            if waiting >= MAX_PENDING or not self._bucket.take(now):
                self.dropped += 1
                log.info("dropped a contact request from %s (%d waiting; at most %d, %g a "
                         "second)", peer, waiting, MAX_PENDING, RATE)
                return
        self._put(peer, "in", request_id, note, None, "pending")
        log.info("contact request from %s", peer)
        self.broadcast({"event": "contact_request", "peer": peer, "request_id": request_id,
                        "note": note, "at": time.time()})

    def _replied(self, peer: str, request_id: str, accepted: bool) -> None:
        row = self._row(peer, "out")
        if row is None or row["request_id"] != request_id or \
                row["state"] not in ("pending", "stored", "delivered"):
            self.unsolicited += 1  # no request of ours to this peer: nothing changes
            log.info("ignored a contact reply from %s that answers no request of ours", peer)
            return
        name = None
        if accepted:  # first: if the state cannot be written then, the repeat finds the name
            name = self._add_contact(peer, row["name"])
        self._set(peer, "out", state="accepted" if accepted else "declined",
                  answered=time.time())
        self.broadcast({"event": "contact_reply", "peer": peer, "name": name,
                        "accepted": accepted, "at": time.time()})

    def _delivered(self, peer: str, frame_id: str) -> None:
        out = self._row(peer, "out")
        if out is not None and out["request_id"] == frame_id and \
                out["state"] in ("pending", "stored"):
            self._set(peer, "out", state="delivered")
        incoming = self._row(peer, "in")
        if incoming is not None and incoming["reply_id"] == frame_id:
            self._set(peer, "in", reply_id=None)  # our reply arrived

    def _resend(self, peer: str) -> None:
        """A session with `peer` opened: our request or reply waiting for it goes now."""
        for frame_id, frame, _ in self._waiting(peer):
            self._send(peer, frame_id, frame)

    def _waiting(self, peer: str) -> list[tuple[bytes, bytes, float]]:
        """(id, frame, made: Unix time) of our request and reply to `peer` without RECEIPT."""
        frames = []
        out = self._row(peer, "out")
        if out is not None and out["state"] in ("pending", "stored"):
            request_id = bytes.fromhex(out["request_id"])
            frames.append((request_id, encode_request(request_id, out["note"]), out["made"]))
        incoming = self._row(peer, "in")
        if incoming is not None and incoming["reply_id"] is not None:
            reply_id = bytes.fromhex(incoming["reply_id"])
            frames.append((reply_id, encode_reply(
                reply_id, bytes.fromhex(incoming["request_id"]), incoming["state"] == "accepted"),
                incoming["answered"] or incoming["made"]))
        return frames

    # -- retries and the mailbox ----------------------------------------------------------------

    def _schedule(self, peer: str, now: float) -> None:
        """Retry `peer`'s request or reply RETRY_FIRST s from now (unless one is due sooner)."""
        if peer not in self.retry_at:
            self.retry_at[peer] = (now + RETRY_FIRST, RETRY_FIRST)
            self._arm(now)

    def _arm(self, now: float, wait: float = 0.0) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.retry_at and self.driver is not None:
            due = min(at for at, _ in self.retry_at.values())
            self._timer = self.driver.loop.call_later(max(wait, due - now), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.driver.loop.time()
        try:
            self.retry(now)
        except (sqlite3.Error, protocol.BadRequest) as e:
            self.history.write_errors += 1
            log.warning("cannot read the contact requests in %s: %s", self.history.path, e)
            self._arm(now, RETRY_FIRST)  # the file is back later, or the daemon stops
            return
        self._arm(now)

    def retry(self, now: float) -> None:
        """Each peer due: what still waits for its RECEIPT goes again on a session (opened for
        it: the peer may be online now) and into its mailbox (for when it comes online), unless
        storers hold it already; again after twice as long (RETRY_MAX at most), for RETRY_FOR
        after it was made. A request `stored` in an earlier run (its state persists; storers
        keep it the mail's lifetime), or a reply (its `reply_stored`), goes live once more and
        is not mailed again."""
        for peer, (at, interval) in list(self.retry_at.items()):
            if at > now:
                continue
            frames = [f for f in self._waiting(peer) if (peer, f[0].hex()) not in self.stored
                      and time.time() - f[2] < RETRY_FOR]
            if not frames:
                del self.retry_at[peer]
                continue
            interval = min(2 * interval, RETRY_MAX)
            self.retry_at[peer] = (now + interval, interval)
            log.info("contact request or reply to %s: no receipt yet; sent again and mailed "
                     "unless storers hold it (next try in %g s)", peer, interval)
            held = self._held(peer)
            for frame_id, frame, _ in frames:
                self._send(peer, frame_id, frame)
                if frame_id.hex() in held:
                    self.stored.add((peer, frame_id.hex()))  # storers hold it (an earlier run)
                elif self.mailbox is not None:
                    self.mailbox.mail_frame(peer, frame_id.hex(), frame)

    def _held(self, peer: str) -> set[str]:
        """Ids of our request and reply to `peer` that storers hold, as the history says."""
        out, incoming = self._row(peer, "out"), self._row(peer, "in")
        held = set()
        if out is not None and out["state"] == "stored":
            held.add(out["request_id"])
        if incoming is not None and incoming["reply_id"] is not None and incoming["reply_stored"]:
            held.add(incoming["reply_id"])
        return held

    def mailed(self, peer: str, frame_id: str, stored: bool) -> None:
        """The mailbox's outcome for our frame `frame_id` to `peer` (app/mailbox.py)."""
        try:
            if not stored:
                return  # the next retry mails it again (no prekey yet, no storer answered)
            self.stored.add((peer, frame_id))
            if all((peer, f[0].hex()) in self.stored for f in self._waiting(peer)):
                self.retry_at.pop(peer, None)  # nothing else waits: no further tries
            incoming = self._row(peer, "in")
            if incoming is not None and incoming["reply_id"] == frame_id:
                self._set(peer, "in", reply_stored=1)  # kept for the next run (retry)
            out = self._row(peer, "out")
            if out is not None and out["request_id"] == frame_id and out["state"] == "pending":
                self._set(peer, "out", state="stored")
                self.broadcast({"event": "contact_request_stored", "peer": peer,
                                "request_id": frame_id, "at": time.time()})
        except (sqlite3.Error, protocol.BadRequest) as e:
            self.history.write_errors += 1
            log.warning("cannot keep a contact request in %s: %s", self.history.path, e)

    def from_mailbox(self, peer: str, frame: bytes) -> bool:
        """A CONTACT_REQ or CONTACT_REPLY `peer` sealed into our mailbox (its signature checked
        by the node): taken as one from a session. False: it could not be written (the mailbox
        leaves it with the storers for the next fetch)."""
        try:
            if frame[0] == CONTACT_REQ:
                request = decode_request(frame)
                self._requested(peer, request.request_id.hex(), request.note)
            else:
                reply = decode_reply(frame)
                self._replied(peer, reply.request_id.hex(), reply.accepted)
        except Drop:
            self.dropped += 1  # signed by its sender, but malformed: dropped (and acknowledged)
        except (sqlite3.Error, protocol.BadRequest) as e:
            self.history.write_errors += 1
            log.warning("cannot keep a contact request in %s: %s", self.history.path, e)
            return False
        return True

    # -- sending --------------------------------------------------------------------------------

    def _send(self, peer: str, frame_id: bytes, frame: bytes) -> bool:
        """On a session with `peer`, opening one for messages if there is none."""
        driver = self.driver
        node, now = driver.node, driver.loop.time()
        layer = node.session_layer()  # made on the first session; this may be it
        try:
            sid = layer.send_frame(int(peer, 16), frame_id, frame, now)
            if sid is None:
                node.call(int(peer, 16), now, chat=True)
                sid = layer.send_frame(int(peer, 16), frame_id, frame, now)
        except ValueError as e:  # a full outbox: sent again at the next session
            log.warning("contact request or reply to %s not sent now: %s", peer, e)
            return False
        driver.service()
        return sid is not None

    def _send_reply(self, peer: str, request_id: str, accepted: bool) -> None:
        reply_id = os.urandom(16)
        self._set(peer, "in", reply_id=reply_id.hex(), reply_stored=0)
        self._send(peer, reply_id, encode_reply(reply_id, bytes.fromhex(request_id), accepted))
        self._schedule(peer, self.driver.loop.time())

    def _add_contact(self, peer: str, name: str | None) -> str:
        """Add `peer` (named `name`, else by its ID's first digits); the name it got."""
        existing = self.callers.name_of(peer)
        if existing is not None:
            return existing
        for candidate in (name, peer[:8], peer[:12], peer[:16]):
            if not candidate:
                continue
            try:
                entry = self.callers.contacts.add(peer, candidate)
                break
            except ValueError:
                continue  # the name is taken: try the next
        else:
            raise protocol.BadRequest("bad_argument", f"cannot name {peer}: give --name")
        self.broadcast({"event": "contacts", "contacts": self.callers._contact_list()})
        if self.presence is not None:
            self.presence.contact_added(peer)
        return entry["name"]

    # -- commands -------------------------------------------------------------------------------

    def cmd_contact_request(self, client: Any, msg: dict) -> dict:
        peer = parse_id(msg.get("to"))
        if peer is None:
            raise protocol.BadRequest("bad_argument", '"to" must be a node ID (40 hex digits)')
        if self.driver is None:
            raise protocol.BadRequest("not_joined", "the node is not running yet")
        if peer == f"{self.driver.node.node_id:040x}":
            raise protocol.BadRequest("bad_argument", "that is this node's own ID")
        note, name = msg.get("note", ""), msg.get("name")
        if not isinstance(note, str):
            raise protocol.BadRequest("bad_argument", '"note" must be a string')
        if name is not None:
            try:
                name = check_name(name)
            except ValueError as e:
                raise protocol.BadRequest("bad_argument", str(e)) from None
        request_id = os.urandom(16)
        try:
            frame = encode_request(request_id, note)
        except ValueError as e:
            raise protocol.BadRequest("too_long", str(e)) from None
        try:
            self._put(peer, "out", request_id.hex(), note, name, "pending")
        except sqlite3.Error as e:
            raise protocol.BadRequest("io_error", f"cannot store the request in "
                                      f"{self.history.path}: {e}") from None
        sending = self._send(peer, request_id, frame)
        self._schedule(peer, self.driver.loop.time())
        log.info("contact request %s to %s%s", request_id.hex(), peer,
                 "" if sending else ": no session now; it goes at the next one")
        return {"peer": peer, "request_id": request_id.hex(), "state": "pending"}

    def cmd_contact_requests(self, client: Any, msg: dict) -> dict:
        """Incoming requests waiting for an answer, and ours not answered (or answered)."""
        try:
            rows = self._db().execute(
                f"SELECT {', '.join(_KEYS)} FROM contact_requests WHERE direction = 'out' OR "
                "state = 'pending' ORDER BY made").fetchall()
        except sqlite3.Error as e:
            raise protocol.BadRequest("io_error", f"cannot read {self.history.path}: {e}") from None
        requests = [dict(zip(_KEYS, row)) for row in rows]
        return {"incoming": [r for r in requests if r["direction"] == "in"],
                "outgoing": [r for r in requests if r["direction"] == "out"],
                "dropped": self.dropped}

    def _pending_from(self, msg: dict) -> tuple[str, dict[str, Any]]:
        peer = parse_id(msg.get("peer"))
        if peer is None:
            raise protocol.BadRequest("bad_argument", '"peer" must be a node ID (40 hex digits)')
        row = self._row(peer, "in")
        if row is None or row["state"] != "pending":
            raise protocol.BadRequest("unknown_request", f"no contact request from {peer} waits")
        if self.driver is None:
            raise protocol.BadRequest("not_joined", "the node is not running yet")
        return peer, row

    def cmd_contact_accept(self, client: Any, msg: dict) -> dict:
        peer, row = self._pending_from(msg)
        name = msg.get("name")
        if name is not None:
            try:
                name = check_name(name)
            except ValueError as e:
                raise protocol.BadRequest("bad_argument", str(e)) from None
        try:
            name = self._add_contact(peer, name)
        except OSError as e:
            raise protocol.BadRequest("io_error", f"cannot save {self.callers.contacts.path}: "
                                      f"{e.strerror}") from None
        self._set(peer, "in", state="accepted", answered=time.time())
        self._send_reply(peer, row["request_id"], True)
        return {"peer": peer, "name": name, "state": "accepted"}

    def cmd_contact_decline(self, client: Any, msg: dict) -> dict:
        peer, row = self._pending_from(msg)
        tell = msg.get("tell", False)
        if not isinstance(tell, bool):
            raise protocol.BadRequest("bad_argument", '"tell" must be true or false')
        self._set(peer, "in", state="declined", answered=time.time())
        if tell:
            self._send_reply(peer, row["request_id"], False)
        return {"peer": peer, "state": "declined", "told": tell}


__all__ = ["MAX_NOTE", "MAX_PENDING", "ContactRequests"]
