"""Contact requests and presence between two real daemons on loopback (real UDP): request ->
accept -> both contacts -> each sees the other's presence -> a status change is seen; a silent
and a told decline; contacts-only mode lets a request through and refuses a stranger's message;
a reply nobody asked for changes nothing; a flood of requests is capped (app/contact_requests.py
with explicit time). Nothing sleeps: every wait is for an event, with a timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from types import SimpleNamespace

import pytest

from kadtalk.app.contact_requests import BURST, MAX_PENDING, ContactRequests
from kadtalk.app.history import HistoryDB
from kadtalk.node.session.presence import ContactReplied, ContactRequested

from .conftest import joined_pair
from .test_messages import cli


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def event(kind: str, **fields):
    return lambda e: e.get("event") == kind and all(e.get(k) == v for k, v in fields.items())


def test_request_accept_both_contacts_presence_both_ways_and_a_status_change(sock_root):
    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            note = "Alice here \x1b[2J from the choir"  # printed sanitised by the CLI
            # b joined through a, but a enters b in its table only after probing it: until then
            # a's lookup misses b, and a request waits for the next session with b (no retry
            # timer; CI once waited out the 15 s below). The flow is what this test is about.
            for _ in range(50):
                if (await ca.request("lookup", to=b.node_id))["found"]:
                    break
                await asyncio.sleep(0.1)
            sent = await ca.request("contact_request", to=b.node_id, name="Bob", note=note)
            assert sent["state"] == "pending"
            got = await cb.wait_event(event("contact_request", peer=a.node_id), timeout=15)
            assert got["note"] == note and got["request_id"] == sent["request_id"]
            code, out, _ = await cli("contact", "requests", "--socket", str(b.socket_path))
            assert code == 0 and f"from {a.node_id}: Alice here \\x1b[2J from the choir" in out
            assert "\x1b" not in out  # the peer's escape sequence is shown, not run
            waiting = await cb.request("contact_requests")
            assert [(r["peer"], r["note"], r["state"]) for r in waiting["incoming"]] \
                == [(a.node_id, note, "pending")]
            # the request's RECEIPT came back: delivered, not yet answered
            mine = (await ca.request("contact_requests"))["outgoing"]
            assert [(r["peer"], r["state"], r["name"]) for r in mine] \
                == [(b.node_id, "delivered", "Bob")]

            accepted = await cb.request("contact_accept", peer=a.node_id, name="Alice")
            assert (accepted["name"], accepted["state"]) == ("Alice", "accepted")
            reply = await ca.wait_event(event("contact_reply", peer=b.node_id), timeout=15)
            assert reply["accepted"] and reply["name"] == "Bob"
            assert [c["name"] for c in (await ca.request("contacts"))["contacts"]] == ["Bob"]
            assert [c["name"] for c in (await cb.request("contacts"))["contacts"]] == ["Alice"]
            assert (await cb.request("contact_requests"))["incoming"] == []

            # each now tells the other its status, on the session the request opened
            await ca.wait_event(event("presence", peer=b.node_id, status="online"), timeout=15)
            await cb.wait_event(event("presence", peer=a.node_id, status="online"), timeout=15)
            r = await ca.request("presence", status="away")
            assert r["status"] == "away"
            seen = await cb.wait_event(event("presence", peer=a.node_id, status="away"),
                                       timeout=15)
            assert seen["name"] == "Alice"
            code, out, _ = await cli("contacts", "--socket", str(b.socket_path))
            assert code == 0 and out.split() == ["Alice", a.node_id, "away"]
            code, out, _ = await cli("contact", "requests", "--socket", str(a.socket_path))
            assert code == 0 and f"to   {b.node_id}  [accepted]" in out
            shown = await cb.request("presence")
            assert [(c["name"], c["status"]) for c in shown["contacts"]] == [("Alice", "away")]
            assert shown["ignored"] == 0 and b.presence.ignored == 0

            # the status outlives the daemon (kept in the history database)
            await p.stop_b()
            await p.start_b()
            assert (await p.cb.request("presence"))["status"] == "online"  # b never changed
            assert a.presence.status == "away"
            # b stopped and told a it went offline, before its sessions ended
            assert any(e.get("event") == "presence" and e.get("peer") == b.node_id
                       and e.get("status") == "offline" for e in ca.seen)

    run(scenario())


def test_contacts_added_by_hand_on_both_sides_see_each_others_presence_at_once(sock_root):
    """`contacts add` (not a request): the new contact is told our status at once, on a
    session opened for it; when it adds us too, each sees the other online (before, neither
    did until a status change or a restart)."""

    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            await cb.request("add_contact", peer=a.node_id, name="Alice")
            for _ in range(100):  # b's PRESENCE reached a, a stranger to a so far: not shown
                if a.presence.ignored:
                    break
                await asyncio.sleep(0.05)
            assert a.presence.ignored == 1
            await ca.request("add_contact", peer=b.node_id, name="Bob")
            seen = await ca.wait_event(event("presence", peer=b.node_id), timeout=10)
            assert (seen["name"], seen["status"]) == ("Bob", "online")
            seen = await cb.wait_event(event("presence", peer=a.node_id), timeout=10)
            assert (seen["name"], seen["status"]) == ("Alice", "online")
            code, out, _ = await cli("contacts", "--socket", str(b.socket_path))
            assert code == 0 and out.split() == ["Alice", a.node_id, "online"]

    run(scenario())


def test_decline_is_silent_unless_told(sock_root):
    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            await ca.request("contact_request", to=b.node_id, note="hi")
            await cb.wait_event(event("contact_request", peer=a.node_id), timeout=15)
            r = await cb.request("contact_decline", peer=a.node_id)
            assert (r["state"], r["told"]) == ("declined", False)
            # a message b sends after declining goes on the same session, after any reply:
            # once it is here, a reply would have been too
            await cb.request("send", to=a.node_id, text="after the decline")
            await ca.wait_event(event("message", text="after the decline"), timeout=15)
            assert not any(e.get("event") == "contact_reply" for e in ca.seen)
            assert (await ca.request("contact_requests"))["outgoing"][0]["state"] == "delivered"
            assert (await ca.request("contacts"))["contacts"] == []
            assert (await cb.request("contact_requests"))["incoming"] == []
            # a declined peer asking again within a day is not shown again (counted)
            await ca.request("contact_request", to=b.node_id, note="please?")
            await cb.request("send", to=a.node_id, text="second")
            await ca.wait_event(event("message", text="second"), timeout=15)
            assert b.requests.dropped == 1
            assert sum(e.get("event") == "contact_request" for e in cb.seen) == 1

            # told: the requester learns it (a third daemon's worth of state: reset b's row)
            b.history.db.connection.execute("DELETE FROM contact_requests")
            again = await ca.request("contact_request", to=b.node_id, note="once more")
            await cb.wait_event(event("contact_request", request_id=again["request_id"]),
                                timeout=15)
            r = await cb.request("contact_decline", peer=a.node_id, tell=True)
            assert r["told"] is True
            reply = await ca.wait_event(event("contact_reply", peer=b.node_id), timeout=15)
            assert reply["accepted"] is False and reply["name"] is None
            assert (await ca.request("contacts"))["contacts"] == []

    run(scenario())


def test_a_request_and_a_reply_the_disk_cannot_take_get_no_receipt_until_they_are_written(
        sock_root):
    """a's history write fails (disk full): b's request gets no RECEIPT (it stays pending and
    is sent again) and is not shown; once a's disk is back it is shown once and b's becomes
    delivered. The same for a's reply on b's side: b adds a as a contact only when it can keep
    the answer, and a's reply waits for b's RECEIPT meanwhile."""

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    async def wait_errors(client, count):
        for _ in range(150):
            if (await client.request("status"))["history"]["write_errors"] >= count:
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"fewer than {count} failed writes")

    async def scenario():
        async with joined_pair(sock_root) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            put, set_ = a.requests._put, b.requests._set
            a.requests._put = full
            sent = await cb.request("contact_request", to=a.node_id, note="hi")
            await wait_errors(ca, 3)  # the first copy and two retransmissions
            assert not [e for e in ca.seen if e.get("event") == "contact_request"]
            (mine,) = (await cb.request("contact_requests"))["outgoing"]
            assert mine["state"] == "pending"  # no RECEIPT came
            assert a.driver.node.session_layer().stats["held_message_repeat"] >= 2
            a.requests._put = put  # the disk is back: the next copy is kept, then acknowledged
            got = await ca.wait_event(event("contact_request", peer=b.node_id), timeout=15)
            assert got["request_id"] == sent["request_id"]
            for _ in range(150):
                (mine,) = (await cb.request("contact_requests"))["outgoing"]
                if mine["state"] == "delivered":
                    break
                await asyncio.sleep(0.1)
            assert mine["state"] == "delivered"

            b.requests._set = full  # now b cannot keep a's answer
            await ca.request("contact_accept", peer=b.node_id, name="Bob")
            await wait_errors(cb, 3)
            assert not [e for e in cb.seen if e.get("event") == "contact_reply"]
            incoming = a.requests._row(b.node_id, "in")
            assert incoming["reply_id"] is not None  # no RECEIPT for the reply yet
            b.requests._set = set_
            reply = await cb.wait_event(event("contact_reply", peer=a.node_id), timeout=15)
            assert reply["accepted"] and [c["name"] for c in
                                          (await cb.request("contacts"))["contacts"]] \
                == [reply["name"]]
            for _ in range(150):
                if a.requests._row(b.node_id, "in")["reply_id"] is None:
                    break  # its RECEIPT came
                await asyncio.sleep(0.1)
            else:
                pytest.fail("a's reply was never acknowledged")
            assert sum(e.get("event") == "contact_request" for e in ca.seen) == 1
            assert sum(e.get("event") == "contact_reply" for e in cb.seen) == 1

    run(scenario())


def test_contacts_only_lets_a_request_through_and_refuses_a_strangers_message(sock_root):
    async def scenario():
        async with joined_pair(sock_root, b_settings={"accept": "contacts"}) as p:
            a, b, ca, cb = p.a, p.b, p.ca, p.cb
            await ca.request("send", to=b.node_id, text="hello stranger")
            await ca.request("contact_request", to=b.node_id, note="let me in")
            got = await cb.wait_event(event("contact_request", peer=a.node_id), timeout=15)
            assert got["note"] == "let me in"
            # the TEXT went first on the same session: refused (acknowledged, not kept)
            assert b.messages.ignored == 1
            assert not any(e.get("event") == "message" for e in cb.seen)
            assert (await cb.request("messages"))["messages"] == []
            # a's PRESENCE (a has no contacts) never went; a stranger's would be ignored
            assert not any(e.get("event") == "presence" for e in cb.seen)
            # once accepted, a's messages get through
            await cb.request("contact_accept", peer=a.node_id, name="Alice")
            await ca.wait_event(event("contact_reply", peer=b.node_id), timeout=15)
            await ca.request("send", to=b.node_id, text="now as a contact")
            await cb.wait_event(event("message", text="now as a contact"), timeout=15)

    run(scenario())


# -- the daemon's limits, with explicit time ------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def time(self) -> float:
        return self.now


def requests_part(tmp_path, contacts=()):
    db = HistoryDB.open(tmp_path / "history.sqlite3")
    history = SimpleNamespace(db=db, path=db.path, write_errors=0)
    by_id = {peer: f"c{i}" for i, peer in enumerate(contacts)}
    callers = SimpleNamespace(name_of=by_id.get, blocked=[],
                              contacts=SimpleNamespace(by_id=by_id))
    events: list[dict] = []
    part = ContactRequests(callers, history, SimpleNamespace(block=[]), events.append)
    clock = Clock()
    part.confirmed = []  # (session id, frame id) confirmed to the node: their RECEIPTs go
    layer = SimpleNamespace(confirm=lambda sid, fid, now: part.confirmed.append((sid, fid)))
    part.driver = SimpleNamespace(loop=clock, service=lambda: None,
                                  node=SimpleNamespace(session_layer=lambda: layer))
    return part, events, clock, db


def peer(i: int) -> int:
    return (1 << 159) | i


def test_a_flood_of_requests_from_many_identities_is_capped(tmp_path):
    part, events, clock, db = requests_part(tmp_path)
    for i in range(500):  # 500 identities at one moment: the burst gets through
        part.on_event(ContactRequested(0, peer(i), i.to_bytes(16, "big"), "spam", 0.0))
    pending = "SELECT count(*) FROM contact_requests WHERE state = 'pending'"
    assert db.connection.execute(pending).fetchone()[0] == BURST == len(events)
    assert part.dropped == 500 - BURST
    # over hours, at the flood's pace: never more than MAX_PENDING wait for the user
    for i in range(500, 2000):
        clock.now += 10.0
        part.on_event(ContactRequested(0, peer(i), i.to_bytes(16, "big"), "spam", 0.0))
    assert db.connection.execute(pending).fetchone()[0] == MAX_PENDING
    # a repeat of a waiting request (another session) is shown once, costs no slot
    before = len(events)
    part.on_event(ContactRequested(1, peer(0), (0).to_bytes(16, "big"), "spam", 0.0))
    assert len(events) == before
    # each was confirmed to the node, kept or dropped: a dropped one's sender learns nothing
    assert len(part.confirmed) == 2001 and part.confirmed[-1] == (1, (0).to_bytes(16, "big"))


def test_a_request_or_reply_that_cannot_be_written_is_not_confirmed_so_it_comes_again(tmp_path):
    part, events, clock, db = requests_part(tmp_path)
    connection = db.connection
    rid, reply_id = bytes(range(16)), bytes([7]) * 16
    request = ContactRequested(3, peer(1), rid, "hi", 0.0)
    db.connection = SimpleNamespace(execute=full_disk(connection))
    part.on_event(request)
    assert part.confirmed == [] and events == [] and part.history.write_errors == 1
    db.connection = connection  # the disk is back: the sender's next copy is kept, confirmed
    part.on_event(request)
    assert part.confirmed == [(3, rid)] and [e["event"] for e in events] == ["contact_request"]

    # a reply to our request: not confirmed while its state cannot be written
    connection.execute(
        "INSERT INTO contact_requests (peer, direction, request_id, note, name, state, made) "
        "VALUES (?, 'out', ?, '', 'Bob', 'delivered', ?)", (f"{peer(2):040x}", rid.hex(),
                                                            time.time()))
    reply = ContactReplied(4, peer(2), reply_id, rid, False, 0.0)  # declined, and told
    db.connection = SimpleNamespace(execute=full_disk(connection, "UPDATE"))
    part.on_event(reply)
    assert part.confirmed == [(3, rid)] and part.history.write_errors == 2
    db.connection = connection
    part.on_event(reply)
    assert part.confirmed[-1] == (4, reply_id)
    assert (events[-1]["event"], events[-1]["accepted"]) == ("contact_reply", False)


def full_disk(connection, verb: str = "INSERT"):
    """`connection.execute` whose writes (`verb` statements) fail as on a full disk."""
    def execute(sql, *args):
        if sql.lstrip().upper().startswith(verb):
            raise sqlite3.OperationalError("database or disk is full")
        return connection.execute(sql, *args)
    return execute


def test_a_reply_that_answers_no_request_of_ours_changes_nothing(tmp_path):
    part, events, clock, db = requests_part(tmp_path)
    part.on_event(ContactReplied(0, peer(1), bytes(16), bytes(16), True, 0.0))  # we asked nobody
    assert part.unsolicited == 1 and events == []
    # a reply naming our request to another peer changes nothing either
    db.connection.execute(
        "INSERT INTO contact_requests (peer, direction, request_id, note, state, made) "
        "VALUES (?, 'out', ?, '', 'delivered', ?)", (f"{peer(2):040x}", "ab" * 16, time.time()))
    part.on_event(ContactReplied(0, peer(1), bytes(16), bytes.fromhex("ab" * 16), True, 0.0))
    assert part.unsolicited == 2 and events == []
    assert db.connection.execute("SELECT state FROM contact_requests").fetchall() \
        == [("delivered",)]
