"""The persistent history (app/history.py): schema and migrations, calls and messages, the
missed-call notice; a writer killed with SIGKILL mid-write, broken files reported and left
alone, readers beside a writer; and two daemons whose calls outlast a restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from random import Random
from types import SimpleNamespace

import pytest

from kadtalk.app import history as history_module
from kadtalk.app import protocol
from kadtalk.app.callers import Callers
from kadtalk.app.config import Config
from kadtalk.app.history import (MIGRATIONS, SCHEMA_VERSION, History, HistoryDB, HistoryError,
                                 call_outcome, history_path)
from kadtalk.node.session import Role

from .conftest import KADTALK, DaemonProcess, connect, is_call, start_daemon

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "a1" * 20, "b0" * 20


def run(coro):
    return asyncio.run(coro)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the store ------------------------------------------------------------------------------------


def test_a_new_history_is_owner_only_in_wal_mode_at_the_latest_schema(tmp_path):
    path = tmp_path / "data" / "history.sqlite3"
    db = HistoryDB.open(path)
    db.add_call(ALICE, "Alice", "in", 1000.0, "missed", "no_answer")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(Path(f"{path}-wal").stat().st_mode & 0o777) == "0o600"
    c = db.connection
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    plans = " ".join(str(r) for r in c.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM calls WHERE peer = ? ORDER BY started DESC", (ALICE,)))
    assert "calls_by_peer" in plans  # per-contact queries use the index
    db.close()
    db = HistoryDB.open(path)  # opening again changes nothing
    assert [c["outcome"] for c in db.calls()] == ["missed"]
    db.close()


def test_calls_are_listed_newest_first_per_peer_and_the_oldest_are_pruned(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    for i in range(30):
        db.add_call(ALICE if i % 2 else BOB, None, "out", 1000.0 + i, "answered", "hung_up",
                    float(i), keep=20)
    calls = db.calls(limit=100)
    assert len(calls) == 20 and [c["started"] for c in calls] == [1029.0 - i for i in range(20)]
    alice = db.calls(ALICE, limit=3)
    assert [c["peer"] for c in alice] == [ALICE] * 3 and alice[0]["duration"] == 29.0
    assert set(alice[0]) == {"id", "peer", "name", "direction", "started", "outcome", "reason",
                             "duration"}
    with pytest.raises(ValueError):
        db.add_call(ALICE, None, "sideways", 1.0, "answered")
    with pytest.raises(ValueError):
        db.add_call(ALICE, None, "in", 1.0, "exploded")
    db.close()


def test_missed_calls_count_until_the_history_is_seen(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_call(ALICE, None, "in", 1.0, "missed", "no_answer")
    db.add_call(ALICE, None, "in", 2.0, "busy", "busy")
    for outcome in ("answered", "declined"):
        db.add_call(BOB, None, "in", 3.0, outcome)
    db.add_call(BOB, None, "out", 4.0, "missed", "no_answer")  # Bob missed ours: no notice
    assert db.missed_calls() == 2
    db.mark_calls_seen()
    assert db.missed_calls() == 0
    db.add_call(BOB, None, "in", 5.0, "missed", "remote_hung_up")
    assert db.missed_calls() == 1
    db.close()
    assert HistoryDB.open(tmp_path / "h.sqlite3").missed_calls() == 1  # the mark is kept


def test_a_message_is_kept_once_and_its_state_only_moves_forward(tmp_path):
    db = HistoryDB.open(tmp_path / "h.sqlite3")
    assert db.add_message(ALICE, "out", "m1", "hello", 10.0)
    assert not db.add_message(ALICE, "out", "m1", "hello again", 10.0)  # a duplicate
    assert db.add_message(BOB, "in", "m1", "same ID, another peer", 11.0, received=11.5)
    assert db.set_message_state(ALICE, "out", "m1", "delivered", 12.0)
    assert not db.set_message_state(ALICE, "out", "m1", "sent", 13.0)  # never back
    assert not db.set_message_state(ALICE, "out", "m2", "read", 13.0)  # no such message
    assert db.set_message_state(ALICE, "out", "m1", "read", 14.0)
    with pytest.raises(ValueError):
        db.set_message_state(ALICE, "out", "m1", "exploded", 15.0)
    mine = db.messages(ALICE)
    assert [(m["text"], m["state"], m["receipt_at"]) for m in mine] == [("hello", "read", 14.0)]
    assert [m["peer"] for m in db.messages()] == [BOB, ALICE]  # newest first
    db.close()


@pytest.mark.parametrize("role, reason, talked, outcome", [
    ("callee", "remote_hung_up", True, "answered"),
    ("caller", "hung_up", True, "answered"),
    ("callee", "remote_hung_up", False, "missed"),  # the caller gave up while it rang
    ("callee", "no_answer", False, "missed"),
    ("callee", "hung_up", False, "declined"),  # hanging up a ring
    ("callee", "declined", False, "declined"),
    ("caller", "declined", False, "declined"),
    ("caller", "remote_hung_up", False, "declined"),
    ("caller", "busy", False, "busy"),
    ("caller", "unreachable", False, "unreachable"),
    ("caller", "hung_up", False, "cancelled"),
    ("caller", "no_answer", False, "missed"),
    ("caller", "auth_failure", False, "failed"),
    ("callee", "peer_vanished", False, "missed"),
    ("caller", "glare", False, None),
])
def test_each_end_of_a_call_has_its_outcome(role, reason, talked, outcome):
    assert call_outcome(role, reason, talked) == outcome


def test_the_history_lives_in_the_data_directory_or_in_a_named_config_directory(
        tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default = Config(config_dir=tmp_path / "config" / "kadtalk")
    assert history_path(default) == tmp_path / "data" / "kadtalk" / "history.sqlite3"
    profile = Config(config_dir=tmp_path / "bob")  # --config-dir: a profile of its own
    assert history_path(profile) == tmp_path / "bob" / "history.sqlite3"


# -- migrations -----------------------------------------------------------------------------------


def version_1_file(path: Path) -> None:
    """A history as the first schema wrote it, with one call."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    for statement in MIGRATIONS[0]:
        c.execute(statement)
    c.execute("PRAGMA user_version = 1")
    c.execute("INSERT INTO calls (peer, peer_name, direction, started, outcome, reason, duration)"
              " VALUES (?, 'Alice', 'in', 1000.0, 'missed', 'no_answer', 0)", (ALICE,))
    c.close()


