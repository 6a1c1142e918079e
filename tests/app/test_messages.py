"""Text messages between real daemons on loopback (real UDP): each way with receipts, the CLI,
a message to a contact that is offline staying pending until the next session, duplicates kept
once, and the `send` / `messages` commands' checks."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time

import pytest

from kadtalk.node.session import MessageReceived
from kadtalk.node.session.messages import MAX_TEXT

from .conftest import KADTALK, connect, joined_pair, start_daemon


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*KADTALK, *args, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def message(text: str):
    return lambda e: e.get("event") == "message" and e.get("text") == text


def receipt(message_id: str):
    return lambda e: e.get("event") == "receipt" and e.get("message_id") == message_id


def test_two_daemons_exchange_messages_each_way_with_receipts(sock_root):
    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            await cb.request("add_contact", name="Alice", peer=a.node_id)

            # a -> b: no session yet: a lookup, a key exchange (no RING), the TEXT, its RECEIPT
            start = time.monotonic()
            sent = await ca.request("send", to=b.node_id, text="hello Bob ✓")
            assert sent["state"] == "pending" and sent["seq"] == 1
            got = await cb.wait_event(message("hello Bob ✓"), timeout=15)
            assert (got["peer"], got["name"], got["direction"], got["seq"]) \
                == (a.node_id, "Alice", "in", 1)
            assert got["message_id"] == sent["message_id"]
            done = await ca.wait_event(receipt(sent["message_id"]), timeout=15)
            assert done["state"] == "delivered" and done["peer"] == b.node_id
            print(f"first receipt (lookup, key exchange, TEXT, RECEIPT): "
                  f"{(time.monotonic() - start) * 1000:.1f} ms")

            # the next ones go on the open session: the receipt is a round trip away
            delays = []
            for i in range(5):
                start = time.monotonic()
                r = await ca.request("send", to=b.node_id, text=f"number {i + 2}")
                await ca.wait_event(receipt(r["message_id"]), timeout=10)
                delays.append(time.monotonic() - start)
            assert r["seq"] == 6
            print(f"receipt after send on an open loopback session: median "
                  f"{sorted(delays)[2] * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
            # the goal is 50 ms (measured in docs/control.md); a retry would take 0.5 s. Median
            # 1.3-2.0 ms, max 92 ms at load average 10-12 (8 runs, session 12): a wide margin
            assert sorted(delays)[2] < 0.5

            # b -> a with the CLI: it waits for the receipt
            code, out, err = await cli("send", "--socket", str(b.socket_path), "alice",
                                       "hi Alice, got them all")
            assert code == 0 and out.strip() == "delivered to Alice", err
            await ca.wait_event(message("hi Alice, got them all"))

            # nothing rang: messages open no call
            for client in (ca, cb):
                assert not [e for e in client.seen if e.get("event") in ("incoming", "call")]

            # the conversation, in order, from the CLI; listing it marks it read
            assert (await cb.request("status"))["history"]["unread_messages"] == 6
            _, out, _ = await cli("status", "--socket", str(b.socket_path))
            assert "messages 6 new messages (`kadtalk messages` shows them)" in out
            code, out, _ = await cli("messages", "alice", "--json", "--socket",
                                     str(b.socket_path))
            listed = json.loads(out)["messages"]
            assert [(m["direction"], m["text"], m["state"]) for m in listed] == (
                [("in", "hello Bob ✓", "delivered")]
                + [("in", f"number {i}", "delivered") for i in range(2, 7)]
                + [("out", "hi Alice, got them all", "delivered")])
            assert all(m["delivered"] for m in listed) and listed[-1]["name"] == "Alice"
            assert (await cb.request("status"))["history"]["unread_messages"] == 0
            code, out, _ = await cli("messages", "--socket", str(b.socket_path))
            lines = out.splitlines()
            assert len(lines) == 7 and "<- Alice" in lines[0] and "hello Bob ✓" in lines[0]
            assert "-> Alice" in lines[-1] and "[delivered]" in lines[-1]
            mine = (await ca.request("messages", peer=b.node_id))["messages"]
            assert [m["state"] for m in mine[:6]] == ["delivered"] * 6

    run(scenario())


def test_a_message_to_a_contact_that_is_offline_goes_at_the_next_session(sock_root):
    async def scenario():
        async with joined_pair(sock_root) as p:
            a, ca = p.a, p.ca
            b_id = p.b.node_id
            first = await ca.request("send", to=b_id, text="are you there?")
            await ca.wait_event(receipt(first["message_id"]), timeout=15)
            await p.stop_b()  # its session for messages ends with a HANGUP, here at once

            # b is gone: the message is stored, and stays pending
            since = len(ca.seen)
            later = await ca.request("send", to=b_id, text="call me when you are back")
            code, out, err = await cli("send", "--socket", str(a.socket_path), "--wait", "1",
                                       b_id, "and this one too")
            assert code == 2 and out.startswith("pending: not delivered"), (out, err)
            code, out, err = await cli("send", "--socket", str(a.socket_path), "--wait", "0.5",
                                       "--json", b_id, "and one more")
            assert code == 2 and json.loads(out)["state"] == "pending", (out, err)
            mine = (await ca.request("messages", peer=b_id))["messages"]
            states = {m["text"]: m["state"] for m in mine}
            waiting = [m["message_id"] for m in mine if m["state"] == "pending"]
            assert json.loads(out)["message_id"] in waiting and later["message_id"] in waiting
            assert states == {"are you there?": "delivered",
                              "call me when you are back": "pending",
                              "and this one too": "pending", "and one more": "pending"}

            # b comes back (a new port) and writes: a's pending ones go on that session (or on
            # a's own, if its lookup finds b's new address first: then before b writes)
            await p.start_b()
            cb = p.cb
            await cb.request("send", to=a.node_id, text="back!")
            await ca.wait_event(message("back!"), since=since, timeout=15)
            for message_id in waiting:  # b keeps a message before its receipt goes
                await ca.wait_event(receipt(message_id), since=since, timeout=15)
            listed = (await cb.request("messages"))["messages"]
            texts = [m["text"] for m in listed if m["direction"] == "in"]
            assert texts == ["are you there?", "call me when you are back", "and this one too",
                             "and one more"]
            states = {m["text"]: m["state"] for m in
                      (await ca.request("messages", peer=b_id))["messages"]}
            assert set(states.values()) == {"delivered"}

    run(scenario())


def test_a_message_that_comes_again_on_another_session_is_kept_and_shown_once(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            client = await connect(d)
            peer = int("ab" * 20, 16)
            for session_id in (3, 4):  # its receipt was lost, so it came on the next session
                d.messages.on_event(MessageReceived(session_id, peer, bytes(16), 1, 1000,
                                                    "once", 1.0))
            await client.request("status")  # every event before this reply has been read
            assert len([e for e in client.seen if e.get("event") == "message"]) == 1
            assert [m["text"] for m in (await client.request("messages"))["messages"]] == ["once"]

            def fail(*args, **kwargs):
                raise sqlite3.OperationalError("disk I/O error")

            db, add = d.history.db, d.history.db.add_message
            db.add_message = fail  # the disk fails: counted, neither kept nor shown (no
            d.messages.on_event(MessageReceived(6, peer, b"\x02" * 16, 2, 2000, "lost", 2.0))
            db.add_message = add  # receipt goes: its sender sends it again)
            await client.request("status")
            assert [e["text"] for e in client.seen if e.get("event") == "message"] == ["once"]
            assert (await client.request("status"))["history"]["write_errors"] == 1

            await client.request("block", who="ab" * 20)  # a blocked peer's are not kept
            d.messages.on_event(MessageReceived(5, peer, b"\x01" * 16, 2, 2000, "spam", 2.0))
            assert len((await client.request("messages"))["messages"]) == 1
            assert d.messages.ignored == 1
            await client.request("accept", **{"from": "contacts"})  # and strangers' then
            d.messages.on_event(MessageReceived(7, peer + 1, b"\x03" * 16, 1, 0, "hi?", 3.0))
            await client.request("add_contact", name="Carol", peer=f"{peer + 2:040x}")
            d.messages.on_event(MessageReceived(8, peer + 2, b"\x03" * 16, 1, 0, "Carol", 3.0))
            assert [m["text"] for m in (await client.request("messages"))["messages"]] \
                == ["once", "Carol"]
            assert d.messages.ignored == 2
            await client.close()
        finally:
            await d.stop()

    run(scenario())


def test_a_message_the_receivers_disk_cannot_take_gets_no_receipt_until_it_is_written(
        sock_root):
    """b's history write fails (disk full: SQLite's SQLITE_FULL): b sends no RECEIPT and does
    not show the message, a's stays pending and is sent again; once b's disk is back the next
    copy is written, shown once, and its receipt makes a's delivered."""

    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            db = b.history.db
            add = db.add_message

            def full(*args, **kwargs):
                raise sqlite3.OperationalError("database or disk is full")

            db.add_message = full
            sent = await ca.request("send", to=b.node_id, text="written at last")
            for _ in range(150):  # the first copy and at least two retransmissions fail
                if (await cb.request("status"))["history"]["write_errors"] >= 3:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("b never tried to write the message three times")
            assert not [e for e in ca.seen if e.get("event") == "receipt"]
            assert not [e for e in cb.seen if e.get("event") == "message"]
            (mine,) = (await ca.request("messages", peer=b.node_id))["messages"]
            assert mine["state"] == "pending"
            assert (await cb.request("messages"))["messages"] == []
            layer = b.driver.node.session_layer()
            assert layer.stats["held_message_repeat"] >= 2

            db.add_message = add  # the disk is back: the next copy is kept, then acknowledged
            done = await ca.wait_event(receipt(sent["message_id"]), timeout=15)
            assert done["state"] == "delivered"
            await cb.request("status")  # every event before this reply has been read
            shown = [e for e in cb.seen if e.get("event") == "message"]
            assert [e["text"] for e in shown] == ["written at last"]
            listed = (await cb.request("messages"))["messages"]
            assert [(m["text"], m["direction"]) for m in listed] == [("written at last", "in")]
            (mine,) = (await ca.request("messages", peer=b.node_id))["messages"]
            assert mine["state"] == "delivered"

    run(scenario())


