"""Offline messages through the DHT between real daemons on loopback (real UDP): three daemons
(a storer network, so the mailbox has holders), a message from a to b while b is stopped goes
to b's mailbox (`stored`), b restarts (its prekey, published before the stop, kept in its
history database) and gets it at its join, and a's message turns `delivered` when b's receipt
comes on the next session between them; the message is shown once although it came both ways.
In one daemon: copies from the mailbox and a session kept once, every value acknowledged, a
blocked sender's not kept."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time

from kadtalk.node.session import MessageReceived
from kadtalk.node.session.messages import encode_text
from kadtalk.node.storage import MessageReceived as MailboxMessage
from kadtalk.node.storage import records, wire

from .conftest import connect, start_daemon
from .test_messages import cli, message, receipt, run


async def until(condition, timeout: float = 20.0) -> None:
    """Wait for in-process state the control socket does not tell (a storer's holdings)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def joined(root, name, first):
    daemon = await start_daemon(root, name, bootstrap=[f"127.0.0.1:{first.driver.address[1]}"])
    client = await connect(daemon)
    await client.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
    return daemon, client


def mailed(storer, author) -> list:
    """The mailbox values `storer` holds from `author`."""
    return [v for v in storer.driver.node.storage.store.values.values()
            if v.value.kind == wire.MAILBOX and v.value.author == bytes.fromhex(author.node_id)]


def prekey_rows(daemon_dir) -> list[tuple[bytes, float]]:
    c = sqlite3.connect(daemon_dir / "history.sqlite3")
    try:
        return c.execute("SELECT public, made FROM prekeys").fetchall()
    finally:
        c.close()


def test_a_message_to_a_stopped_daemon_reaches_it_through_its_mailbox_after_a_restart(
        sock_root, monkeypatch):
    # no daemon dials its contacts to tell its presence (app/presence.py) at its join: else b's
    # restart opens a session to a, which sends the message live before the mailbox is read
    monkeypatch.setattr("kadtalk.app.presence.FANOUT", 0)

    async def scenario():
        s = await start_daemon(sock_root, "s")  # the first node: bootstrap and storer
        clients, daemons = [], [s]
        try:
            a, ca = await joined(sock_root, "a", s)
            b, cb = await joined(sock_root, "b", s)
            daemons += [a, b]
            clients += [ca, cb]
            b_id, b_dir = b.node_id, sock_root / "b"
            await cb.request("add_contact", name="Alice", peer=a.node_id)

            # b published its prekey at its join; the storers hold it, b's database keeps it
            prekey = records.prekey_key(bytes.fromhex(b_id))
            await until(lambda: s.driver.node.storage.store.by_key.get(prekey))
            (public, made), = prekey_rows(b_dir)
            assert public == b.driver.node.storage.prekeys[0][1]
            assert stat.S_IMODE(os.stat(b_dir / "history.sqlite3").st_mode) == 0o600

            # b stops; a writes: no session can be set up, so the message goes to b's mailbox
            await cb.close()
            clients.remove(cb)
            await b.stop()
            daemons.remove(b)
            start = time.monotonic()  # `kadtalk send` says where the message is now
            code, out, err = await cli("send", "--socket", str(a.socket_path), "--wait", "60",
                                       b_id, "while you were away")
            assert code == 2 and out.startswith(f"stored in {b_id}'s DHT mailbox (held by ") \
                and out.rstrip().endswith(f"{b_id} gets it when it comes online, even if this "
                                          "daemon is off by then (not delivered now: "
                                          "unreachable)"), (out, err)
            stored = await ca.wait_event(lambda e: e.get("event") == "message_stored")
            sent = {"message_id": stored["message_id"]}
            assert stored["peer"] == b_id and stored["holders"] >= 1
            print(f"send to a stopped daemon -> stored: {time.monotonic() - start:.1f} s")
            mine = (await ca.request("messages", peer=b_id))["messages"]
            assert [(m["text"], m["state"]) for m in mine] == [("while you were away", "stored")]
            code, out, _ = await cli("messages", "--socket", str(a.socket_path))
            assert code == 0 and "[stored]" in out and "while you were away" in out
            held = mailed(s, a)
            assert held and all(b"while you were away" not in v.value.raw for v in held)

            # b starts again (a new port): its kept prekey opens the box at its join
            start = time.monotonic()
            b, cb = await joined(sock_root, "b", s)
            daemons.append(b)
            clients.append(cb)
            got = await cb.wait_event(message("while you were away"), timeout=30)
            print(f"restart -> message from the mailbox: {time.monotonic() - start:.1f} s")
            assert (got["peer"], got["name"], got["via"], got["message_id"]) == (
                a.node_id, "Alice", "mailbox", sent["message_id"])
            assert prekey_rows(b_dir)[0] == (public, made)  # no new prekey: the kept one is young
            # acknowledged: the storer deletes its copy
            await until(lambda: not mailed(s, a))

            # b answers: on that session a sends what is stored again, b's receipt comes back
            await cb.request("send", to=a.node_id, text="got it")
            await ca.wait_event(message("got it"), timeout=30)
            done = await ca.wait_event(receipt(sent["message_id"]), timeout=30)
            assert done["state"] == "delivered"
            mine = (await ca.request("messages", peer=b_id))["messages"]
            assert [(m["text"], m["state"]) for m in mine if m["direction"] == "out"] == [
                ("while you were away", "delivered")]
            # shown once at b, although it came from the mailbox and on the session
            listed = (await cb.request("messages", peer=a.node_id))["messages"]
            assert [m["text"] for m in listed if m["direction"] == "in"] == [
                "while you were away"]
            assert len([e for e in cb.seen if e.get("event") == "message"]) == 1
        finally:
            for client in clients:
                await client.close()
            for daemon in reversed(daemons):
                await daemon.stop()

    run(scenario())


def test_a_mailbox_message_is_kept_once_acknowledged_and_a_blocked_senders_is_not_kept(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            client = await connect(d)
            storage = d.driver.node.storage
            acked = []
            storage.acknowledge = lambda epoch, vids, now: acked.append((epoch, vids))
            sender = bytes.fromhex("ab" * 20)
            text = encode_text(b"\x05" * 16, 3, 1_767_225_600_000, "from the mailbox")
            for vid in (b"\x01" * 16, b"\x02" * 16):  # two values, one message (sent twice)
                d.messages.on_event(MailboxMessage(vid, 20454, sender, text, 9, 1.0))
            # the same message on a session: kept already, not shown again
            d.messages.on_event(MessageReceived(4, int.from_bytes(sender, "big"), b"\x05" * 16, 3,
                                                1_767_225_600_000, "from the mailbox", 2.0))
            await client.request("status")  # every event before this reply has been read
            shown = [e for e in client.seen if e.get("event") == "message"]
            assert [(e["text"], e["via"], e["seq"]) for e in shown] == [
                ("from the mailbox", "mailbox", 3)]
            assert acked == [(20454, [b"\x01" * 16]), (20454, [b"\x02" * 16])]  # both deleted

            await client.request("block", who="ab" * 20)
            spam = encode_text(b"\x06" * 16, 4, 1_767_225_600_000, "spam")
            d.messages.on_event(MailboxMessage(b"\x03" * 16, 20454, sender, spam, 9, 3.0))
            d.messages.on_event(MailboxMessage(b"\x04" * 16, 20454, sender, b"\x00junk", 9, 3.0))
            await client.request("status")
            assert len([e for e in client.seen if e.get("event") == "message"]) == 1
            assert [m["text"] for m in (await client.request("messages"))["messages"]] == [
                "from the mailbox"]
            assert len(acked) == 4  # refused or unreadable: deleted all the same
            assert d.messages.mailbox.stats["undecodable"] == 1
            await client.close()
        finally:
            await d.stop()

    run(scenario())


# -- one mailbox without a network: what a failing history database does --------------------------

def _mailbox(db, acks, kept_at_start=None, released=None):
    """A Mailbox over `db` with stand-ins for the node (acknowledgements in `acks`)."""
    from types import SimpleNamespace

    from kadtalk.app.mailbox import Mailbox
    from kadtalk.app.messages import Messages
    from kadtalk.node.storage.settings import StorageSettings

    shown = []
    callers = SimpleNamespace(name_of=lambda p: "Alice", blocked=set(),
                              contacts=SimpleNamespace(by_id={}))
    history = SimpleNamespace(db=db, path=db.path, write_errors=0)
    m = Messages(callers, history, SimpleNamespace(fire=lambda *a, **k: None),
                 SimpleNamespace(block=[], accept="anyone"), shown.append)
    storage = SimpleNamespace(
        settings=StorageSettings(),
        acknowledge=lambda epoch, vids, now: acks.append((epoch, list(vids))),
        not_kept=lambda vid: released.append(vid) if released is not None else None,
        keep_mailbox=lambda kept, now, keep=None, acknowledged=(): kept_at_start.append(
            (list(kept), keep, list(acknowledged))))
    m.driver = SimpleNamespace(node=SimpleNamespace(storage=storage, pump_storage=lambda now: None),
                               loop=SimpleNamespace(time=lambda: 0.0), service=lambda: None)
    return Mailbox(m), history, shown


def _broken(*args, **kwargs):
    raise sqlite3.OperationalError("database or disk is full")


def test_a_mailbox_message_the_history_cannot_write_is_not_acknowledged_and_comes_back(tmp_path):
    from kadtalk.app.history import HistoryDB

    db = HistoryDB.open(tmp_path / "h.sqlite3")
    acks, released = [], []
    box, history, shown = _mailbox(db, acks, released=released)
    frame = encode_text(b"\x01" * 16, 1, int(time.time() * 1000), "see you at 8")
    event = MailboxMessage(b"v" * 20, 7, b"\xaa" * 20, frame, 1, 0.0)
    write = db.add_message
    db.add_message = _broken  # disk full: the storers must keep their copies
    box.on_event(event)
    assert history.write_errors == 1 and acks == [] and shown == []
    assert released == [b"v" * 20]  # the node reports it again at the next fetch
    db.add_message = write  # the next fetch: written, shown, acknowledged
    box.on_event(event)
    assert acks == [(7, [b"v" * 20])] and len(shown) == 1
    box.on_event(event)  # a copy kept already: acknowledged again, shown once
    assert acks[-1] == (7, [b"v" * 20]) and len(acks) == 2 and len(shown) == 1
    assert db.connection.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    # its id outlives a restart (and the message's row): the node acknowledges it again
    db.connection.execute("DELETE FROM messages")  # pruned, a stranger's
    started = []
    _mailbox(db, [], kept_at_start=started)[0].start(0.0)
    assert started[0][2] == [(b"v" * 20, 7)]


def test_a_start_whose_clean_up_fails_still_gives_the_node_the_kept_prekeys(tmp_path):
    from kadtalk.app.history import HistoryDB

    db = HistoryDB.open(tmp_path / "h.sqlite3")
    db.add_prekey(b"P" * 32, b"K" * 32, time.time() - 3600)  # kept from the last run
    db.add_prekey(b"Q" * 32, b"L" * 32, time.time() - 30 * 86400)  # too old to give back
    db.drop_prekeys = _broken  # locked, read-only or full
    started = []
    box, _, _ = _mailbox(db, [], kept_at_start=started)
    box.start(0.0)
    ((kept, keep, _),) = started
    assert [k for k, _ in kept] == [b"K" * 32]
    # a new prekey is stored before the node publishes it; a failing write says no
    assert keep(b"N" * 32, b"M" * 32, time.time()) is True
    assert (b"M" * 32) in [k for k, _ in db.prekeys()]
    db.add_prekey = _broken
    assert keep(b"O" * 32, b"R" * 32, time.time()) is False
