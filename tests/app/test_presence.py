"""app/presence.py with explicit time: a stranger's PRESENCE is a counted drop, a contact not
heard from for PRESENCE_TTL is shown (and announced) offline, and the dialling for presence is
bounded (FANOUT a round, one per contact per REDIAL s, none to a contact with a session)."""

from __future__ import annotations

from types import SimpleNamespace

from kadtalk.app.history import HistoryDB
from kadtalk.app.presence import FANOUT, PRESENCE_TTL, REDIAL, Presence
from kadtalk.node.routing.events import Joined
from kadtalk.node.session import SessionOpened
from kadtalk.node.session.presence import AWAY, BUSY, PresenceReceived
from kadtalk.node.session.state import CallState


class Loop:
    def __init__(self):
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_later(self, delay, callback):
        return SimpleNamespace(cancel=lambda: None)


class Layer:
    def __init__(self):
        self.sessions: dict[int, SimpleNamespace] = {}
        self.told: list[int] = []

    def set_presence(self, status, now):
        self.told.append(status)


class Node:
    def __init__(self):
        self.session = Layer()
        self.called: list[int] = []

    def session_layer(self):
        return self.session

    def call(self, peer_id, now, chat=False):
        assert chat
        self.called.append(peer_id)


def part(tmp_path, contacts: int = 2):
    by_id = {f"{(1 << 159) | i:040x}": f"c{i}" for i in range(contacts)}
    callers = SimpleNamespace(name_of=by_id.get, contacts=SimpleNamespace(by_id=by_id))
    db = HistoryDB.open(tmp_path / "history.sqlite3")
    history = SimpleNamespace(db=db, path=db.path)
    events: list[dict] = []
    presence = Presence(callers, history, events.append)
    presence.driver = SimpleNamespace(loop=Loop(), node=Node(), service=lambda: None)
    presence.start()
    return presence, events, list(by_id)


def test_a_strangers_presence_is_dropped_and_counted(tmp_path):
    presence, events, peers = part(tmp_path)
    presence.on_event(PresenceReceived(0, 12345, AWAY, 0.0))
    assert presence.ignored == 1 and events == [] and presence.peers == {}
    presence.on_event(PresenceReceived(0, int(peers[0], 16), AWAY, 0.0))
    assert [(e["peer"], e["status"]) for e in events] == [(peers[0], "away")]


def test_a_contact_not_heard_from_is_shown_offline_after_the_ttl(tmp_path):
    presence, events, peers = part(tmp_path)
    loop = presence.driver.loop
    presence.on_event(PresenceReceived(0, int(peers[0], 16), BUSY, 0.0))
    loop.now = PRESENCE_TTL - 1
    presence._check()
    assert presence.of(peers[0])["status"] == "busy" and len(events) == 1
    # a live session keeps it current however long it lasts
    layer = presence.driver.node.session
    layer.sessions[1] = SimpleNamespace(peer_int=int(peers[0], 16), state=CallState.OPEN)
    loop.now = 3 * PRESENCE_TTL
    assert presence.of(peers[0])["status"] == "busy"
    del layer.sessions[1]
    loop.now = 4 * PRESENCE_TTL + 1
    presence._check()
    assert presence.of(peers[0])["status"] == "offline"
    assert events[-1]["status"] == "offline" and events[-1]["inferred"] is True
    presence._check()
    assert len(events) == 2  # told once
    # a contact never heard from is offline, with no time
    assert presence.of(peers[1]) == {"status": "offline", "last_seen": None}


def test_dialling_for_presence_is_bounded(tmp_path):
    presence, events, peers = part(tmp_path, contacts=FANOUT + 10)
    node, loop = presence.driver.node, presence.driver.loop
    presence.on_event(Joined(0.0, 5, 1, 0))
    assert len(node.called) == FANOUT  # the first join: one round, FANOUT at most
    presence.on_event(Joined(1.0, 5, 1, 0))
    assert len(node.called) == FANOUT  # a later join is no new round
    # a status change: the rest, but not those dialled within REDIAL s
    loop.now = 10.0
    presence.cmd_presence(None, {"status": "away"})
    assert len(node.called) == FANOUT + 10 and len(set(node.called)) == FANOUT + 10
    loop.now = 20.0
    presence.cmd_presence(None, {"status": "busy"})
    assert len(node.called) == FANOUT + 10  # everyone was dialled within REDIAL
    # after REDIAL, contacts with a live session are not dialled again
    loop.now = 10.0 + REDIAL + 1
    layer = node.session
    for i, peer in enumerate(peers):
        layer.sessions[i] = SimpleNamespace(peer_int=int(peer, 16), state=CallState.OPEN)
    presence.cmd_presence(None, {"status": "online"})
    assert len(node.called) == FANOUT + 10
    # every change went to the session layer at once (1 online, 2 busy: STATUSES' order)
    assert layer.told == [0, 1, 2, 0]


def test_the_status_is_kept_across_restarts(tmp_path):
    presence, _, _ = part(tmp_path)
    presence.cmd_presence(None, {"status": "busy"})
    presence.history.db.close()
    again, _, _ = part(tmp_path)
    assert again.status == "busy" and again.driver.node.session.told == [2]
    # a session that opens with a contact counts as hearing from it
    peer = next(iter(again.callers.contacts.by_id))
    again.on_event(PresenceReceived(0, int(peer, 16), AWAY, 0.0))
    again.driver.loop.now = PRESENCE_TTL + 5
    again.on_event(SessionOpened(1, int(peer, 16), PRESENCE_TTL + 5))
    assert again.of(peer)["status"] == "away"