def test_a_version_1_file_is_migrated_forward_and_keeps_its_calls(tmp_path):
    path = tmp_path / "h.sqlite3"
    version_1_file(path)
    db = HistoryDB.open(path)
    assert db.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [(c["name"], c["outcome"]) for c in db.calls()] == [("Alice", "missed")]
    assert db.missed_calls() == 1  # the marks table came with step 2
    assert db.add_message(ALICE, "in", "m1", "hi", 1.0, received=2.0)
    assert db.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


def test_a_migration_that_fails_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite3"
    version_1_file(path)
    broken = (*MIGRATIONS, ("CREATE TABLE extra (x)", "THIS IS NOT SQL"))
    monkeypatch.setattr(history_module, "MIGRATIONS", broken)
    monkeypatch.setattr(history_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(HistoryError, match=str(path)):
        HistoryDB.open(path)
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == 1  # step 2 was rolled back too
    assert {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} \
        == {"calls"}
    c.close()


def test_a_file_from_a_newer_kadtalk_or_another_program_is_refused_untouched(tmp_path):
    newer = tmp_path / "newer.sqlite3"
    version_1_file(newer)
    c = sqlite3.connect(newer)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.close()
    other = tmp_path / "other.sqlite3"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE photos (x)")
    c.commit()
    c.close()
    for path, words in ((newer, "newer kadtalk"), (other, "not a kadtalk history")):
        before = digest(path)
        with pytest.raises(HistoryError) as e:
            HistoryDB.open(path)
        assert words in str(e.value) and str(path) in str(e.value)
        assert digest(path) == before


# -- broken files ---------------------------------------------------------------------------------


def good_file(path: Path) -> bytes:
    db = HistoryDB.open(path)
    for i in range(200):
        db.add_call(ALICE, "Alice", "in", 1000.0 + i, "answered", "hung_up", 60.0)
        db.add_message(ALICE, "in", f"m{i}", "x" * 200, 1000.0 + i, received=1000.0 + i)
    db.close()  # the last connection checkpoints: everything is in the main file
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes()


def damage(kind: str, data: bytes) -> bytes:
    rng = Random(kind)  # the same damage every run
    if kind == "garbage bytes":
        return rng.randbytes(len(data))
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "truncated header":
        return data[:50]
    if kind == "garbage in pages":
        hurt = bytearray(data)
        for page in range(2, len(data) // 4096, 3):
            hurt[page * 4096: page * 4096 + 400] = rng.randbytes(400)
        return bytes(hurt)
    if kind == "a text file":
        return b"these are not the calls you are looking for\n" * 100
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["garbage bytes", "truncated", "truncated header",
                                  "garbage in pages", "a text file"])
def test_a_broken_file_is_reported_with_its_path_and_never_overwritten(tmp_path, kind):
    path = tmp_path / "history.sqlite3"
    path.write_bytes(damage(kind, good_file(tmp_path / "good.sqlite3")))
    before = digest(path)
    for _ in range(2):  # and again: the first attempt changed nothing
        with pytest.raises(HistoryError) as e:
            HistoryDB.open(path)
        message = str(e.value)
        assert str(path) in message and "Move it aside" in message and "mv " in message
        assert digest(path) == before
    written = [p.name for p in tmp_path.iterdir() if p.stat().st_size and not p.name.startswith(
        ("good", path.name))] + [p.name for p in tmp_path.glob("*-wal") if p.stat().st_size]
    assert written == []  # no new database, nor a log of writes, beside it


def test_the_daemon_refuses_to_start_on_a_broken_history_and_says_where_it_is(sock_root):
    config_dir = sock_root / "alice"
    config_dir.mkdir()
    path = config_dir / "history.sqlite3"
    path.write_bytes(b"\x00" * 3000 + b"not a database")
    before = digest(path)

    async def scenario():
        d = DaemonProcess(sock_root, "alice", "--capture", "none", "--playback", "none")
        code = await asyncio.get_running_loop().run_in_executor(None, d.proc.wait, 20)
        await d.terminate()
        return code, d.log()

    code, log = run(scenario())
    assert code == 1 and str(path) in log and "Move it aside" in log and "Traceback" not in log
    assert digest(path) == before


# -- a writer killed mid-write; readers beside a writer ------------------------------------------


WRITER = textwrap.dedent("""
    import os, sys, time
    from kadtalk.app.history import HistoryDB
    db = HistoryDB.open(sys.argv[1])
    start, count = int(sys.argv[2]), int(sys.argv[3])
    for i in range(start, start + count):
        key = f"w{i}"
        with db._write() as c:  # a call and a message in one transaction
            c.execute("INSERT INTO calls (peer, direction, started, outcome, reason) "
                      "VALUES (?, 'in', ?, 'missed', ?)", ("ab" * 20, time.time(), key))
            c.execute("INSERT INTO messages (peer, direction, message_id, sent, text, state) "
                      "VALUES (?, 'in', ?, ?, ?, 'delivered')",
                      ("ab" * 20, key, time.time(), os.urandom(1000 + i % 7000).hex()))
        print(key, flush=True)  # committed
    print("done", flush=True)
""")


def writer(path: Path, start: int, count: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start), str(count)],
                            stdout=subprocess.PIPE, text=True)


