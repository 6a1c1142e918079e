"""Offline messages through the DHT (issue 14 item 2): the daemon's part of the node's sealed
mailbox (kadtalk.node.storage: `mail`, `keep_mailbox`; docs/protocol.md §22).

Sender: a message whose session could not be set up, or ended before its receipt, is sealed to
the contact's prekey and stored in its mailbox (StorageLayer.mail); the sealed plaintext is the
session's own TEXT frame, with the same message id, so a message that also arrives live is kept
once. MailStored moves it to `stored` (`message_stored` event); it is still sent live at the next
session with the contact, and only that session's RECEIPT makes it `delivered`. MailFailed
(no prekey found, no storer answered) leaves it `pending`.

Recipient: the node fetches the mailbox at each join and every `mailbox_interval` (a node rule,
StorageSettings); each box that opens is a received message here (the same block and
contacts-only rules as live ones), then acknowledged so its copies are deleted. The sender
learns nothing then: its message turns `delivered` at the next session between the two (a
message either way, a call), on which it sends what is `stored` again and our node's RECEIPT
answers (we keep the copy once).

Contact requests and replies (app/contact_requests.py, `frames`): one still without RECEIPT
30 s after it went is sealed the same way (`mail_frame`, the CONTACT_REQ / CONTACT_REPLY frame
as plaintext; the outcome goes to `frames.mailed`), and one that opens here goes to
`frames.from_mailbox`, which takes it as one from a session (False: not written, not
acknowledged, so it opens again at the next fetch).

Recipient: a box whose message the history cannot write (disk full, locked) is neither shown
nor acknowledged: its copies stay with the storers and it opens again at the next fetch. The
ids of acknowledged boxes are kept (`prekey_keep` s) and given back at start: a storer that
missed our DELETE and returns one after a restart is told again, the box is not opened (its
message may have been pruned from the history since).

Prekeys: the node hands each one it makes to `_keep_prekey` (keep_mailbox's `keep`), which
writes it to the history database (owner-only) before the node publishes it; one that cannot
be written is never published (the newest kept one stays in use). They are given back at the
next start, so a box sealed to a prekey published before a restart still opens after it; kept
`prekey_keep` seconds. Old ones are deleted apart from reading the kept ones: a file that cannot
be written still gives back its prekeys.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

from kadtalk.node.layer import Event
from kadtalk.node.session.messages import decode_text, encode_text
from kadtalk.node.session.presence import RELIABLE
from kadtalk.node.session.wire import Drop
from kadtalk.node.storage import MailFailed, MailStored, MessageReceived

log = logging.getLogger(__name__)

BATCH = 100  # pending messages mailed at once for one contact (oldest first)


class Mailbox:
    """Wired by app/messages.py's Messages (`messages`): its database, rules and events."""

    def __init__(self, messages: Any):
        self.messages = messages
        self.mailing: set[tuple[str, str]] = set()  # (peer, message or frame id) being mailed
        # app/contact_requests.py's ContactRequests: contact requests and replies both ways
        self.frames: Any = None
        self.stats = {"stored": 0, "mail_failed": 0, "received": 0, "undecodable": 0,
                      "unkept": 0}

    @property
    def driver(self) -> Any:
        return self.messages.driver

    def start(self, now: float) -> None:
        """Before the node joins: its kept prekeys back, and the mailbox upkeep on."""
        storage = self.driver.node.storage
        db = self.messages.history.db
        if storage is None or db is None:
            return
        keep = storage.settings.prekey_keep
        try:
            kept = [p for p in db.prekeys() if p[1] >= time.time() - keep]
            acked = db.acknowledged(time.time() - keep)
        except sqlite3.Error as e:
            log.warning("cannot read the prekeys in %s: %s", self.messages.history.path, e)
            kept, acked = [], []
        self._drop_prekeys(keep)  # apart: a file we cannot write still gives its prekeys
        storage.keep_mailbox(kept, now, keep=self._keep_prekey, acknowledged=acked)

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is MessageReceived:
            self._received(event)
        elif kind is MailStored:
            self._stored(event)
        elif kind is MailFailed:
            self._failed(event)

    # -- sender ---------------------------------------------------------------------------------

    def mail(self, peer: str) -> None:
        """Seal what waits for `peer` (state `pending`) into its DHT mailbox."""
        driver, db = self.driver, self.messages.history.db
        storage = driver.node.storage if driver is not None else None
        if storage is None or db is None:
            return
        try:
            waiting = db.pending(peer, BATCH, states=("pending",))
        except sqlite3.Error as e:
            log.warning("cannot read the history database %s: %s", self.messages.history.path, e)
            return
        now, recipient = driver.loop.time(), bytes.fromhex(peer)
        for m in waiting:
            if (peer, m["message_id"]) in self.mailing:
                continue
            self.mailing.add((peer, m["message_id"]))
            frame = encode_text(bytes.fromhex(m["message_id"]), m["seq"], int(m["sent"] * 1000),
                                m["text"])
            storage.mail(recipient, frame, now, tag=m["message_id"])
        driver.node.pump_storage(now)
        driver.service()

    def mail_frame(self, peer: str, frame_id: str, frame: bytes) -> None:
        """Seal a contact request or reply (its session frame, CONTACT_REQ / CONTACT_REPLY) into
        `peer`'s mailbox; `frames.mailed(peer, frame_id, stored)` tells the outcome."""
        driver = self.driver
        storage = driver.node.storage if driver is not None else None
        if storage is None or (peer, frame_id) in self.mailing:
            return
        self.mailing.add((peer, frame_id))
        now = driver.loop.time()
        storage.mail(bytes.fromhex(peer), frame, now, tag=("frame", frame_id))
        driver.node.pump_storage(now)
        driver.service()

    def _frame_mailed(self, event: MailStored | MailFailed) -> None:
        peer, frame_id = event.recipient.hex(), event.tag[1]
        self.mailing.discard((peer, frame_id))
        stored = type(event) is MailStored
        self.stats["stored" if stored else "mail_failed"] += 1
        if self.frames is not None:
            self.frames.mailed(peer, frame_id, stored)

    def _stored(self, event: MailStored) -> None:
        if type(event.tag) is tuple:
            self._frame_mailed(event)
            return
        peer, message_id = event.recipient.hex(), event.tag
        self.mailing.discard((peer, message_id))
        self.stats["stored"] += 1
        at = time.time()
        changed = self.messages.write(
            lambda db: db.set_message_state(peer, "out", message_id, "stored", at))
        if changed:  # False: delivered meanwhile (it went live too)
            log.info("message %s to %s is in its mailbox (%d nodes hold it)", message_id, peer,
                     event.stored)
            self.messages.broadcast({"event": "message_stored", "peer": peer,
                                     "name": self.messages.callers.name_of(peer),
                                     "message_id": message_id, "holders": event.stored,
                                     "at": at})

    def _failed(self, event: MailFailed) -> None:
        if type(event.tag) is tuple:
            self._frame_mailed(event)
            return
        peer = event.recipient.hex()
        self.mailing.discard((peer, event.tag))
        self.stats["mail_failed"] += 1
        log.info("message %s to %s could not be stored in its mailbox (%s); it stays pending",
                 event.tag, peer, event.reason)
        self.messages.broadcast({"event": "message_not_stored", "peer": peer,
                                 "name": self.messages.callers.name_of(peer),
                                 "message_id": event.tag, "reason": event.reason,
                                 "at": time.time()})

    # -- recipient ------------------------------------------------------------------------------

    def _received(self, event: MessageReceived) -> None:
        storage = self.driver.node.storage
        if event.plaintext[:1] and event.plaintext[0] in RELIABLE and self.frames is not None:
            self.stats["received"] += 1  # a contact request or reply, sealed by its sender
            if not self.frames.from_mailbox(event.sender.hex(), event.plaintext):
                self.stats["unkept"] += 1
                storage.not_kept(event.vid)
                return
            frame = None
        else:
            try:
                frame = decode_text(event.plaintext)
            except Drop:
                self.stats["undecodable"] += 1  # signed by its sender, but not a text: dropped
                frame = None
        if frame is not None:
            self.stats["received"] += 1
            peer = event.sender.hex()
            if self.messages.keep(peer, frame.message_id, frame.seq, frame.sent_ms, frame.text,
                                  None) is None:
                self.stats["unkept"] += 1  # the history cannot take it: the storers keep it
                storage.not_kept(event.vid)  # and it opens again at the next fetch
                return
        now = self.driver.loop.time()
        storage.acknowledge(event.epoch, [event.vid], now)  # kept, a duplicate, or refused
        self.messages.write(lambda db: db.add_acknowledged(event.epoch, [event.vid], time.time()))
        self.driver.node.pump_storage(now)
        self.driver.service()

    def _keep_prekey(self, public: bytes, private: bytes, made: float) -> bool:
        """The node's new prekey, written before the node publishes it (False: not written;
        the node then goes on with the prekeys it has)."""
        if not self.messages.write(lambda db: db.add_prekey(public, private, made) or True):
            log.warning("a new prekey could not be kept: the previous one stays in use")
            return False
        self._drop_prekeys(self.driver.node.storage.settings.prekey_keep)
        return True

    def _drop_prekeys(self, keep: float) -> None:
        try:
            self.messages.history.db.drop_prekeys(time.time() - keep)
            self.messages.history.db.drop_acknowledged(time.time() - keep)
        except sqlite3.Error as e:
            log.warning("cannot delete old prekeys in %s: %s", self.messages.history.path, e)
