"""The periodic mailbox fetch asks the storers the previous fetch found, with explicit `now`:
no lookup while at least half of the nodes the key's lookup found answer and that lookup is
younger than `republish_interval`; a lookup at a join, at a new epoch's key, when fewer than
half answer, and when the storers are that old, so a message stored after churn at new closest
nodes only is still found within republish_interval + mailbox_interval."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from kadtalk.node.storage import MessageReceived, StorageLayer, StorageSettings, records, wire

from .conftest import WALL, identity

S = StorageSettings()
K = 20
NOON = 12 * 3600.0


@dataclass
class Done:  # what the routing layer's LookupCompleted gives the storage layer
    lookup_id: int
    closest: list[tuple[int, Any]]


class World:
    """Storage layers at addresses with zero latency; every lookup ends at once with the K
    closest online nodes by the IDs given here (so a test places a node anywhere)."""

    def __init__(self, storers: int = K, seed: int = 1):
        self.rng = random.Random(seed)
        self.now = 0.0
        self.ids: dict[Any, int] = {}
        self.layers: dict[Any, StorageLayer] = {}
        self.online: set[Any] = set()
        self.pending: list[tuple[Any, int, int]] = []
        self.asked: list[tuple[float, bytes, Any, bool]] = []  # FIND_VALUEs, dst online
        self.looked: list[tuple[float, int]] = []  # the recipient's lookups (now, target)
        self.recipient = self.add("recipient", identity("cache-recipient"))
        self.sender = self.add("sender", identity("cache-sender"))
        self.key = records.mailbox_key(identity("cache-recipient").node_id,
                                       records.epoch_of(WALL, S.epoch_length))
        for _ in range(storers):
            self.add_storer(self.rng.getrandbits(160))

    def add(self, addr: Any, ident: Any, node_id: int | None = None) -> Any:
        def lookup(target: int, now: float, addr=addr) -> int:
            self.pending.append((addr, len(self.pending) + 1000 * len(self.looked), target))
            if addr == "recipient":
                self.looked.append((now, target))
            return self.pending[-1][1]

        self.layers[addr] = StorageLayer(ident, S, WALL, lookup=lookup, now=self.now)
        self.ids[addr] = self.rng.getrandbits(160) if node_id is None else node_id
        self.online.add(addr)
        return addr

    def add_storer(self, node_id: int) -> Any:
        addr = ("10.0.0.1", len(self.layers) + 1000)
        return self.add(addr, identity(f"cache-storer{len(self.layers) % 48}"), node_id)

    def closest(self, target: int, but: Any = None) -> list[Any]:
        return sorted((a for a in self.online if a not in ("recipient", "sender", but)),
                      key=lambda a: self.ids[a] ^ target)[:K]

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            while self.pending:
                addr, lookup_id, target = self.pending.pop(0)
                if addr in self.online:
                    near = [(self.ids[a], a) for a in self.closest(target, addr)]
                    self.layers[addr].lookup_done(Done(lookup_id, near), self.now)
            for src in list(self.online):
                for data, dst in self.layers[src].datagrams_to_send(self.now):
                    busy = True
                    if src == "recipient" and data[1] == wire.FIND_VALUE:
                        self.asked.append((self.now, data[2:22], dst, dst in self.online))
                    if dst in self.online:
                        self.layers[dst].receive_datagram(data, src, self.now)

    def run_to(self, end: float) -> None:
        self.pump()
        while True:
            times = [t for a in self.online if (t := self.layers[a].get_timer()) is not None]
            if not times or min(times) > end:
                break
            self.now = max(self.now, min(times))
            for a in list(self.online):
                t = self.layers[a].get_timer()
                if t is not None and t <= self.now:
                    self.layers[a].handle_timer(self.now)
            self.pump()
        self.now = end

    @property
    def layer(self) -> StorageLayer:
        return self.layers["recipient"]

    def join(self, at: float = NOON) -> None:
        self.run_to(at)
        self.layer.keep_mailbox([], at)
        self.layer.joined(at)
        self.run_to(at)

    def mailbox_lookups(self, since: float = 0.0, key: bytes | None = None) -> list[float]:
        target = int.from_bytes(key or self.key, "big")
        return [t for t, x in self.looked if x == target and t >= since]

    def asked_at(self, now: float, key: bytes | None = None) -> set[Any]:
        return {a for t, k, a, _ in self.asked if t == now and k == (key or self.key)}

    def send(self, text: bytes) -> None:
        """The sender stores a message sealed to the recipient's prekey at the key's K closest
        online nodes now."""
        prekey = self.layer.prekeys[0][1]
        self.layers["sender"].send_message(self.layer.identity.node_id, prekey, text, self.now)
        self.pump()

    def received(self) -> list[MessageReceived]:
        out = []
        while (event := self.layer.next_event()) is not None:
            if type(event) is MessageReceived:
                out.append(event)
        return out


def test_a_periodic_fetch_asks_the_storers_that_answered_without_a_lookup():
    w = World()
    w.join()
    found = set(w.closest(int.from_bytes(w.key, "big")))
    assert w.mailbox_lookups() == [NOON] and w.asked_at(NOON) == found
    nxt = NOON + S.mailbox_interval
    w.run_to(nxt)
    assert w.mailbox_lookups(NOON + 1) == []  # no lookup
    assert w.asked_at(nxt) == found  # FIND_VALUE straight to the 20 storers
    assert w.layer.stats["mailbox_direct"] == 1
    # three storers leave: asked once more, then no longer (they did not answer)
    gone = set(sorted(found, key=repr)[:3])
    w.online -= gone
    w.run_to(nxt + S.mailbox_interval)
    assert w.asked_at(nxt + S.mailbox_interval) == found
    w.run_to(nxt + 2 * S.mailbox_interval)
    assert w.asked_at(nxt + 2 * S.mailbox_interval) == found - gone
    assert w.mailbox_lookups(NOON + 1) == []
    # the join's fetch was the one lookup; three periodic fetches: FIND_VALUEs only
    assert w.layer.stats["mailbox_lookups"] == 1 and w.layer.stats["mailbox_direct"] == 3


def test_fewer_than_half_answering_starts_a_lookup_at_once_and_asks_what_it_finds():
    w = World()
    w.join()
    found = sorted(w.closest(int.from_bytes(w.key, "big")), key=repr)
    w.online -= set(found[:11])  # 9 of the 20 stay: fewer than half
    newcomers = {w.add_storer(w.rng.getrandbits(160)) for _ in range(30)}
    at = NOON + S.mailbox_interval
    w.run_to(at + S.request_timeout)
    assert w.asked_at(at) == set(found)  # the cached storers first (11 do not answer) ...
    assert w.mailbox_lookups(NOON + 1) == [at + S.request_timeout]  # ... then a lookup
    now = set(w.closest(int.from_bytes(w.key, "big")))
    assert w.asked_at(at + S.request_timeout) == now and now & newcomers
    assert w.layer.stats["mailbox_fallbacks"] == 1
    # the lookup's answers are the storers from now on
    w.run_to(at + S.mailbox_interval)
    assert w.asked_at(at + S.mailbox_interval) == now
    assert len(w.mailbox_lookups(NOON + 1)) == 1


def test_exactly_half_answering_keeps_the_storers():
    w = World()
    w.join()
    found = sorted(w.closest(int.from_bytes(w.key, "big")), key=repr)
    w.online -= set(found[:10])
    w.run_to(NOON + 2 * S.mailbox_interval)
    assert w.mailbox_lookups(NOON + 1) == []
    assert w.asked_at(NOON + 2 * S.mailbox_interval) == set(found[10:])


def test_a_new_epoch_and_the_sweep_look_up_their_keys():
    w = World()
    late = 22 * 3600.0
    w.join(late)
    tomorrow = records.mailbox_key(w.layer.identity.node_id,
                                   records.epoch_of(WALL, S.epoch_length) + 1)
    w.run_to(late + S.republish_interval - 1)
    # today's key: looked up at the join, then asked directly
    assert w.mailbox_lookups(key=w.key) == [late] and not w.mailbox_lookups(key=tomorrow)
    assert w.layer.stats["mailbox_direct"] == S.republish_interval // S.mailbox_interval - 1
    w.run_to(27 * 3600.0)
    # tomorrow's key, fetched from 23:00 on (a sender's clock may be ahead by clock_skew):
    # looked up at its first fetch, then asked directly
    first = w.mailbox_lookups(key=tomorrow)[0]
    assert first == 23 * 3600.0
    # then once per republish_interval (the storers' age limit), none between
    looked = w.mailbox_lookups(key=tomorrow)
    assert all(b - a >= S.republish_interval for a, b in zip(looked, looked[1:]))
    assert len(looked) <= 1 + (27 * 3600 - first) // S.republish_interval
    # the daily sweep fetches every epoch with a lookup
    sweep = late + S.mailbox_sweep
    w.run_to(sweep)
    assert sweep in w.mailbox_lookups(key=tomorrow)


def test_a_message_stored_after_churn_at_new_closest_nodes_only_is_found_within_the_bound():
    """The worst case for the storers kept: all 20 stay online and answer, yet 21 newcomers
    closer to the key take the message (the sender's lookup finds 20 of them; their
    republication, to the 20 closest others, keeps it among themselves). The storers are asked
    without a lookup only while the lookup that found them is younger than republish_interval:
    a lookup then finds the newcomers."""
    w = World()
    w.join()
    target = int.from_bytes(w.key, "big")
    for i in range(K + 1):
        w.add_storer(target ^ (i + 1))  # closer than any node the join's lookup found
    w.run_to(NOON + 60)
    sent = w.now
    w.send(b"after churn")
    holders = {a for a in w.online if w.layers[a].store.by_key.get(w.key)}
    assert holders and all(w.ids[a] ^ target <= K + 1 for a in holders)
    bound = S.republish_interval + S.mailbox_interval
    got = []
    while not got and w.now < sent + bound + 10:
        w.run_to(w.now + 30)
        got = w.received()
    assert got and got[0].plaintext == b"after churn"
    assert got[0].at - sent <= bound
    assert w.mailbox_lookups(NOON + 1)  # found by a lookup, the direct fetches missed it
    assert got[0].at >= NOON + S.republish_interval


def test_a_message_stored_after_some_churn_is_found_by_the_next_direct_fetch():
    """Ten newcomers closer to the key: the sender stores at them and the ten closest of the
    storers kept, which the next periodic fetch asks."""
    w = World()
    w.join()
    target = int.from_bytes(w.key, "big")
    for i in range(10):
        w.add_storer(target ^ (i + 1))
    w.run_to(NOON + 60)
    w.send(b"some churn")
    w.run_to(NOON + S.mailbox_interval + S.request_timeout)
    got = w.received()
    assert [m.plaintext for m in got] == [b"some churn"]
    assert w.mailbox_lookups(NOON + 1) == []


# -- the storers' state under any churn (hypothesis) ---------------------------------------------

steps = st.lists(st.tuples(st.sampled_from(["leave", "return", "arrive", "wait", "send"]),
                           st.integers(0, 10**6)), min_size=1, max_size=25)


@hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_storers_kept_obey_the_rule_whatever_the_churn(plan):
    """From the log of today's key: every fetch without a lookup comes within republish_interval
    of the key's last lookup and asks only nodes that answered the fetch before; a fetch that
    fewer than half of the last lookup's nodes answered is followed by a lookup at once; there
    is no other lookup of the key but the join's and the age limit's."""
    w = World(seed=plan[0][1])
    w.join()
    target = int.from_bytes(w.key, "big")
    gone: list[Any] = []
    end = NOON + 3 * S.republish_interval
    for what, n in plan:
        storers = sorted((a for a in w.online if a not in ("recipient", "sender")), key=repr)
        if what == "leave" and len(storers) > 1:
            leaving = storers[n % len(storers)]
            w.online.discard(leaving)
            gone.append(leaving)
        elif what == "return" and gone:
            w.online.add(gone.pop(n % len(gone)))
        elif what == "arrive":
            w.add_storer(target ^ (n % 2**40) if n % 2 else w.rng.getrandbits(160))
        elif what == "send":
            w.send(b"m%d" % n)
        w.run_to(min(end, w.now + 30 + n % 900))
    w.run_to(end)
    looks = w.mailbox_lookups()
    fetches = sorted({t for t, k, _, _ in w.asked if k == w.key})
    assert looks[0] == NOON == fetches[0]
    found = answered = 0
    previous: set[Any] = set()
    fell_back = None
    for t in fetches:
        asked = {(a, up) for at, k, a, up in w.asked if at == t and k == w.key}
        if t in looks:
            assert t == NOON or t == fell_back or t - last >= S.republish_interval
            last, found = t, len(asked)
        else:
            assert t - last < S.republish_interval and {a for a, _ in asked} <= previous
        previous = {a for a, up in asked if up}
        fell_back = t + S.request_timeout if 2 * len(previous) < found else None
        if fell_back is not None and fell_back <= end:
            assert fell_back in looks
    assert w.layer.stats["mailbox_lookups"] == len(looks)