def test_a_writer_killed_with_sigkill_mid_write_loses_no_committed_row(tmp_path):
    path = tmp_path / "history.sqlite3"
    committed: list[str] = []
    for round_ in range(4):
        proc = writer(path, round_ * 100_000, 100_000)
        for n, line in enumerate(proc.stdout):  # kill it in the middle of its loop
            committed.append(line.strip())
            if n == 150 + 97 * round_:
                os.kill(proc.pid, signal.SIGKILL)
                break
        committed += [line.strip() for line in proc.stdout]  # what it printed before dying
        assert proc.wait() == -signal.SIGKILL
        assert "done" not in committed
        assert Path(f"{path}-wal").exists()  # it died with its write-ahead log open

        c = sqlite3.connect(path)  # recovers from the -wal
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        calls = {r[0] for r in c.execute("SELECT reason FROM calls")}
        messages = {r[0] for r in c.execute("SELECT message_id FROM messages")}
        assert set(committed) <= calls and calls == messages  # whole transactions only
        assert len(calls) - len(committed) <= 1  # at most the one it was printing
        c.close()
    assert len(committed) > 600
    db = HistoryDB.open(path)  # and the daemon's way in still works
    assert db.missed_calls() >= len(committed)
    db.close()


def test_readers_see_whole_transactions_while_another_process_writes(tmp_path):
    path = tmp_path / "history.sqlite3"
    HistoryDB.open(path).close()
    proc = writer(path, 0, 400)
    errors: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(3)]

    def read(counts: list[int]) -> None:
        try:
            db = HistoryDB.open(path)
            c = db.connection
            while proc.poll() is None or len(counts) < 5:
                c.execute("BEGIN")  # one snapshot for both counts
                calls = c.execute("SELECT count(*) FROM calls").fetchone()[0]
                messages = c.execute("SELECT count(*) FROM messages").fetchone()[0]
                c.execute("COMMIT")
                assert calls == messages
                assert not counts or calls >= counts[-1]
                counts.append(calls)
                db.calls(limit=20)
            db.close()
        except BaseException as e:  # noqa: BLE001 -- reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=read, args=(counts,)) for counts in seen]
    for t in threads:
        t.start()
    out, _ = proc.communicate(timeout=60)
    for t in threads:
        t.join(30)
    assert proc.returncode == 0 and out.splitlines()[-1] == "done"  # never blocked by readers
    assert not errors, errors
    for counts in seen:
        assert len(set(counts)) > 2  # each reader saw the writer's progress
    c = sqlite3.connect(path)
    assert c.execute("SELECT count(*) FROM calls").fetchone()[0] == 400
    c.close()


