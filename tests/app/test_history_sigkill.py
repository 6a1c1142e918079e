"""The history survives SIGKILL with a real daemon (issue 14, "Bad input"): a receipt sent means
the message is kept. A daemon (`kadtalk daemon`, a subprocess) receives a stream of messages
from a second daemon and is killed with SIGKILL in the middle of it; its history database then
opens, passes `PRAGMA integrity_check` and holds every message whose RECEIPT reached the
sender, and after a restart the rest arrive, each shown once.

The receiving daemon runs with a slow disk (each message's write waits 50 ms first, as on an SD
card under load), which widens the moment between a message's arrival and its commit: a daemon
that sent the RECEIPT before committing (the UDP driver once transmitted a datagram's answers
before handing out its events) loses the message being written when the kill comes."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys

from . import conftest
from .conftest import DaemonProcess, connect, start_daemon
from .test_messages import run

MESSAGES = 40
KILL_AFTER = 12  # receipts at the sender before the kill
PACE = 0.05  # s between sends
NO_AUDIO = ("--capture", "none", "--playback", "none")

SLOW_DISK = """
import sys, time
from kadtalk.app import history
add = history.HistoryDB.add_message
def slow(self, *args, **kwargs):
    time.sleep(0.05)  # a slow disk: each message's write takes 50 ms longer
    return add(self, *args, **kwargs)
history.HistoryDB.add_message = slow
from kadtalk.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def kept(path) -> tuple[list, list[str]]:
    """(integrity_check's rows, the incoming message ids) of the database at `path`."""
    c = sqlite3.connect(path)
    try:
        return (c.execute("PRAGMA integrity_check").fetchall(),
                [r[0] for r in c.execute("SELECT message_id FROM messages WHERE direction = 'in'")])
    finally:
        c.close()


def test_a_daemon_killed_mid_stream_keeps_every_message_it_acknowledged(sock_root, monkeypatch):
    monkeypatch.setattr(conftest, "KADTALK", [sys.executable, "-c", SLOW_DISK])

    async def scenario():
        a = await start_daemon(sock_root, "a")
        ca = await connect(a)
        b = b2 = None
        try:
            port = a.driver.address[1]
            b = DaemonProcess(sock_root, "b", *NO_AUDIO, "--bootstrap", f"127.0.0.1:{port}")
            await b.ready()
            cb = await connect(b.socket)
            await cb.wait_event(lambda e: e.get("event") == "network" and e["reachable"])
            b_id = (await cb.request("id"))["node_id"]
            await cb.request("add_contact", name="Alice", peer=a.node_id)
            await cb.close()

            # paced, while the kill waits: b's driver reads what waits on its socket in one
            # batch and transmits the batch's receipts after writing them all, so 40 messages
            # at once would be one batch, receipted together; one every PACE s (a write's time)
            # keeps b writing, a batch or two at a time
            sent: list[str] = []

            async def send_all() -> None:
                for i in range(MESSAGES):
                    reply = await ca.request("send", to=b_id, text=f"message {i}")
                    sent.append(reply["message_id"])
                    await asyncio.sleep(PACE)

            sending = asyncio.create_task(send_all())

            def receipted() -> set[str]:
                return {e["message_id"] for e in ca.seen if e.get("event") == "receipt"}

            await ca.wait_event(lambda e: e.get("event") == "receipt" and
                                len(receipted()) >= KILL_AFTER, timeout=30)
            b.proc.send_signal(signal.SIGKILL)  # now: b is writing the next message
            assert b.proc.wait(10) == -signal.SIGKILL
            acknowledged = receipted()
            assert KILL_AFTER <= len(acknowledged) < MESSAGES, "the kill came after the stream"
            await sending  # the rest wait for b (pending)

            check, ids = kept(sock_root / "b" / "history.sqlite3")
            assert check == [("ok",)]
            assert acknowledged <= set(ids), f"acknowledged but lost: {acknowledged - set(ids)}"
            assert len(ids) == len(set(ids))

            # b again (an ordinary disk): its join opens a session to its contact a, which
            # sends every message still waiting; those b kept before the kill are shown once
            monkeypatch.setattr(conftest, "KADTALK", [sys.executable, "-m", "kadtalk"])
            b2 = DaemonProcess(sock_root, "b", *NO_AUDIO, "--bootstrap", f"127.0.0.1:{port}")
            await b2.ready()
            await ca.wait_event(lambda e: e.get("event") == "receipt" and
                                receipted() == set(sent), timeout=60)
            cb = await connect(b2.socket)
            shown = (await cb.request("messages", peer=a.node_id, limit=1000))["messages"]
            await cb.close()
            assert sorted(m["text"] for m in shown) == sorted(f"message {i}"
                                                              for i in range(MESSAGES))
            assert [m["message_id"] for m in shown if m["direction"] == "in"].count(sent[0]) == 1
            assert await b2.terminate() == 0
            check, ids = kept(sock_root / "b" / "history.sqlite3")
            assert check == [("ok",)] and sorted(ids) == sorted(sent)
        finally:
            await ca.close()
            await a.stop()
            for proc in (b, b2):
                if proc is not None:
                    proc.kill()

    run(scenario())
