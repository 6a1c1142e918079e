"""Messages in the history database (app/history.py, schema step 3): the conversation order
by the sender's sequence, pending messages, read marks, and the migration of an older file."""

from __future__ import annotations

import sqlite3

from kadtalk.app.history import MIGRATIONS, SCHEMA_VERSION, HistoryDB

ALICE = "aa" * 20
BOB = "bb" * 20


def test_a_message_that_overtook_an_earlier_one_is_listed_after_it(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_message(ALICE, "out", "o1", "what time?", 99.0, seq=1)
    # Bob's 2nd message arrives first (his 1st was lost and sent again), then his 1st
    db.add_message(BOB, "in", "m2", "at noon", 100.0, received=101.0, state="delivered", seq=2)
    db.add_message(BOB, "in", "m1", "yes,", 100.0, received=103.0, state="delivered", seq=1)
    db.add_message(BOB, "in", "m3", "bring cake", 104.0, received=105.0, state="delivered", seq=3)
    assert [m["text"] for m in db.conversation()] == ["what time?", "yes,", "at noon",
                                                      "bring cake"]
    # a sender whose numbers started again (a new install) writes later: nothing moves
    db.add_message(BOB, "in", "n1", "new phone", 200.0, received=201.0, state="delivered", seq=1)
    assert db.conversation(BOB)[-1]["text"] == "new phone"
    assert [m["text"] for m in db.conversation(BOB, limit=2)] == ["bring cake", "new phone"]
    db.close()


def test_pending_messages_sequence_numbers_and_read_marks(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    assert db.next_seq(BOB) == 1
    for i in (1, 2, 3):
        db.add_message(BOB, "out", f"o{i}", f"text {i}", float(i), seq=db.next_seq(BOB))
    assert db.next_seq(BOB) == 4 and db.next_seq(ALICE) == 1
    assert db.set_message_state(BOB, "out", "o2", "delivered", 10.0)
    assert [(m["message_id"], m["seq"]) for m in db.pending(BOB)] == [("o1", 1), ("o3", 3)]
    (o2,) = [m for m in db.conversation(BOB) if m["message_id"] == "o2"]
    assert (o2["state"], o2["delivered"], o2["read"]) == ("delivered", 10.0, None)

    db.add_message(ALICE, "in", "a1", "hi", 5.0, received=6.0, state="delivered", seq=1)
    db.add_message(BOB, "in", "b1", "yo", 5.0, received=6.0, state="delivered", seq=1)
    assert db.unread() == 2
    assert db.mark_read(BOB, 20.0) == 1 and db.unread() == 1
    assert db.mark_read(None, 21.0) == 1 and db.unread() == 0 and db.mark_read(None, 22) == 0
    (a1,) = [m for m in db.conversation(ALICE)]
    assert (a1["state"], a1["read"], a1["delivered"]) == ("read", 21.0, 6.0)
    db.close()


def test_a_version_2_file_with_messages_is_migrated_and_keeps_their_order(tmp_path):
    path = tmp_path / "h.sqlite3"
    c = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:2]:
        for statement in step:
            c.execute(statement)
    c.execute("PRAGMA user_version = 2")
    for i, (direction, at) in enumerate((("in", 20.0), ("out", 10.0), ("in", 30.0))):
        c.execute("INSERT INTO messages (peer, direction, message_id, sent, received, text, "
                  "state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                  (BOB, direction, f"m{i}", at - 1, at if direction == "in" else None, f"t{i}"))
    c.close()
    db = HistoryDB.open(path)
    assert db.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    assert [m["text"] for m in db.conversation(BOB)] == ["t1", "t0", "t2"]  # by time
    assert db.next_seq(BOB) == 1  # old rows have no numbers (0)
    assert db.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_dropped_prekeys_private_half_is_in_no_file_afterwards(tmp_path):
    """secure_delete overwrites the row in the database file, but the -wal file kept the page
    the prekey was written in until a TRUNCATE checkpoint."""
    import os
    import time

    db = HistoryDB.open(tmp_path / "h.sqlite3")
    secret = (b"PRIVKEY-" + os.urandom(8).hex().encode()).ljust(32, b"X")
    db.add_prekey(b"P" * 32, secret, time.time() - 10 * 86400)
    assert any(secret in f.read_bytes() for f in tmp_path.iterdir())
    assert db.drop_prekeys(time.time() - 9 * 86400) == 1
    assert not [f.name for f in tmp_path.iterdir() if secret in f.read_bytes()]
    db.add_message(BOB, "in", "00" * 16, "hi", 1.0, 2.0, "delivered")
    assert not [f.name for f in tmp_path.iterdir() if secret in f.read_bytes()]
    db.close()


def test_a_history_file_others_may_read_is_made_owner_only_when_opened(tmp_path):
    path = tmp_path / "h.sqlite3"
    HistoryDB.open(path).close()
    wal = tmp_path / "h.sqlite3-wal"
    wal.write_bytes(b"")
    path.chmod(0o644)  # restored from a backup, copied with cp, an old umask
    wal.chmod(0o666)
    db = HistoryDB.open(path)
    assert [oct(f.stat().st_mode & 0o777) for f in (path, wal)] == ["0o600", "0o600"]
    shm = tmp_path / "h.sqlite3-shm"
    assert not shm.exists() or shm.stat().st_mode & 0o077 == 0
    db.close()
