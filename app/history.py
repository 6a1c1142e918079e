"""The persistent history (issue 14 item 4): calls and messages in one SQLite file, so they outlast
the daemon, with the missed-call notice `kadtalk status` shows.

Where: ``$XDG_DATA_HOME/kadtalk/history.sqlite3`` (``~/.local/share/...``) for the default
config directory. A config directory named with ``--config-dir`` is a profile of its own (a
second identity on one machine, a test) and keeps its ``history.sqlite3`` inside it, so two
daemons never write one history.

Why it survives what it must:

- WAL mode: a commit is appended to ``history.sqlite3-wal`` and the database file is only
  written by checkpoints of committed pages, so a SIGKILL at any moment leaves every committed
  row and no torn one (``synchronous=NORMAL``: a power cut may lose the last commits, never the
  file). Readers (a second process, ``sqlite3`` by hand, a backup) never wait for the daemon,
  nor it for them.
- A file that is not a database, is truncated or holds garbage is a HistoryError naming the
  path and the fix (move it aside); it is never written over, nor replaced by a new one.
- Migrations: ``PRAGMA user_version`` is the number of MIGRATIONS steps applied; the missing
  ones run in one transaction when the file is opened. A file from a newer kadtalk is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import protocol
from .config import Config, ConfigError, config_dir, data_dir, private_dir

log = logging.getLogger(__name__)

FILE_NAME = "history.sqlite3"
APPLICATION_ID = 0x6B64746B  # "kdtk" in the file's header: this is a kadtalk history
BUSY_TIMEOUT = 0.5  # s a write waits for another process's write lock before it is dropped
MAX_CALLS = 10_000  # the oldest calls beyond this are deleted (refused calls cannot grow the file)
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
# s: an incoming message is placed before the same sender's higher-numbered ones only if they
# arrived at most this long before it, and its `sent` (the sender's clock) counts only this near
# its arrival (app/messages.py; both are the sender's choice: neither may move it further back)
REORDER_WINDOW = 300.0
_MAGIC = b"SQLite format 3\x00"

DIRECTIONS = ("in", "out")
OUTCOMES = ("answered", "missed", "declined", "busy", "unreachable", "cancelled", "failed")
MISSED = ("missed", "busy")  # incoming calls that count as missed-call notices
# a message's delivery, only ever forward; `stored`: held in the peer's DHT mailbox (app/mailbox.py)
STATES = ("pending", "stored", "sent", "delivered", "read")
WAITING = ("pending", "stored")  # ours without a receipt: sent again at the next session

# Step N brings the schema from version N-1 to N. Never edit a released step: append one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: calls
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            peer TEXT NOT NULL,                 -- the peer's node ID, 40 lowercase hex digits
            peer_name TEXT,                     -- its contact name at the time, or NULL
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            started REAL NOT NULL,              -- Unix time it was dialled or rang
            outcome TEXT NOT NULL,              -- OUTCOMES
            reason TEXT,                        -- the end reason or refusal behind the outcome
            duration REAL NOT NULL DEFAULT 0)   -- seconds talking""",
        "CREATE INDEX calls_by_peer ON calls (peer, started)",
        "CREATE INDEX calls_by_time ON calls (started)",
    ),
    (  # 2: messages, and marks (what the user has seen)
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            peer TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            message_id TEXT NOT NULL,           -- the sender's ID for the message
            sent REAL NOT NULL,                 -- Unix time, the sender's clock
            received REAL,                      -- Unix time it arrived here (incoming)
            text TEXT NOT NULL,
            state TEXT NOT NULL,                -- STATES
            receipt_at REAL,                    -- when the state last moved on
            UNIQUE (peer, direction, message_id))""",
        "CREATE INDEX messages_by_peer ON messages (peer, id)",
        "CREATE TABLE marks (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
    (  # 3: the messages part (app/messages.py): order, delivery and read times
        "ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",  # the sender's number
        "ALTER TABLE messages ADD COLUMN delivered REAL",  # out: its receipt came; in: arrived
        "ALTER TABLE messages ADD COLUMN read REAL",  # in: the user listed it
        "ALTER TABLE messages ADD COLUMN sort_at REAL",  # its place in the conversation
        "UPDATE messages SET sort_at = coalesce(received, sent)",
        "CREATE INDEX messages_in_order ON messages (peer, sort_at)",
        "CREATE INDEX messages_pending ON messages (peer, id) "
        "WHERE direction = 'out' AND state = 'pending'",
    ),
    (  # 4: offline delivery (app/mailbox.py): the `stored` state, and our prekeys
        "DROP INDEX messages_pending",
        "CREATE INDEX messages_waiting ON messages (peer, id) "
        "WHERE direction = 'out' AND state IN ('pending', 'stored')",
        """CREATE TABLE prekeys (
            public BLOB PRIMARY KEY,            -- X25519, 32 bytes, as published in the DHT
            private BLOB NOT NULL,              -- its private half: boxes sealed to it open
            made REAL NOT NULL)                 -- Unix time; dropped after prekey_keep""",
    ),
    (  # 5: contact requests (app/contact_requests.py), one per peer and direction
        """CREATE TABLE contact_requests (
            id INTEGER PRIMARY KEY,
            peer TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
            request_id TEXT NOT NULL,           -- the requester's ID for it, 32 hex digits
            note TEXT NOT NULL DEFAULT '',      -- the requester's, as sent (sanitise to print)
            name TEXT,                          -- out: the contact name the peer gets if it accepts
            state TEXT NOT NULL,                -- pending, delivered (out), accepted, declined
            made REAL NOT NULL,                 -- Unix time
            answered REAL,                      -- Unix time it was accepted or declined
            reply_id TEXT,                      -- in: our reply's ID while it awaits its receipt
            UNIQUE (peer, direction))""",
    ),
    (  # 6: mailbox values we acknowledged (app/mailbox.py): one a storer still returns after a
        # restart is acknowledged again, not opened (the message's row may be pruned by then)
        """CREATE TABLE acknowledged (
            vid BLOB PRIMARY KEY,               -- the value id, 20 bytes
            epoch INTEGER NOT NULL,             -- the mailbox epoch it was in
            at REAL NOT NULL)                   -- Unix time; dropped after prekey_keep""",
    ),
    (  # 7: our reply to a contact request that storers hold (app/contact_requests.py): after a
        # restart it is sent live again, not sealed and stored again (as a `stored` request)
        "ALTER TABLE contact_requests ADD COLUMN reply_stored INTEGER NOT NULL DEFAULT 0",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(ConfigError):
    """The history file cannot be used; the message names it and says what to do."""


def history_path(config: Config) -> Path:
    """Where the daemon with `config` keeps its history (see the module's docstring)."""
    if Path(config.config_dir).resolve() == config_dir().resolve():
        return data_dir() / FILE_NAME
    return Path(config.config_dir) / FILE_NAME


def _broken(path: Path, what: str) -> HistoryError:
    return HistoryError(
        f"the history database {path} {what}; it was left as it is. Move it aside (`mv {path} "
        f"{path}.broken`, with any {path.name}-wal and {path.name}-shm beside it) and start "
        "again: a new, empty history is made")


class HistoryDB:
    """One connection to a history file: its rows, written one transaction each."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, busy_timeout: float = BUSY_TIMEOUT) -> "HistoryDB":
        """Open (or create, owner-only) the file and bring its schema up to date; HistoryError
        when it is broken, from a newer kadtalk, or not a kadtalk history."""
        path = Path(path)
        _create(path)
        _owner_only(path)
        _check_header(path)
        if path.stat().st_size:  # an empty file is a new database
            with _errors(path):
                _check_read_only(path)
        with _errors(path):
            connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            with _errors(path):
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal":
                    log.warning("the history database %s is in %s mode, not WAL (the file "
                                "system may lack shared memory)", path, mode)
                connection.execute("PRAGMA synchronous = NORMAL")
                # deleted rows (old prekeys' private keys, pruned messages) are overwritten,
                # not left in free pages
                connection.execute("PRAGMA secure_delete = ON")
                _migrate(connection, path)
        except BaseException:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it is committed, or none."""
        c = self.connection
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    # -- calls ----------------------------------------------------------------------------------

    def add_call(self, peer: str, name: str | None, direction: str, started: float,
                 outcome: str, reason: str | None = None, duration: float = 0.0,
                 keep: int = MAX_CALLS) -> int:
        """Record a call; the row's id. Only the newest `keep` calls are kept."""
        if direction not in DIRECTIONS or outcome not in OUTCOMES:
            raise ValueError(f"direction {direction!r} / outcome {outcome!r}")
        with self._write() as c:
            row = c.execute(
                "INSERT INTO calls (peer, peer_name, direction, started, outcome, reason, "
                "duration) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (peer, name, direction, started, outcome, reason, duration)).lastrowid
            c.execute("DELETE FROM calls WHERE id <= ?", (row - keep,))
        return row

    def calls(self, peer: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """The newest calls first, all or with one peer."""
        where, args = ("WHERE peer = ?", (peer,)) if peer is not None else ("", ())
        rows = self.connection.execute(
            "SELECT id, peer, peer_name, direction, started, outcome, reason, duration FROM calls "
            f"{where} ORDER BY started DESC, id DESC LIMIT ?", (*args, limit))
        keys = ("id", "peer", "name", "direction", "started", "outcome", "reason", "duration")
        return [dict(zip(keys, row)) for row in rows]

    def mark_calls_seen(self) -> None:
        """The user has seen every call recorded so far (no more missed-call notice for them)."""
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO marks (name, value) "
                      "VALUES ('calls_seen', (SELECT coalesce(max(id), 0) FROM calls))")

    def missed_calls(self) -> int:
        """Incoming calls missed (or refused as busy) since `mark_calls_seen`."""
        return self.connection.execute(
            "SELECT count(*) FROM calls WHERE id > coalesce((SELECT value FROM marks WHERE name "
            f"= 'calls_seen'), 0) AND direction = 'in' AND outcome IN {MISSED}").fetchone()[0]

    # -- messages (app/messages.py) -------------------------------------------------------------

    def add_message(self, peer: str, direction: str, message_id: str, text: str, sent: float,
                    received: float | None = None, state: str = "pending",
                    seq: int = 0) -> bool:
        """Store a message; False when this peer's message with this ID (and direction) is
        stored already: a duplicate is kept once. The ID is unique per peer, so an ID one peer
        chooses cannot hide another's message.

        Its place in the conversation (`sort_at`): when it was written here (`sent`) or arrived
        (`received`), except that an incoming message goes just before the same sender's with a
        higher `seq` that arrived at most REORDER_WINDOW s before it: a retransmission that
        overtook it does not put the sender's messages out of order. Never before one of ours
        written before it arrived, nor further back than the window: the sender chooses `seq`
        and `sent`, and must not slip a new message in among old ones. `sent` counts only
        within the window of the arrival: then an overtaking message the sender wrote earlier
        (its numbers started again, a new install) does not move it."""
        if direction not in DIRECTIONS or state not in STATES:
            raise ValueError(f"direction {direction!r} / state {state!r}")
        with self._write() as c:
            sort_at = received if direction == "in" and received is not None else sent
            if direction == "in" and seq and received is not None:
                (ours,) = c.execute(
                    "SELECT max(sort_at) FROM messages WHERE peer = ? AND direction = 'out' "
                    "AND sort_at <= ?", (peer, received)).fetchone()
                floor = received - REORDER_WINDOW if ours is None else max(
                    ours, received - REORDER_WINDOW)
                by_clock = abs(sent - received) <= REORDER_WINDOW
                (later,) = c.execute(
                    "SELECT min(sort_at) FROM messages WHERE peer = ? AND direction = 'in' "
                    "AND seq > ? AND received >= ? AND sort_at > ?"
                    + (" AND sent >= ?" if by_clock else ""),
                    (peer, seq, received - REORDER_WINDOW, floor,
                     *((sent,) if by_clock else ()))).fetchone()
                if later is not None and later <= sort_at:
                    sort_at = max(later - 1e-6, (floor + later) / 2)
            cursor = c.execute(
                "INSERT OR IGNORE INTO messages (peer, direction, message_id, sent, received, "
                "text, state, seq, sort_at, delivered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (peer, direction, message_id, sent, received, text, state, seq, sort_at,
                 received if direction == "in" else None))
        return cursor.rowcount == 1

    def next_seq(self, peer: str) -> int:
        """The number of our next message to `peer` (1, 2, ...)."""
        (last,) = self.connection.execute(
            "SELECT max(seq) FROM messages WHERE peer = ? AND direction = 'out'",
            (peer,)).fetchone()
        return (last or 0) + 1

    def pending(self, peer: str, limit: int = MAX_LIMIT,
                states: tuple[str, ...] = WAITING) -> list[dict[str, Any]]:
        """Our messages to `peer` without a receipt yet (in `states`), oldest first."""
        keys = ("message_id", "seq", "sent", "text")
        marks = ", ".join("?" * len(states))
        rows = self.connection.execute(
            f"SELECT {', '.join(keys)} FROM messages WHERE peer = ? AND direction = 'out' AND "
            f"state IN ({marks}) ORDER BY id LIMIT ?", (peer, *states, limit))
        return [dict(zip(keys, row)) for row in rows]

    # -- prekeys (app/mailbox.py): their private halves outlive the daemon ----------------------

    def add_prekey(self, public: bytes, private: bytes, made: float) -> None:
        with self._write() as c:
            c.execute("INSERT OR IGNORE INTO prekeys (public, private, made) VALUES (?, ?, ?)",
                      (public, private, made))

    def prekeys(self) -> list[tuple[bytes, float]]:
        """(private half, made) of each kept prekey, newest first."""
        return [(bytes(private), made) for private, made in self.connection.execute(
            "SELECT private, made FROM prekeys ORDER BY made DESC")]

    def drop_prekeys(self, before: float) -> int:
        """Forget prekeys made before `before` (no box sealed to them can arrive any more).
        secure_delete overwrites their rows in the database file, and a TRUNCATE checkpoint
        then empties the -wal file, which still held the pages that carried them."""
        with self._write() as c:
            dropped = c.execute("DELETE FROM prekeys WHERE made < ?", (before,)).rowcount
        if dropped:
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return dropped

    def add_acknowledged(self, epoch: int, vids: list[bytes], at: float) -> None:
        with self._write() as c:
            c.executemany("INSERT OR IGNORE INTO acknowledged (vid, epoch, at) VALUES (?, ?, ?)",
                          [(vid, epoch, at) for vid in vids])

    def acknowledged(self, since: float) -> list[tuple[bytes, int]]:
        """(value id, epoch) of mailbox values acknowledged since `since`, oldest first."""
        return [(bytes(vid), epoch) for vid, epoch in self.connection.execute(
            "SELECT vid, epoch FROM acknowledged WHERE at >= ? ORDER BY at", (since,))]

    def drop_acknowledged(self, before: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM acknowledged WHERE at < ?", (before,)).rowcount

    def conversation(self, peer: str | None = None, limit: int = DEFAULT_LIMIT,
                     before: int | None = None) -> list[dict[str, Any]]:
        """The latest `limit` messages (with one peer, or all), in conversation order; with
        `before` (a message's row id), those placed before that message (a page further back)."""
        where, args = ("WHERE peer = ?", (peer,)) if peer is not None else ("WHERE 1", ())
        if before is not None:
            where += " AND (sort_at, id) < (SELECT sort_at, id FROM messages WHERE id = ?)"
            args = (*args, before)
        keys = ("id", "peer", "direction", "message_id", "seq", "sent", "received", "text",
                "state", "delivered", "read")
        rows = self.connection.execute(
            f"SELECT {', '.join(keys)} FROM messages {where} ORDER BY sort_at DESC, id DESC "
            "LIMIT ?", (*args, limit)).fetchall()
        return [dict(zip(keys, row)) for row in reversed(rows)]

    def mark_read(self, peer: str | None, at: float, ids: list[int] | None = None) -> int:
        """The user has read incoming messages: those with the row `ids` given (the ones
        listed), else all (from `peer`, or all); how many were new."""
        where, args = ("AND peer = ?", (peer,)) if peer is not None else ("", ())
        if ids is not None:
            if not ids:
                return 0
            where, args = f"{where} AND id IN ({', '.join('?' * len(ids))})", (*args, *ids)
        with self._write() as c:
            cursor = c.execute(
                "UPDATE messages SET state = 'read', read = ?, receipt_at = ? WHERE direction = "
                f"'in' AND state != 'read' {where}", (at, at, *args))
        return cursor.rowcount

    def unread(self) -> int:
        """Incoming messages not read yet (the new-message notice)."""
        return self.connection.execute(
            "SELECT count(*) FROM messages WHERE direction = 'in' AND state != 'read'"
        ).fetchone()[0]

    def prune_strangers(self, contacts: list[str], keep: int) -> int:
        """Delete all but the newest `keep` incoming messages (by arrival) from peers not in
        `contacts`: anyone may write to us, nobody may fill the file. How many went."""
        marks = ", ".join("?" * len(contacts))
        with self._write() as c:
            return c.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE direction = "
                f"'in' AND peer NOT IN ({marks}) ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (*contacts, keep)).rowcount

    def set_message_state(self, peer: str, direction: str, message_id: str, state: str,
                          at: float) -> bool:
        """Move a message's delivery state on (pending -> stored -> sent -> delivered -> read);
        a receipt that would move it back, or names no stored message, changes nothing (False)."""
        rank = STATES.index(state)  # ValueError for an unknown state
        delivered, read = STATES.index("delivered"), STATES.index("read")
        order = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STATES))
        with self._write() as c:
            cursor = c.execute(
                "UPDATE messages SET state = ?, receipt_at = ?, "
                f"delivered = CASE WHEN ? >= {delivered} THEN coalesce(delivered, ?) ELSE "
                f"delivered END, read = CASE WHEN ? = {read} THEN ? ELSE read END WHERE peer = ? "
                f"AND direction = ? AND message_id = ? AND (CASE state {order} ELSE 99 END) < ?",
                (state, at, rank, at, rank, at, peer, direction, message_id, rank))
        return cursor.rowcount == 1

    def messages(self, peer: str | None = None, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """The newest messages first (in the order they were stored here)."""
        where, args = ("WHERE peer = ?", (peer,)) if peer is not None else ("", ())
        keys = ("id", "peer", "direction", "message_id", "sent", "received", "text", "state",
                "receipt_at")
        rows = self.connection.execute(
            f"SELECT {', '.join(keys)} FROM messages {where} ORDER BY id DESC LIMIT ?",
            (*args, limit))
        return [dict(zip(keys, row)) for row in rows]


def _create(path: Path) -> None:
    """A new file is made empty and owner-only (SQLite gives -wal and -shm its mode)."""
    if path.exists():
        return
    try:
        private_dir(path.parent)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process made it at the same moment
    except OSError as e:
        raise HistoryError(f"cannot create the history database {path}: {e.strerror}") from None


def _owner_only(path: Path) -> None:
    """The file (and its -wal and -shm, which SQLite makes with its mode) is ours and owner-only,
    however it was made: refused if another user owns it, group and others' bits cleared."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            info = file.stat()
            if info.st_uid != os.getuid():
                raise HistoryError(f"the history database {file} belongs to another user "
                                   f"(uid {info.st_uid}); choose another path")
            if info.st_mode & 0o077:
                file.chmod(info.st_mode & 0o700)
        except FileNotFoundError:
            continue
        except PermissionError as e:
            raise HistoryError(f"cannot make {file} owner-only: {e.strerror}") from None


@contextmanager
def _errors(path: Path) -> Iterator[None]:
    """SQLite's errors as HistoryErrors naming the file."""
    try:
        yield
    except sqlite3.Error as e:
        if getattr(e, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise _broken(path, f"is damaged ({e})") from None
        raise HistoryError(f"cannot open the history database {path}: {e}") from None


def _check_read_only(path: Path) -> None:
    """Check an existing file through a read-only connection: one that finds it broken must not
    write to it, and a read-write connection would, when it closes (a checkpoint of its -wal)."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        check = connection.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            problems = " ".join(str(row[0]) for row in check[:3]).replace("\n", " ")
            raise _broken(path, f"is damaged ({problems[:200]})")
        _check_version(connection, path)
    finally:
        connection.close()


def _check_header(path: Path) -> None:
    """A file that exists must start as an SQLite database (an empty one is a new database)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
    except OSError as e:
        raise HistoryError(f"cannot read the history database {path}: {e.strerror}") from None
    if head and head != _MAGIC:
        raise _broken(path, "is not an SQLite database")


def _check_version(connection: sqlite3.Connection, path: Path) -> None:
    """A file from a newer kadtalk, or another program's database, is refused."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"the history database {path} was written by a newer kadtalk (schema {version}; this "
            f"one knows {SCHEMA_VERSION}); upgrade kadtalk, or move the file aside to start a new "
            "history")
    _check_ours(connection, path, version)


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")  # another process may be migrating: look again
    try:
        _check_version(connection, path)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement)
            version += 1
            connection.execute(f"PRAGMA user_version = {version}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    log.info("history database %s: schema version %d", path, version)


def _check_ours(connection: sqlite3.Connection, path: Path, version: int) -> None:
    """Another program's database at this path is refused, not migrated."""
    app_id = connection.execute("PRAGMA application_id").fetchone()[0]
    tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    foreign = app_id != APPLICATION_ID if version > 0 else tables > 0
    if foreign:
        raise HistoryError(
            f"{path} is an SQLite database but not a kadtalk history; it was left as it is. Move "
            "it aside to start a new history")


# -- the daemon's part ----------------------------------------------------------------------------


def call_outcome(role: str, reason: str, talked: bool) -> str | None:
    """What a call's end means for its history line (None: no line). A callee's ring that was
    not answered is missed; hanging up a ring is declining it; a caller hanging up before the
    answer cancels. `glare` is no call: the peer's own call, answered at once, replaced it."""
    if reason == "glare":
        return None
    if talked:
        return "answered"
    if reason in ("busy", "declined", "unreachable"):
        return reason
    if role == "callee":
        return {"hung_up": "declined", "remote_hung_up": "missed", "no_answer": "missed",
                "peer_vanished": "missed"}.get(reason, "failed")
    return {"hung_up": "cancelled", "no_answer": "missed",
            "remote_hung_up": "declined"}.get(reason, "failed")


class History:
    """The daemon's part: app/calls.py reports each call's end (`call_ended`) and each refused
    caller (`refused`); `history` lists them; `status` shows the missed calls not yet listed.
    A write that fails (disk full, the file locked by another program for longer than
    BUSY_TIMEOUT) is logged and counted (`write_errors`); the call goes on regardless."""

    def __init__(self, config: Config, callers: Any):
        self.path = history_path(config)
        self.callers = callers
        self.db: HistoryDB | None = None
        self.write_errors = 0

    def open(self) -> None:
        self.db = HistoryDB.open(self.path)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def call_ended(self, call: Any, reason: str, duration: float, name: str | None) -> None:
        """A call (app/calls.py's Call) ended with `reason`, after `duration` s talking."""
        outcome = call_outcome(call.role.value, reason, call.talking_since is not None)
        if outcome is None:
            return
        try:  # the call's start on the wall clock, from its age on the loop's clock
            age = asyncio.get_running_loop().time() - call.created
        except RuntimeError:
            age = duration
        self._add(call.peer, name, "in" if call.role.value == "callee" else "out",
                  time.time() - max(age, 0.0), outcome, reason, duration)

    def refused(self, peer: str, name: str | None, reason: str) -> None:
        """An incoming call refused before it rang: busy (a call was under way: missed), or
        blocked, not a contact, calling too often (declined by the rules, no notice)."""
        self._add(peer, name, "in", time.time(), "busy" if reason == "busy" else "declined",
                  reason, 0.0)

    def _add(self, *row: Any) -> None:
        if self.db is None:
            return
        try:
            self.db.add_call(*row)
        except sqlite3.Error as e:
            self.write_errors += 1
            log.warning("cannot record a call in the history database %s: %s", self.path, e)

    def status(self) -> dict[str, Any]:
        """For `status`: the missed calls since the user last listed the history, the messages
        not read yet."""
        missed = unread = None
        if self.db is not None:
            try:
                missed = self.db.missed_calls()
                unread = self.db.unread()
            except sqlite3.Error as e:
                log.warning("cannot read the history database %s: %s", self.path, e)
        return {"path": str(self.path), "missed_calls": missed, "unread_messages": unread,
                "write_errors": self.write_errors}

    def cmd_history(self, client: Any, msg: dict) -> dict:
        peer = self.callers.target(msg, "peer") if msg.get("peer") is not None else None
        limit = msg.get("limit", DEFAULT_LIMIT)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise protocol.BadRequest("bad_argument", f'"limit" must be an integer, 1-{MAX_LIMIT}')
        mark = msg.get("mark_seen", peer is None)
        if not isinstance(mark, bool):
            raise protocol.BadRequest("bad_argument", '"mark_seen" must be true or false')
        if self.db is None:
            raise protocol.BadRequest("io_error", "the history database is not open")
        try:
            missed = self.db.missed_calls()
            calls = self.db.calls(peer, limit)
            messages = self.db.messages(peer, limit)
            if mark:
                self.db.mark_calls_seen()
        except sqlite3.Error as e:
            raise protocol.BadRequest(
                "io_error", f"cannot read the history database {self.path}: {e}") from None
        for call in calls:
            call["contact"] = self.callers.name_of(call["peer"])
        return {"calls": calls, "messages": messages, "missed_calls": missed}
