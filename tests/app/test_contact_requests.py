"""Contact requests and presence between two real daemons on loopback (real UDP): request ->
accept -> both contacts -> each sees the other's presence -> a status change is seen; a silent
and a told decline; contacts-only mode lets a request through and refuses a stranger's message;
a reply nobody asked for changes nothing; a flood of requests is capped (app/contact_requests.py
with explicit time). Nothing sleeps: every wait is for an event, with a timeout."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

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
    part.driver = SimpleNamespace(loop=clock)
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


def test_a_reply_that_answers_no_request_of_ours_changes_nothing(tmp_path):
    part, events, clock, db = requests_part(tmp_path)
    part.on_event(ContactReplied(0, peer(1), bytes(16), True, 0.0))  # we asked nobody
    assert part.unsolicited == 1 and events == []
    # a reply naming our request to another peer changes nothing either
    db.connection.execute(
        "INSERT INTO contact_requests (peer, direction, request_id, note, state, made) "
        "VALUES (?, 'out', ?, '', 'delivered', ?)", (f"{peer(2):040x}", "ab" * 16, time.time()))
    part.on_event(ContactReplied(0, peer(1), bytes.fromhex("ab" * 16), True, 0.0))
    assert part.unsolicited == 2 and events == []
    assert db.connection.execute("SELECT state FROM contact_requests").fetchall() \
        == [("delivered",)]