# -- the daemon's part ----------------------------------------------------------------------------


def part(tmp_path: Path) -> History:
    config = Config(config_dir=tmp_path / "cfg")
    callers = Callers(config, lambda event: None)
    callers.contacts.add(ALICE, "Alice")
    history = History(config, callers)
    history.open()
    return history


def test_the_history_command_checks_its_arguments(tmp_path):
    history = part(tmp_path)
    history.refused(ALICE, "Alice", "busy")
    history.refused(BOB, None, "blocked")
    for bad, code in (({"limit": 0}, "bad_argument"), ({"limit": "5"}, "bad_argument"),
                      ({"limit": True}, "bad_argument"), ({"limit": 1001}, "bad_argument"),
                      ({"peer": "carol"}, "unknown_contact"), ({"peer": 5}, "bad_argument"),
                      ({"mark_seen": "yes"}, "bad_argument")):
        with pytest.raises(protocol.BadRequest) as e:
            history.cmd_history(None, bad)
        assert e.value.code == code, bad
    assert history.status()["missed_calls"] == 1  # the refusals changed nothing
    r = history.cmd_history(None, {"peer": "alice"})  # one contact's: no mark
    assert [(c["outcome"], c["reason"], c["contact"]) for c in r["calls"]] \
        == [("busy", "busy", "Alice")]
    assert r["missed_calls"] == 1 and r["messages"] == []
    r = history.cmd_history(None, {"limit": 1})
    assert len(r["calls"]) == 1 and r["calls"][0]["outcome"] == "declined"
    assert history.status()["missed_calls"] == 0
    history.close()


