"""Contact requests to offline peers (app/contact_requests.py): retried with back-off and sealed
into the peer's DHT mailbox like a message. Between real daemons on loopback: a asks b while b
is stopped, then stops too; b comes back and finds the request in its mailbox, accepts while a
is away; a comes back and learns it was accepted. The back-off with explicit time, and a
request that arrives both ways shown once."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from kadtalk.app import contact_requests
from kadtalk.app.contact_requests import RETRY_FIRST, RETRY_MAX, ContactRequests
from kadtalk.app.history import HistoryDB
from kadtalk.node.routing.events import Joined
from kadtalk.node.session import MessageDelivered
from kadtalk.node.session.presence import encode_request
from kadtalk.node.storage import records

from .conftest import start_daemon
from .test_offline_messages import joined, mailed, until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 150))


def event(kind: str, **fields):
    return lambda e: e.get("event") == kind and all(e.get(k) == v for k, v in fields.items())


def test_a_request_to_a_stopped_daemon_is_mailed_and_answered_while_each_is_away(
        sock_root, monkeypatch):
    monkeypatch.setattr(contact_requests, "RETRY_FIRST", 1.0)

    async def scenario():
        s = await start_daemon(sock_root, "s")  # bootstrap and storer
        daemons, clients = [s], []
        try:
            a, ca = await joined(sock_root, "a", s)
            b, cb = await joined(sock_root, "b", s)
            daemons += [a, b]
            clients += [ca, cb]
            a_id, b_id = a.node_id, b.node_id
            for d in (a, b):  # each published its prekey at its join
                key = records.prekey_key(bytes.fromhex(d.node_id))
                await until(lambda k=key: s.driver.node.storage.store.by_key.get(k))

            # b stops; a asks: no session, so the retry a second later mails the request
            await cb.close()
            await b.stop()
            daemons.remove(b)
            clients.remove(cb)
            sent = await ca.request("contact_request", to=b_id, name="Bob", note="from the choir")
            assert sent["state"] == "pending"
            await ca.wait_event(event("contact_request_stored", peer=b_id), timeout=60)
            mine = (await ca.request("contact_requests"))["outgoing"]
            assert [(r["peer"], r["state"]) for r in mine] == [(b_id, "stored")]
            assert a.requests.retry_at == {}  # storers hold it: no further tries in this run

            # a stops too; b comes back: the request is in its mailbox (from a, signed)
            await ca.close()
            clients.remove(ca)
            await a.stop()
            daemons.remove(a)
            start = time.monotonic()
            b, cb = await joined(sock_root, "b", s)
            daemons.append(b)
            clients.append(cb)
            got = await cb.wait_event(event("contact_request", peer=a_id), timeout=30)
            print(f"b's restart -> the request from its mailbox: {time.monotonic() - start:.1f} s")
            assert (got["request_id"], got["note"]) == (sent["request_id"], "from the choir")

            # b accepts while a is away: the reply goes to a's mailbox the same way
            await cb.request("contact_accept", peer=a_id, name="Alice")
            await until(lambda: any(k[1] != sent["request_id"] for k in b.requests.stored), 60)
            assert len(mailed(s, b)) == 1  # the reply, sealed for a

            # b restarts before a is back: its reply's `reply_stored` outlasts the run, so
            # the retry sends it live once and seals no second copy (history step 7)
            reply_id = b.requests._row(a_id, "in")["reply_id"]
            shown = len([e for e in cb.seen if e.get("event") == "contact_request"])
            await cb.close()
            clients.remove(cb)
            await b.stop()
            daemons.remove(b)
            b, cb = await joined(sock_root, "b", s)
            daemons.append(b)
            clients.append(cb)
            await until(lambda: (a_id, reply_id) in b.requests.stored, 30)  # the retry ran
            await until(lambda: b.requests.retry_at == {}, 30)  # and the next found it held
            assert len(mailed(s, b)) == 1

            a, ca = await joined(sock_root, "a", s)
            daemons.append(a)
            clients.append(ca)
            reply = await ca.wait_event(event("contact_reply", peer=b_id), timeout=30)
            assert reply["accepted"] and reply["name"] == "Bob"
            assert [c["name"] for c in (await ca.request("contacts"))["contacts"]] == ["Bob"]
            assert [c["name"] for c in (await cb.request("contacts"))["contacts"]] == ["Alice"]
            # shown once at b, though a's restart sent it live too (it was still `stored`)
            assert shown + len([e for e in cb.seen if e.get("event") == "contact_request"]) == 1
        finally:
            for client in clients:
                await client.close()
            for daemon in reversed(daemons):
                await daemon.stop()

    run(scenario())


class Loop:
    def __init__(self):
        self.now = 0.0
        self.timers: list = []

    def time(self):
        return self.now

    def call_later(self, delay, callback):
        handle = SimpleNamespace(at=self.now + delay, callback=callback, cancelled=False)
        handle.cancel = lambda: setattr(handle, "cancelled", True)
        self.timers.append(handle)
        return handle

    def run_to(self, end):
        while True:
            due = [t for t in self.timers if not t.cancelled and t.at <= end]
            if not due:
                break
            first = min(due, key=lambda t: t.at)
            self.timers.remove(first)
            self.now = first.at
            first.callback()
        self.now = end


class Mailbox:
    def __init__(self):
        self.frames = None
        self.mailed: list[tuple[float, str]] = []

    def mail_frame(self, peer, frame_id, frame):
        self.mailed.append((self.loop.now, frame_id))


def part(tmp_path):
    """ContactRequests on a fake node (every send finds no session) and a fake mailbox."""
    db = HistoryDB.open(tmp_path / "history.sqlite3")
    history = SimpleNamespace(db=db, path=tmp_path, write_errors=0)
    callers = SimpleNamespace(name_of=lambda peer: None, blocked=set())
    events: list[dict] = []
    requests = ContactRequests(callers, history, SimpleNamespace(block=[]), events.append)
    loop = Loop()
    sent: list[tuple[float, bytes]] = []
    layer = SimpleNamespace(send_frame=lambda peer, fid, frame, now: sent.append((now, fid)))
    requests.driver = SimpleNamespace(
        loop=loop, service=lambda: None, node=SimpleNamespace(
            node_id=1, session_layer=lambda: layer, call=lambda *a, **k: 1))
    mailbox = Mailbox()
    mailbox.loop = loop
    requests.use_mailbox(mailbox)
    return requests, loop, sent, mailbox, events


def test_an_unanswered_request_is_retried_with_back_off_and_mailed_until_storers_hold_it(
        tmp_path):
    requests, loop, sent, mailbox, events = part(tmp_path)
    peer = "ab" * 20
    request_id = requests.cmd_contact_request(None, {"to": peer, "note": "hi"})["request_id"]
    assert [t for t, _ in sent] == [0.0, 0.0]  # at once (the second after opening a session)
    loop.run_to(RETRY_FIRST * 7.5)
    tries = [t for t, _ in mailbox.mailed]
    # 30, 90, 210 s: each retry after twice the wait before it; mailed each time (no prekey)
    assert tries == [RETRY_FIRST, RETRY_FIRST * 3, RETRY_FIRST * 7]
    assert all(fid == request_id for _, fid in mailbox.mailed)
    assert [t for t, _ in sent][2::2] == tries  # and sent again live each time
    loop.run_to(3 * 24 * 3600)
    gaps = [b - a for (a, _), (b, _) in zip(mailbox.mailed, mailbox.mailed[1:])]
    assert max(gaps) == RETRY_MAX and gaps == sorted(gaps)  # capped at an hour

    # storers took it: state `stored`, and no retry after the one running
    requests.mailed(peer, request_id, True)
    assert requests.cmd_contact_requests(None, {})["outgoing"][0]["state"] == "stored"
    assert events[-1]["event"] == "contact_request_stored"
    count = len(mailbox.mailed)
    loop.run_to(loop.now + 10 * RETRY_MAX)
    assert len(mailbox.mailed) == count and requests.retry_at == {}


def test_a_request_from_the_mailbox_and_a_session_is_shown_once_and_a_receipt_ends_retries(
        tmp_path):
    requests, loop, sent, mailbox, events = part(tmp_path)
    peer = "cd" * 20
    request_id = bytes(range(16))
    frame = encode_request(request_id, "hello")
    assert requests.from_mailbox(peer, frame) and requests.from_mailbox(peer, frame)
    requests._requested(peer, request_id.hex(), "hello")  # the same, live
    assert [e["event"] for e in events] == ["contact_request"]
    assert requests.from_mailbox(peer, b"\x0a\x00") and requests.dropped == 1  # malformed

    # our own request: its RECEIPT (delivered) ends the retries
    other = "ef" * 20
    mine = requests.cmd_contact_request(None, {"to": other})["request_id"]
    requests.on_event(MessageDelivered(0, int(other, 16), bytes.fromhex(mine), 0.0))
    loop.run_to(10 * RETRY_MAX)
    assert mailbox.mailed == [] and requests.retry_at == {}


def test_a_failed_mail_is_mailed_again_at_the_next_retry(tmp_path):
    requests, loop, sent, mailbox, events = part(tmp_path)
    peer = "12" * 20
    request_id = requests.cmd_contact_request(None, {"to": peer})["request_id"]
    loop.run_to(RETRY_FIRST)
    requests.mailed(peer, request_id, False)  # no prekey yet: the peer was never online
    loop.run_to(RETRY_FIRST * 3)
    assert [t for t, _ in mailbox.mailed] == [RETRY_FIRST, RETRY_FIRST * 3]


def test_a_request_storers_hold_is_not_mailed_again_after_a_restart(tmp_path):
    """Its `stored` state outlasts the run: the next run's retry sends it live once, and seals
    and stores no new copy (each restart used to add one at the storers)."""
    requests, loop, sent, mailbox, events = part(tmp_path)
    peer = "34" * 20
    request_id = requests.cmd_contact_request(None, {"to": peer})["request_id"]
    loop.run_to(RETRY_FIRST)
    requests.mailed(peer, request_id, True)
    assert [fid for _, fid in mailbox.mailed] == [request_id]
    requests.history.db.close()

    for _ in range(3):  # three restarts over the same history database
        requests, loop, sent, mailbox, events = part(tmp_path)
        requests.on_event(Joined(0.0, 8, 1, 0))
        assert requests.waiting_peers() == [peer]  # dialled at the join, as before
        loop.run_to(10 * RETRY_MAX)
        assert mailbox.mailed == []  # not sealed nor stored again
        assert [(t, fid.hex()) for t, fid in sent][::2] == [(RETRY_FIRST, request_id)]  # live
        assert requests.retry_at == {}
        assert requests.cmd_contact_requests(None, {})["outgoing"][0]["state"] == "stored"
        requests.history.db.close()


def test_a_reply_storers_hold_is_not_mailed_again_after_a_restart(tmp_path):
    """Our reply to a request (here a told decline) that storers hold: its `reply_stored`
    (history step 7) outlasts the run, so each later run's retry sends it live once and seals
    and stores no new copy (before, each restart stored one more)."""
    requests, loop, sent, mailbox, events = part(tmp_path)
    peer = "56" * 20
    requests._requested(peer, bytes(range(16)).hex(), "may I?")
    assert requests.cmd_contact_decline(None, {"peer": peer, "tell": True})["told"]
    loop.run_to(RETRY_FIRST)
    ((_, reply_id),) = mailbox.mailed
    assert requests._row(peer, "in")["reply_id"] == reply_id
    requests.mailed(peer, reply_id, True)
    assert requests._row(peer, "in")["reply_stored"] == 1
    requests.history.db.close()

    for _ in range(3):  # three restarts over the same history database
        requests, loop, sent, mailbox, events = part(tmp_path)
        requests.on_event(Joined(0.0, 8, 1, 0))
        assert requests.waiting_peers() == [peer]  # dialled at the join: it waits its receipt
        loop.run_to(10 * RETRY_MAX)
        assert mailbox.mailed == []  # not sealed nor stored again
        assert [(t, fid.hex()) for t, fid in sent][::2] == [(RETRY_FIRST, reply_id)]  # live
        assert requests.retry_at == {}
        requests.history.db.close()

    # its receipt at last: nothing waits any more
    requests, loop, sent, mailbox, events = part(tmp_path)
    requests.on_event(MessageDelivered(0, int(peer, 16), bytes.fromhex(reply_id), 0.0))
    assert requests.waiting_peers() == [] and requests._row(peer, "in")["state"] == "declined"
    requests.history.db.close()
