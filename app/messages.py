"""The daemon's text messages (issue 14 item 1): `send` and `messages`, the `message`, `receipt`
and `message_pending` events, and the history database as the messages' memory.

The node (kadtalk.node.session.messages) carries a message on a session with the peer,
retransmits it until the peer's RECEIPT, and delivers each once per session; the receiving
node sends the RECEIPT only when this part confirms it wrote the message (`confirm`), so a
message a full disk could not take is sent again, not lost. This part keeps
every message in the history database first, so nothing is lost when a session ends before
the receipt: the message stays `pending` and goes again, with its id, on the next session with
that contact (SessionOpened: a call's, one the peer opens, or ours for a newer message). The
receiver keeps one row per sender and message id, so a message that comes twice (again on
another session, or both live and from the mailbox) is shown once. A message whose session
could not be set up or ended before its receipt also goes to the contact's DHT mailbox
(app/mailbox.py): `stored`, still sent again at the next session, `delivered` at its receipt.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from typing import Any, Callable

from kadtalk.node.layer import Event
from kadtalk.node.session import MessageDelivered, MessageReceived, MessagesUnsent, SessionOpened
from kadtalk.node.session.messages import MAX_TEXT, encode_text

from . import protocol
from .history import DEFAULT_LIMIT, MAX_LIMIT
from .mailbox import Mailbox

log = logging.getLogger(__name__)

RESEND = 100  # pending messages sent again when a session with their peer opens (oldest first)
STRANGER_KEEP = 1000  # incoming messages kept from peers not in the contacts (the newest) ...
PRUNE_EVERY = 100  # ... pruned to that at every this many new ones (a pruning scans the table)


class Messages:
    """`driver` is set by the daemon once the node runs; `history` is app/history.py's History
    (its `db` open while the daemon runs); `hooks` runs the user's on_message hook."""

    _unpruned = PRUNE_EVERY  # strangers' messages stored since the last pruning (first: prune)

    def __init__(self, callers: Any, history: Any, hooks: Any, config: Any,
                 broadcast: Callable[[dict], None]):
        self.callers = callers
        self.history = history
        self.hooks = hooks
        self.config = config
        self.broadcast = broadcast
        self.driver: Any = None
        self.ignored = 0  # messages from blocked peers (or strangers in contacts-only mode)
        self.mailbox = Mailbox(self)
        self.closing = False  # the daemon stops: what its sessions leave unsent waits here

    def start(self, now: float) -> None:
        """The node runs (`driver` set) and has not joined yet: the mailbox's upkeep on."""
        self.mailbox.start(now)

    def close(self) -> None:
        """The daemon stops (after the call's hang-up): end every session left, those open for
        messages, so each peer hears a HANGUP now instead of noticing after peer_timeout."""
        driver = self.driver
        self.closing = True
        session = driver.node.session if driver is not None else None
        if session is None:
            return
        for session_id in list(session.sessions):
            driver.node.hang_up(driver.loop.time(), session_id)
        driver.service()

    # -- node events ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is MessageReceived:
            self._received(event)
        elif kind is MessageDelivered:
            self._delivered(event)
        elif kind is SessionOpened:
            self._resend(f"{event.peer_id:040x}")
        elif kind is MessagesUnsent:
            peer = f"{event.peer_id:040x}"
            log.info("%d message(s) to %s wait for the next session (%s); to its mailbox",
                     len(event.message_ids), self.callers.name_of(peer) or peer,
                     event.reason.value)
            self.broadcast({"event": "message_pending", "peer": peer,
                            "name": self.callers.name_of(peer),
                            "message_ids": [m.hex() for m in event.message_ids],
                            "reason": event.reason.value})
            if not self.closing:
                self.mailbox.mail(peer)  # every pending one to this peer, not only these
        else:
            self.mailbox.on_event(event)

    def _received(self, event: MessageReceived) -> None:
        """A message on a session: its RECEIPT goes only once it is written (or refused for
        good); one the history cannot take gets none, so its sender sends it again."""
        kept = self.keep(f"{event.peer_id:040x}", event.message_id, event.seq, event.sent_ms,
                         event.text, event.session_id)
        driver = self.driver
        if kept is None or driver is None:
            return
        layer = driver.node.session_layer()
        if layer is not None and layer.confirm(event.session_id, event.message_id,
                                               driver.loop.time()):
            driver.service()

    def keep(self, peer: str, message_id_bytes: bytes, seq: int, sent_ms: int, text: str,
             session_id: int | None) -> bool:
        """A message from `peer` (live on session `session_id`, or None: from our mailbox):
        kept and shown unless its sender is blocked (or a stranger in contacts-only mode) or
        it is kept already; True when it is new here, None when it cannot be written: then it
        is neither shown nor acknowledged (a live one's sender sends it again, a mailbox one
        opens again at the next fetch), so it is shown once, when it is kept."""
        name = self.callers.name_of(peer)
        if peer in self.config.block or peer in self.callers.blocked or (
                self.config.accept == "contacts" and name is None):
            self.ignored += 1  # acknowledged by the node (the sender cannot tell), not kept
            log.info("ignored a message from %s (blocked, or not a contact)", peer)
            return False
        received = time.time()
        message_id = message_id_bytes.hex()
        row = dict(peer=peer, direction="in", message_id=message_id, text=text,
                   sent=sent_ms / 1000, received=received, seq=seq)
        written = self.write(lambda db: db.add_message(**row, state="delivered"))
        if written is False:
            return False  # kept already: a retransmission, or it came both ways: shown once
        if written is None:
            return None  # not kept: no receipt, it comes again (session or mailbox)
        if name is None:
            self._prune_strangers()
        self.broadcast({"event": "message", "peer": peer, "name": name, "direction": "in",
                        "message_id": message_id, "seq": seq, "sent": row["sent"],
                        "received": received, "text": text,
                        "via": "session" if session_id is not None else "mailbox"})
        self.hooks.fire("message", peer, name, message=text, session=session_id)
        return True

    def _delivered(self, event: MessageDelivered) -> None:
        peer = f"{event.peer_id:040x}"
        message_id = event.message_id.hex()
        at = time.time()
        changed = self.write(
            lambda db: db.set_message_state(peer, "out", message_id, "delivered", at))
        if changed is not False:  # False: a receipt for one delivered already
            self.broadcast({"event": "receipt", "peer": peer, "name": self.callers.name_of(peer),
                            "message_id": message_id, "state": "delivered", "at": at})

    def _prune_strangers(self) -> None:
        """With `accept` `anyone`, anyone may write to us: of the messages from peers not in the
        contacts only the newest STRANGER_KEEP stay (STRANGER_KEEP + PRUNE_EVERY - 1 at most),
        so no stranger can fill the history."""
        self._unpruned += 1
        db = self.history.db
        if db is None or self._unpruned < PRUNE_EVERY:
            return
        self._unpruned = 0
        try:
            gone = db.prune_strangers(list(self.callers.contacts.by_id), STRANGER_KEEP)
        except sqlite3.Error as e:
            self.history.write_errors += 1
            log.warning("cannot write the history database %s: %s", self.history.path, e)
            return
        if gone:
            log.info("deleted %d message(s) from strangers: the newest %d are kept", gone,
                     STRANGER_KEEP)

    def _resend(self, peer: str) -> None:
        """A session with `peer` opened: what waits for it goes now (queued once)."""
        db = self.history.db
        if db is None or self.driver is None:
            return
        try:
            waiting = db.pending(peer, RESEND)
        except sqlite3.Error as e:
            log.warning("cannot read the history database %s: %s", self.history.path, e)
            return
        for m in waiting:
            self._send(peer, m["message_id"], m["seq"], m["sent"], m["text"])

    def _send(self, peer: str, message_id: str, seq: int, sent: float, text: str) -> bool:
        driver = self.driver
        try:
            sid = driver.node.send_message(int(peer, 16), bytes.fromhex(message_id), seq,
                                           int(sent * 1000), text, driver.loop.time())
        except ValueError as e:  # a full outbox: it stays pending for the next session
            log.warning("message %s to %s not sent now: %s", message_id, peer, e)
            return False
        driver.service()
        return sid is not None

    def write(self, change: Callable[[Any], bool]) -> bool | None:
        """A database change's answer; None when it cannot be made (logged and counted: a
        message that arrives is still shown, it is only not kept)."""
        db = self.history.db
        if db is None:
            return None
        try:
            return change(db)
        except sqlite3.Error as e:
            self.history.write_errors += 1
            log.warning("cannot write the history database %s: %s", self.history.path, e)
            return None

    # -- commands -------------------------------------------------------------------------------

    def cmd_send(self, client: Any, msg: dict) -> dict:
        peer = self.callers.target(msg)
        text = msg.get("text")
        if not isinstance(text, str) or not text.strip():
            raise protocol.BadRequest("bad_argument", '"text" must be a non-empty string')
        if self.driver is None:
            raise protocol.BadRequest("not_joined", "the node is not running yet")
        if peer == f"{self.driver.node.node_id:040x}":
            raise protocol.BadRequest("bad_argument", "that is this node's own ID")
        db = self._db()
        message_id = os.urandom(16).hex()
        sent = time.time()
        try:
            seq = db.next_seq(peer)
            encode_text(bytes(16), seq, int(sent * 1000), text)  # the limits, before storing
        except ValueError as e:
            raise protocol.BadRequest("too_long", str(e)) from None
        except sqlite3.Error as e:
            raise protocol.BadRequest("io_error", f"cannot read {self.history.path}: {e}") from None
        try:
            db.add_message(peer, "out", message_id, text, sent, state="pending", seq=seq)
        except sqlite3.Error as e:
            raise protocol.BadRequest(
                "io_error", f"cannot store the message in {self.history.path}: {e}") from None
        sending = self._send(peer, message_id, seq, sent, text)
        name = self.callers.name_of(peer)
        log.info("message %s to %s (%s)%s", message_id, peer, name or "unknown",
                 "" if sending else ": no session could be opened now; it stays pending")
        return {"peer": peer, "name": name, "message_id": message_id, "seq": seq, "sent": sent,
                "state": "pending"}

    def cmd_messages(self, client: Any, msg: dict) -> dict:
        peer = self.callers.target(msg, "peer") if msg.get("peer") is not None else None
        limit = msg.get("limit", DEFAULT_LIMIT)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise protocol.BadRequest("bad_argument", f'"limit" must be an integer, 1-{MAX_LIMIT}')
        mark = msg.get("mark_read", True)
        if not isinstance(mark, bool):
            raise protocol.BadRequest("bad_argument", '"mark_read" must be true or false')
        before = msg.get("before")  # a page further back: the `id` of the oldest one shown
        if before is not None and (type(before) is not int or before < 1):
            raise protocol.BadRequest("bad_argument", '"before" must be a message\'s id')
        db = self._db()
        try:
            messages = db.conversation(peer, limit + 1, before)  # one more: are there older?
            more = len(messages) > limit
            messages = messages[1:] if more else messages
            if mark:
                db.mark_read(peer, time.time(),  # those listed only
                             [m["id"] for m in messages if m["direction"] == "in"])
            unread = db.unread()
        except sqlite3.Error as e:
            raise protocol.BadRequest(
                "io_error", f"cannot read the history database {self.history.path}: {e}") from None
        for m in messages:
            m["name"] = self.callers.name_of(m["peer"])
        return {"messages": messages, "unread": unread, "more": more}

    def _db(self) -> Any:
        db = self.history.db
        if db is None:
            raise protocol.BadRequest("io_error", "the history database is not open")
        return db


__all__ = ["MAX_TEXT", "Messages"]
