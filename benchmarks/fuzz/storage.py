"""Storage target (0x0a: STORE ... DELETED) through a storer holding values and a client with
a store, a fetch and a delete in flight.

The storer holds values under one key from two authors; inputs come from a validated address,
an unproven one, or any address, and some are freshly signed STOREs or DELETEs (so values come
and go against the quotas); the same bytes also reach the client as answers, from a node its
operations wait for. Rates are opened wide so that every input reaches the checks behind them.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import WIDE, Target, Violation, datagrams
from kadtalk.node.identity import Identity, verify
from kadtalk.node.storage import StorageLayer, StorageSettings, records, wire

WALL = 1_767_225_600.0
FAST = StorageSettings(
    max_values=24, max_bytes=12_000, max_per_author=8, max_author_bytes=6_000, max_per_key=16,
    max_tombstones=32, verify_rate=WIDE, verify_burst=WIDE, source_rate=WIDE,
    source_burst=WIDE, find_rate=WIDE, find_burst=WIDE, max_sources=64, request_timeout=1.0,
    republish_interval=5.0, ttl=600, clock_skew=60, epoch_length=86_400,
)
PROVEN, STRANGER, NODE = ("198.51.100.1", 5004), ("203.0.113.3", 5004), ("203.0.113.9", 5004)


class Completed:
    """A stand-in for the routing layer's LookupCompleted: one node close to every key."""

    def __init__(self, lookup_id: int):
        self.lookup_id = lookup_id
        self.closest = ((7, NODE),)


class StorageState:
    def __init__(self) -> None:
        self.identities = [Identity.generate() for _ in range(3)]
        self.lookups: list[int] = []
        self.storer = StorageLayer(self.identities[0], FAST, WALL,
                                   validated=lambda addr: addr == PROVEN)
        self.client = StorageLayer(self.identities[1], FAST, WALL, lookup=self._lookup)
        self.now = 0.0
        alice, bob = self.identities[1], self.identities[2]
        self.epoch = records.epoch_of(WALL, FAST.epoch_length)
        self.key = records.mailbox_key(bob.node_id, self.epoch)
        self.values = [records.make(author, self.key, wire.MAILBOX, int(WALL + 300), i,
                                    b"\x01box %d" % i) for i, author in enumerate((alice, bob))]
        for rec in self.values:
            self.storer.receive_datagram(wire.store(self.key, rec), NODE, 0.0)
        self.storer.datagrams_to_send(0.0)
        vid = records.read(self.key, self.values[0]).vid
        self.seeds = [
            wire.store(self.key, self.values[0]), wire.stored(self.key, vid, wire.OK),
            wire.find_value(self.key, bytes(8), 0, 300),
            wire.found(self.key, bytes(8), 2, wire.NO_MORE, self.values),
            records.make_delete(bob, self.epoch, [vid]), wire.deleted(self.key, 1),
        ]
        self.busy()

    def _lookup(self, target: int, now: float) -> int:
        self.lookups.append(len(self.lookups))
        return self.lookups[-1]

    def busy(self) -> None:
        """The client: a store, a fetch and a delete waiting for NODE."""
        client, now = self.client, self.now
        client.put(self.key, self.values[0], now)
        client.fetch(self.key, now)
        client.acknowledge(self.epoch, [bytes(16)], now)
        while self.lookups:
            client.lookup_done(Completed(self.lookups.pop()), now)
        client.datagrams_to_send(now)


def storage_strategy(state: StorageState) -> st.SearchStrategy:
    sized = st.builds(lambda op, body: bytes([wire.STORAGE, op]) + body, st.integers(0, 8),
                      st.binary(max_size=80))
    exact = st.sampled_from(state.seeds).flatmap(  # a valid layout, fields random
        lambda seed: st.binary(min_size=len(seed) - 2, max_size=len(seed) - 2).map(
            lambda body: seed[:2] + body))
    return st.tuples(
        st.one_of(exact, datagrams(state.seeds, [wire.STORAGE], 1500), sized),
        st.integers(0, 2),  # source: proven, stranger, any address
        st.integers(0, 7),  # 0: a signed STORE, 1: a signed DELETE, 2: a FIND_VALUE for the
        # held key (random size), 3: a held value with one byte changed (a forgery)
        st.booleans(),  # also hand it to the client, as if from NODE
    )


def run_storage(state: StorageState, item: tuple) -> None:
    data, which, extra, to_client = item
    storer, client = state.storer, state.client
    state.now += 0.05
    now = state.now
    addr: Any = (PROVEN, STRANGER, ("192.0.2.%d" % (len(data) % 250 + 1), 4000))[which]
    if extra == 0:
        author = state.identities[len(data) % 3]
        data = wire.store(state.key, records.make(author, state.key, wire.MAILBOX,
                                                  int(WALL + now + 100), len(data), data[:200]))
    elif extra == 1:
        data = records.make_delete(state.identities[2], state.epoch, [data[:16].ljust(16, b"\0")])
    elif extra == 2:
        data = wire.find_value(state.key, data[:8].ljust(8, b"\0"), 0, 35 + len(data) % 400)
    elif extra == 3 and data:
        rec = bytearray(state.values[len(data) % 2])
        rec[len(data) % len(rec)] ^= data[0] | 1
        data = wire.store(state.key, bytes(rec))
    drops = sum(storer.drop_counts().values())
    storer.receive_datagram(data, addr, now)
    if not wire.well_formed(data) and sum(storer.drop_counts().values()) != drops + 1:
        raise Violation("a malformed storage datagram is not one counted drop")
    timer = storer.get_timer()
    if timer is not None and timer <= now:
        storer.handle_timer(now)
    for out, dst in storer.datagrams_to_send(now):
        if dst != addr:
            raise Violation("the storer sent to another address than the request's")
        if len(out) > len(data) and addr != PROVEN:
            raise Violation("a storage answer larger than its request to an unproven address")
        if len(out) > wire.MAX_ANSWER:
            raise Violation("an answer over MAX_ANSWER")
    store = storer.store
    if (len(store) > FAST.max_values or store.bytes > FAST.max_bytes
            or len(store.tombstones) > FAST.max_tombstones
            or any(n > FAST.max_per_author for n in store.per_author.values())
            or store.bytes != sum(len(h.value.raw) for h in store.values.values())):
        raise Violation("a quota or the byte count broke")
    for held in store.values.values():
        v = held.value  # checked here with identity.verify itself, not the layer's helper
        if not verify(v.spki, wire.parse_record(v.raw).signature,
                      wire.signed_value(v.key, v.kind, v.expiry, v.sequence, v.body)):
            raise Violation("a value its author did not sign was stored")
    if to_client:
        client.receive_datagram(data, NODE, now)
    timer = client.get_timer()
    if timer is not None and timer <= now:
        client.handle_timer(now)
    for out, dst in client.datagrams_to_send(now):
        if dst != NODE:
            raise Violation("the client sent to a node its lookup did not name")
    while client.next_event() is not None:
        pass
    if not client._ops:
        state.busy()


TARGETS = [
    Target(
        "storage",
        "value storage (0x0a) through a storer holding values and a busy client",
        StorageState,
        storage_strategy,
        run_storage,
    ),
]