def test_a_write_that_cannot_be_made_is_counted_and_the_call_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "BUSY_TIMEOUT", 0.05)
    history = part(tmp_path)
    history.close()
    history.open()  # with the short timeout
    other = sqlite3.connect(history.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    call = SimpleNamespace(peer=ALICE, role=Role.CALLEE, talking_since=None, created=0.0)
    history.call_ended(call, "no_answer", 0.0, "Alice")  # no event loop: no exception either
    assert history.status()["write_errors"] == 1
    other.execute("ROLLBACK")
    other.close()
    history.call_ended(call, "no_answer", 0.0, "Alice")
    assert history.status() == {"path": str(history.path), "missed_calls": 1,
                                "unread_messages": 0, "write_errors": 1}
    history.close()


# -- two daemons ----------------------------------------------------------------------------------


async def cli(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(*KADTALK, *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def test_missed_and_answered_calls_are_in_the_history_after_a_restart(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a")
        b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            ca, cb = await connect(a), await connect(b)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await cb.request("add_contact", name="Alice", peer=a.node_id)

            # Alice rings Bob and gives up: Bob missed it
            since_b = len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b, timeout=15)
            await ca.request("hangup")
            await cb.wait_event(is_call("ended", "remote_hung_up"), since=since_b)
            assert (await cb.request("status"))["history"]["missed_calls"] == 1

            # then Bob answers her second call, and they talk for a while
            since_a, since_b = len(ca.seen), len(cb.seen)
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", since=since_b, timeout=15)
            await cb.request("answer")
            await ca.wait_event(is_call("talking"), since=since_a)
            await asyncio.sleep(1.2)
            await cb.request("hangup")
            await ca.wait_event(is_call("ended"), since=since_a)
            await ca.close()
            await cb.close()
            await b.stop()

            b = await start_daemon(sock_root, "b")  # a restart
            cb = await connect(b)
            status = await cb.request("status")
            assert status["history"]["missed_calls"] == 1
            assert "history  1 missed call " in await cli("status", "--socket", str(b.socket_path))
            r = await cb.request("history", peer="alice", mark_seen=False)
            calls = [(c["direction"], c["outcome"], c["name"], c["contact"]) for c in r["calls"]]
            assert calls == [("in", "answered", "Alice", "Alice"),
                             ("in", "missed", "Alice", "Alice")]
            assert 1.0 <= r["calls"][0]["duration"] < 30 and r["calls"][1]["duration"] == 0
            assert r["calls"][0]["started"] >= r["calls"][1]["started"] > time.time() - 120
            assert r["messages"] == []

            table = await cli("history", "--socket", str(b.socket_path))  # marks them seen
            lines = table.splitlines()
            assert len(lines) == 2 and "Alice" in lines[0] and "incoming, answered" in lines[0]
            assert lines[0].rstrip().endswith(("00:01", "00:02")) and "incoming, missed" in lines[1]
            assert (await cb.request("status"))["history"]["missed_calls"] == 0
            as_json = json.loads(await cli("history", "--json", "--socket", str(b.socket_path)))
            assert [c["outcome"] for c in as_json["calls"]] == ["answered", "missed"]
            assert as_json["missed_calls"] == 0

            r = await ca_history(a)  # the caller's side: cancelled, then answered
            assert [(c["direction"], c["outcome"], c["name"]) for c in r["calls"]] \
                == [("out", "answered", None), ("out", "cancelled", None)]
            await cb.close()
        finally:
            await b.stop()
            await a.stop()

    run(scenario())


async def ca_history(daemon) -> dict:
    client = await connect(daemon)
    try:
        return await client.request("history")
    finally:
        await client.close()


def test_a_call_refused_as_busy_is_one_line_on_each_side(sock_root):
    async def scenario():
        a = await start_daemon(sock_root, "a")
        b = await start_daemon(sock_root, "b", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        c = await start_daemon(sock_root, "c", bootstrap=[f"127.0.0.1:{a.driver.address[1]}"])
        try:
            ca, cb, cc = await connect(a), await connect(b), await connect(c)
            for client in (cb, cc):
                await client.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            await cb.request("dial", to=a.node_id)
            await ca.wait_event(lambda e: e.get("event") == "incoming", timeout=15)
            await ca.request("answer")
            await cb.wait_event(is_call("talking"))
            await cc.request("dial", to=a.node_id)
            assert (await cc.wait_event(is_call("ended"), timeout=15))["reason"] == "busy"
            await ca.wait_event(lambda e: e.get("event") == "missed")
            await cb.request("hangup")
            await ca.wait_event(is_call("ended"))
            mine = (await ca.request("history"))["calls"]
            assert [(x["peer"], x["direction"], x["outcome"]) for x in mine] \
                == [(c.node_id, "in", "busy"), (b.node_id, "in", "answered")]  # newest first
            theirs = (await cc.request("history"))["calls"]
            assert [(x["direction"], x["outcome"]) for x in theirs] == [("out", "busy")]
            for client in (ca, cb, cc):
                await client.close()
        finally:
            for d in (c, b, a):
                await d.stop()

    run(scenario())


HOT_WAL = textwrap.dedent("""
    import os, sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("PRAGMA wal_autocheckpoint = 0")
    for i in range(50):
        c.execute("INSERT INTO calls (peer, direction, started, outcome) "
                  "VALUES ('ab', 'in', 1, 'missed')")
    os.kill(os.getpid(), 9)  # its -wal stays, waiting for a checkpoint into the main file
""")


def test_a_damaged_file_with_a_log_waiting_beside_it_is_not_written_either(tmp_path):
    """A read-write connection checkpoints its -wal into the file when it closes: the check of
    an existing file is made read-only, so finding it broken writes nothing."""
    path = tmp_path / "history.sqlite3"
    good_file(path)
    subprocess.run([sys.executable, "-c", HOT_WAL, str(path)])
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 0
    path.write_bytes(damage("garbage in pages", path.read_bytes()))
    before = digest(path), digest(wal)
    with pytest.raises(HistoryError, match="is damaged"):
        HistoryDB.open(path)
    assert (digest(path), digest(wal)) == before