@pytest.mark.parametrize("args, code, words", [
    ({"to": "nobody", "text": "hi"}, "unknown_contact", "neither a node ID"),
    ({"to": "ab" * 20, "text": ""}, "bad_argument", "non-empty"),
    ({"to": "ab" * 20, "text": 7}, "bad_argument", "non-empty"),
    ({"to": "ab" * 20, "text": "x" * (MAX_TEXT + 1)}, "too_long", f"at most {MAX_TEXT} bytes"),
    ({"to": "SELF", "text": "me"}, "bad_argument", "own ID"),
])
def test_send_checks_its_arguments_and_stores_nothing_it_refuses(sock_root, args, code, words):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        try:
            client = await connect(d)
            if args["to"] == "SELF":
                args["to"] = d.node_id
            r = await client.request("send", check=False, **args)
            assert not r["ok"] and r["error"] == code and words in r["message"], r
            assert (await client.request("messages"))["messages"] == []
            r = await client.request("messages", limit=0, check=False)
            assert r["error"] == "bad_argument"
            await client.close()
        finally:
            await d.stop()

    run(scenario())


def test_a_message_during_a_call_goes_on_the_calls_session(sock_root):
    from .conftest import is_call

    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            await ca.request("dial", to=b.node_id)
            await cb.wait_event(lambda e: e.get("event") == "incoming", timeout=15)
            # while it rings: "can't talk now" goes on the ringing call's session
            r = await cb.request("send", to=a.node_id, text="one minute!")
            await ca.wait_event(message("one minute!"))
            await cb.wait_event(receipt(r["message_id"]))
            await cb.request("answer")
            await ca.wait_event(is_call("talking"))
            r = await ca.request("send", to=b.node_id, text="talking and typing")
            await cb.wait_event(message("talking and typing"))
            await ca.wait_event(receipt(r["message_id"]))
            for daemon in (a, b):  # one session each: the call's
                assert len(daemon.driver.node.session.sessions) == 1
            await ca.request("hangup")
            await ca.wait_event(is_call("ended"))

    run(scenario())


