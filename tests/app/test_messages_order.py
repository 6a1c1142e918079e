"""What a peer's choices can do to our history (review of 2026-12-06): backdating a message by
its `seq` and `sent` (/tmp/review/new_backdate.py), filling the history from strangers'
sessions (new_msg_flood.py, the daemon's half), and listing marking more than it shows
(new_markread.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.app import messages as app_messages
from kadtalk.app.history import REORDER_WINDOW, HistoryDB
from kadtalk.app.messages import Messages
from kadtalk.node.session import MessageReceived

ALICE = "aa" * 20
BOB = "bb" * 20


def texts(db: HistoryDB, peer: str | None = None) -> list[str]:
    return [m["text"] for m in db.conversation(peer)]


def test_a_backdated_message_goes_after_everything_that_came_before_it(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_message(BOB, "in", "m1", "can you lend me 100?", 1000.0, received=1000.0,
                   state="delivered", seq=5)
    db.add_message(BOB, "out", "o1", "sure, sent it", 1100.0, seq=1)
    # a day later Bob numbers a message 1 and dates it 1970
    db.add_message(BOB, "in", "x", "I never got it", 0.0, received=90000.0, state="delivered",
                   seq=1)
    assert texts(db, BOB) == ["can you lend me 100?", "sure, sent it", "I never got it"]
    assert texts(db, BOB)[-1:] == [m["text"] for m in db.conversation(BOB, 1)]
    db.close()


def test_within_the_window_a_message_never_goes_before_our_reply(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_message(BOB, "in", "m5", "lend me 100?", 1000.0, received=1000.0, state="delivered",
                   seq=5)
    db.add_message(BOB, "out", "o1", "ok", 1010.0, seq=1)
    db.add_message(BOB, "in", "m6", "thanks", 1015.0, received=1015.0, state="delivered", seq=6)
    # seq 1 and a sent time far from its arrival (ignored): after our reply, before seq 6
    db.add_message(BOB, "in", "x", "backdated", 0.0, received=1020.0, state="delivered", seq=1)
    assert texts(db, BOB) == ["lend me 100?", "ok", "backdated", "thanks"]
    db.close()


def test_an_overtaken_message_is_still_put_back_in_the_senders_order(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_message(BOB, "in", "m2", "at noon", 100.0, received=101.0, state="delivered", seq=2)
    db.add_message(BOB, "in", "m3", "bring cake", 100.5, received=102.0, state="delivered",
                   seq=3)
    db.add_message(BOB, "in", "m1", "yes,", 99.0, received=104.0, state="delivered", seq=1)
    assert texts(db, BOB) == ["yes,", "at noon", "bring cake"]
    # the same overtaking, longer ago than the window: it stays where it arrived
    t = 1000.0
    db.add_message(ALICE, "in", "a2", "two", t, received=t, state="delivered", seq=2)
    late = t + REORDER_WINDOW + 1
    db.add_message(ALICE, "in", "a1", "one", t - 1, received=late, state="delivered", seq=1)
    assert texts(db, ALICE) == ["two", "one"]
    db.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["in", "out"]), st.integers(0, 2**32 - 1),
                          st.floats(-1e10, 1e10)), min_size=1, max_size=12))
def test_no_seq_or_sent_moves_a_message_before_ours_or_further_back_than_the_window(script):
    """Messages arrive 1 s apart, the peer choosing each one's seq and sent: each incoming one
    lands after every one of ours written before it and after everything that arrived more
    than REORDER_WINDOW before it."""
    with tempfile.TemporaryDirectory() as d:
        db = HistoryDB.open(Path(d) / "h.sqlite3")
        arrived = {}
        for i, (direction, seq, sent) in enumerate(script):
            now = 1_000_000.0 + 100.0 * i
            if direction == "in":
                db.add_message(BOB, "in", f"m{i}", f"{i}", sent, received=now,
                               state="delivered", seq=seq)
            else:
                db.add_message(BOB, "out", f"m{i}", f"{i}", now, seq=i + 1)
            arrived[str(i)] = (direction, now)
        order = texts(db, BOB)
        for pos, text in enumerate(order):
            direction, now = arrived[text]
            if direction != "in":
                continue
            for earlier in order[pos + 1:]:  # listed after it
                d, t = arrived[earlier]
                assert t > now or (d == "in" and t >= now - REORDER_WINDOW)
        db.close()


def test_listing_marks_read_only_the_messages_it_lists(tmp_path):
    """/tmp/review/new_markread.py through the `messages` command: --limit 5 of 60 unread."""
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    for i in range(60):
        db.add_message(BOB, "in", f"m{i}", f"text {i}", 100.0 + i, received=100.0 + i,
                       state="delivered", seq=i + 1)
    db.add_message(ALICE, "in", "a", "hi", 50.0, received=50.0, state="delivered", seq=1)
    m, _ = daemon_messages(db)
    r = m.cmd_messages(None, {"limit": 5})
    assert [x["text"] for x in r["messages"]] == [f"text {i}" for i in range(55, 60)]
    assert r["unread"] == 56 == db.unread()
    r = m.cmd_messages(None, {"limit": 3, "mark_read": False})
    assert r["unread"] == 56
    assert db.mark_read(None, 1.0, []) == 0 and db.mark_read(BOB, 1.0) == 55  # all of Bob's
    assert db.unread() == 1
    db.close()


def daemon_messages(db: HistoryDB, contacts: dict[str, str] | None = None):
    """app/messages.Messages on `db`, with stand-ins for the daemon's other parts."""
    contacts = contacts or {}
    broadcasts: list[dict] = []
    callers = SimpleNamespace(name_of=contacts.get, blocked=set(),
                              contacts=SimpleNamespace(by_id=contacts))
    history = SimpleNamespace(db=db, path=db.path, write_errors=0)
    hooks = SimpleNamespace(fire=lambda *a, **k: None)
    config = SimpleNamespace(block=[], accept="anyone")
    return Messages(callers, history, hooks, config, broadcasts.append), broadcasts