def test_a_message_to_a_node_nobody_finds_stays_pending_with_the_reason(sock_root):
    async def scenario():
        async with joined_pair(sock_root) as p:
            nobody = "cd" * 20
            r = await p.ca.request("send", to=nobody, text="anyone?")
            event = await p.ca.wait_event(lambda e: e.get("event") == "message_pending",
                                          timeout=30)
            assert event["message_ids"] == [r["message_id"]] and event["peer"] == nobody
            assert event["reason"] == "unreachable"
            # nobody holds a prekey of that ID: it cannot be mailed either, and a client is told
            mail = await p.ca.wait_event(lambda e: e.get("event") == "message_not_stored",
                                         timeout=30)
            assert mail["message_id"] == r["message_id"] and mail["reason"] == "no_prekey", mail
            code, out, err = await cli("send", "--socket", str(p.a.socket_path), "--wait", "30",
                                       nobody, "still nobody?")
            assert code == 2, (out, err)
            assert out.strip() == (f"pending: not delivered to {nobody} yet (unreachable); it is "
                                   f"sent again at the next session with {nobody}")
            listed = (await p.ca.request("messages", peer=nobody))["messages"]
            assert [(m["text"], m["state"]) for m in listed] == [("anyone?", "pending"),
                                                                 ("still nobody?", "pending")]

    run(scenario())


def test_send_before_the_join_says_the_node_knows_no_peers_yet_and_it_goes_later(sock_root):
    async def scenario():
        late = await start_daemon(sock_root, "late", bootstrap=["127.0.0.1:9"])  # never answers
        try:
            code, out, err = await cli("send", "--socket", str(late.socket_path), "--wait", "1",
                                       "ab" * 20, "hello?")
            assert code == 2, (out, err)
            assert out.strip() == (f"pending: not delivered to {'ab' * 20} yet (this node knows "
                                   "no peers yet: it goes once it has joined); it is sent again "
                                   f"at the next session with {'ab' * 20}")
            client = await connect(late)
            (kept,) = (await client.request("messages"))["messages"]
            assert (kept["text"], kept["state"]) == ("hello?", "pending")
            await client.close()
        finally:
            await late.stop()

    run(scenario())