def test_strangers_cannot_fill_the_history(tmp_path, monkeypatch):
    """The daemon's half of /tmp/review/new_msg_flood.py: whatever gets through the node's
    budget from strangers (many sessions, many identities), only the newest STRANGER_KEEP of
    their messages stay; contacts' messages and ours are never pruned."""
    monkeypatch.setattr(app_messages, "STRANGER_KEEP", 20)
    monkeypatch.setattr(app_messages, "PRUNE_EVERY", 1)
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    m, shown = daemon_messages(db, {ALICE: "Alice"})

    def arrive(peer: str, i: int) -> None:
        m.on_event(MessageReceived(1, int(peer, 16), i.to_bytes(16, "big"), i + 1, 0,
                                   f"{peer[:2]} {i}", 0.0))

    db.add_message("cc" * 20, "out", "o", "who are you?", time.time(), seq=1)
    for i in range(5):
        arrive(ALICE, i)
    for peer in ("cc" * 20, "dd" * 20):
        for i in range(30):
            arrive(peer, i)
    rows = db.connection.execute(
        "SELECT peer, direction, count(*) FROM messages GROUP BY peer, direction").fetchall()
    assert sorted(rows) == [(ALICE, "in", 5), ("cc" * 20, "out", 1), ("dd" * 20, "in", 20)]
    assert texts(db, "dd" * 20)[0] == "dd 10"  # the newest stayed
    assert len(shown) == 65  # each was shown as it came
    db.close()


def test_strangers_messages_are_pruned_every_so_many(tmp_path, monkeypatch):
    """A pruning scans the table, so it runs at the first stranger's message after the start
    and then every PRUNE_EVERY: at most STRANGER_KEEP + PRUNE_EVERY - 1 are kept."""
    monkeypatch.setattr(app_messages, "STRANGER_KEEP", 20)
    monkeypatch.setattr(app_messages, "PRUNE_EVERY", 7)
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    m, _ = daemon_messages(db)
    counts = []
    for i in range(60):
        m.on_event(MessageReceived(1, int("dd" * 20, 16), i.to_bytes(16, "big"), i + 1, 0,
                                   f"{i}", 0.0))
        counts.append(db.connection.execute("SELECT count(*) FROM messages").fetchone()[0])
    assert max(counts) == 20 + 7 - 1 and min(counts[20:]) == 20
    db.close()
