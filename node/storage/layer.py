"""The storage layer (0x0a): Kademlia value storage for offline messages and prekeys, with the
surface of node/layer.py.

Storer role: STORE, FIND_VALUE and DELETE from anyone, answered to the datagram's source and
never larger than the request unless the routing layer has validated that address (§5.4 of
docs/protocol.md): STORED (39 bytes) is smaller than any STORE, DELETED (23) than any DELETE,
and FOUND fills at most the FIND_VALUE's own size (the asker pads; a validated address gets a
full page). Cheap checks, quotas and a meter come before any signature check. Held values are
republished to the key's k closest nodes every `republish_interval` and expire at the expiry
their author signed (capped at `ttl`).

Client role: `put` / `fetch` / `acknowledge` find the k closest nodes to a key with the routing
layer's find-closest lookup (the `lookup` callback; `lookup_done` takes its result), then talk
to them directly. Prekeys and sealed messages sit on top: `publish_prekey`, `fetch_prekey`,
`send_message`, `fetch_mailbox`, and MessageReceived for each box that opens.

Offline messages (`mail`, `keep_mailbox`): a sender's `mail` fetches the recipient's prekey
(only one its identity signed, under its own prekey key), seals the message to it and stores it
in the mailbox: MailStored or MailFailed. A recipient whose owner called `keep_mailbox` (the
kept prekeys given back) publishes its prekey at each join (the newest kept one while it is
younger than `prekey_rotation`, else a new one: PrekeyMade, stored by its owner's `keep` before
it is published) and fetches its mailbox then (every epoch that may hold an unexpired box
sealed to a prekey it holds) and every `mailbox_interval` (only the epochs a box stored since
the last fetch can be under: one, near midnight two; every epoch again every `mailbox_sweep`).
Such a periodic fetch of a key a lookup fetched less than `republish_interval` ago asks the
storers that answered last time directly (FIND_VALUEs, no lookup); a lookup finds the key's
k closest again when fewer than half of those the lookup found still answer
(`_remember_storers`). A value it
acknowledged (in this run or, as its owner tells, an earlier one) that a storer still returns
is acknowledged again.
"""

from __future__ import annotations

import collections
import heapq
import os
from random import Random
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..identity import node_id_of
from ..ratelimit import FloodGuard
from . import records, sealed, wire
from .events import (MailFailed, MailStored, MessageReceived, PrekeyFound, PrekeyMade,
                     StorageEvent, StoreFailed, ValuesDeleted, ValuesFound, ValueStored)
from .records import Value
from .settings import DEFAULT_SETTINGS, StorageSettings
from .store import ValueStore

DROPS = frozenset({
    "malformed", "bad_kind", "expired", "too_long", "wrong_key", "rate_limited",
    "rate_limited_source", "bad_signature", "quota", "full", "stale", "gone", "not_owner",
    "unsolicited", "answer_cut", "bad_value", "unopenable", "sender_mismatch", "over_quota",
    "unopenable_storer",
})
LOOKUP_WAIT = 60.0  # s an operation waits for its lookup at most (lookups end far sooner)
MAX_PAGES = 64  # FOUND pages one node may make us ask for in one fetch
SEEN_LIMIT = 4096  # message ids remembered so that a copy is reported once

Lookup = Callable[[int, float], "int | None"]
Keeper = Callable[[bytes, bytes, float], bool]


class _Op:
    __slots__ = ("id", "sent", "kind", "key", "records", "vids", "epoch", "purpose", "targets",
                 "waits", "deadline", "statuses", "values", "answered", "confirmed", "datagram",
                 "pages", "got", "opened", "again", "reused")

    def __init__(self, kind: str, key: bytes, deadline: float):
        self.id = -1
        self.sent = False  # requests went out (the lookup, if any, is over)
        self.kind = kind  # store, republish, fetch, delete
        self.key = key
        self.records: list[bytes] = []
        self.vids: tuple[bytes, ...] = ()
        self.epoch = 0
        self.purpose: Any = None  # fetch: None, ("prekey", node ID) or ("mailbox", epoch)
        self.targets: list[Any] = []
        self.waits: set[tuple[Any, bytes]] = set()
        self.deadline = deadline
        self.statuses: collections.Counter[int] = collections.Counter()
        self.values: dict[bytes, Value] = {}
        self.answered: set[Any] = set()
        self.confirmed = 0
        self.datagram = b""
        self.pages: collections.Counter[Any] = collections.Counter()  # FOUNDs per node
        self.got: collections.Counter[Any] = collections.Counter()  # new records per node
        self.opened: set[Any] = set()  # nodes one of whose records opened (mailbox fetch)
        self.again: list[bytes] = []  # values acknowledged before that a node still holds
        self.reused: _Storers | None = None  # a mailbox fetch that asked these, no lookup


class _Storers:
    """The nodes that answered the last fetch of one of our mailbox keys, for the periodic
    fetches after it (`StorageLayer._fetch_storers`)."""
    __slots__ = ("found_at", "found", "addrs")

    def __init__(self, found_at: float, found: int, addrs: list[Any]):
        self.found_at = found_at  # `now` of the lookup that found the key's closest nodes
        self.found = found  # how many it found (the half of it must still answer)
        self.addrs = addrs  # those of them that answered the last fetch, closest first


class StorageLayer:
    def __init__(self, identity: Any, settings: StorageSettings | None = None,
                 clock_offset: float = 0.0, lookup: Lookup | None = None,
                 closest: Callable[[int, int], list[tuple[int, Any]]] | None = None,
                 addr_to_wire: Callable[[Any], bytes | None] | None = None,
                 validated: Callable[[Any], bool] | None = None,
                 random_bytes: Callable[[int], bytes] = os.urandom, now: float = 0.0,
                 rng: Random | None = None):
        """`lookup(target, now)` starts a find-closest lookup and returns its id (None: busy);
        `closest(target, count)` reads the routing table; `validated(addr)`: the address has
        proven it receives our datagrams (full FOUND pages). `clock_offset` turns `now` into
        Unix seconds (expiries and epochs are wall-clock). `rng`: the node's generator (seeded
        in a simulation), for the republication times; nonces and keys use `random_bytes`."""
        self.identity = identity
        self.settings = s = settings or DEFAULT_SETTINGS
        self.clock_offset = clock_offset
        self.stats: collections.Counter[str] = collections.Counter()
        self.store = ValueStore(s, rng)
        # ours, newest first: (private, public, made: Unix seconds)
        self.prekeys: list[tuple[X25519PrivateKey, bytes, float]] = []
        self._lookup, self._closest = lookup, closest
        self._addr_to_wire, self._validated = addr_to_wire, validated
        self._random = random_bytes
        self._outbox: list[tuple[bytes, Any]] = []
        self._events: collections.deque[StorageEvent] = collections.deque()
        self._ops: dict[int, _Op] = {}
        # (deadline, op id) of every deadline set; an entry whose op is gone or has a later
        # deadline is stale (skipped): get_timer, called after every datagram, reads its top
        self._deadlines: list[tuple[float, int]] = []
        self._by_lookup: dict[int, int] = {}
        self._waiting: dict[tuple[Any, bytes], int] = {}  # (address, vid / nonce / key) -> op
        self._next_op = 0
        self._republish_queue: dict[bytes, None] = {}  # keys waiting for a republish lookup
        self._holders: dict[bytes, set[Any]] = {}  # our mailbox keys -> nodes that answered
        self._storers: dict[bytes, _Storers] = {}  # our mailbox keys -> storers to ask again
        self._seen: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._acked: collections.OrderedDict[bytes, int] = collections.OrderedDict()  # vid: epoch
        self._rotate_at: float | None = None
        self._mailbox_at: float | None = None  # the next fetch of our mailbox (keep_mailbox)
        self._sweep_at: float | None = None  # the next fetch of all its epochs (keep_mailbox)
        self._fetched_wall: float | None = None  # Unix time of our last whole mailbox fetch
        self._joined_at: float | None = None  # a join succeeded: publish and fetch then
        self._upkeep = False  # keep_mailbox: publish and fetch at each join
        self._keep: Keeper | None = None  # keep_mailbox's: stores a prekey before publication
        self._mail: dict[bytes, list[tuple[bytes, Any]]] = {}  # recipient: waiting for a prekey
        self._mail_vids: dict[bytes, tuple[bytes, Any]] = {}  # vid: (recipient, tag)
        self._retry_at: float | None = None  # republish lookups refused: try again then
        self._verify = FloodGuard(s.verify_rate, s.verify_burst, s.source_rate, s.source_burst,
                                  now, max_sources=s.max_sources, always=True)
        self._finds = FloodGuard(s.find_rate, s.find_burst, s.source_rate, s.source_burst, now,
                                 max_sources=s.max_sources)

    def wall(self, now: float) -> float:
        return now + self.clock_offset

    # -- sans-I/O surface -----------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if not wire.well_formed(data):
            self.stats["malformed"] += 1
            return
        op = data[1]
        if op == wire.STORE:
            self._on_store(data, addr, now)
        elif op == wire.FIND_VALUE:
            self._on_find(data, addr, now)
        elif op == wire.DELETE:
            self._on_delete(data, addr, now)
        elif op == wire.STORED:
            self._on_stored(data, addr, now)
        elif op == wire.FOUND:
            self._on_found(data, addr, now)
        else:
            self._on_deleted(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        out = self._outbox
        if out:
            self._outbox = []
        return out

    def next_event(self) -> StorageEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap, ops = self._deadlines, self._ops
        while heap:
            at, op_id = heap[0]
            op = ops.get(op_id)
            if op is not None and op.deadline == at:
                break
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        for other in (self.store.get_timer(), self._rotate_at, self._retry_at, self._mailbox_at,
                      self._joined_at):
            if other is not None and (best is None or other < best):
                best = other
        return best

    def handle_timer(self, now: float) -> None:
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
        expired = self.store.expire(now)
        if expired:
            self.stats["expired_held"] += expired
        for held in self.store.due(now):
            self._republish_queue[held.value.key] = None
        self._start_republish(now)
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            at, op_id = heapq.heappop(heap)
            op = self._ops.get(op_id)
            if op is not None and op.deadline == at:
                self._finish(op, now)
        if self._rotate_at is not None and now >= self._rotate_at:
            self.publish_prekey(now)
        if self._joined_at is not None and now >= self._joined_at:
            self._joined_at = None
            self._publish_and_fetch(now)
        elif self._mailbox_at is not None and now >= self._mailbox_at:
            self._mailbox_at = now + self.settings.mailbox_interval
            sweep = self._sweep_at is None or now >= self._sweep_at
            if sweep:
                self._sweep_at = now + self.settings.mailbox_sweep
            self.fetch_mailbox(now, every_epoch=sweep)

    def drop_counts(self) -> collections.Counter[str]:
        """Datagrams (and fetched values) dropped or refused, by reason."""
        return collections.Counter({k: v for k, v in self.stats.items() if k in DROPS})

    # -- storer ---------------------------------------------------------------------------------

    def _on_store(self, data: bytes, addr: Any, now: float) -> None:
        key, raw = data[2:22], data[22:]
        rec = wire.parse_record(raw)
        s, wall = self.settings, self.wall(now)
        if rec.kind not in wire.KINDS:
            self.stats["bad_kind"] += 1
            return
        if rec.expiry <= wall:
            self.stats["expired"] += 1
            return
        if rec.expiry > wall + s.ttl + s.clock_skew:
            self.stats["too_long"] += 1
            return
        value = records.read(key, raw, check_signature=False)
        if value is None:
            self.stats["wrong_key"] += 1  # a prekey not under its author's prekey key
            return
        status = self.store.admit(key, value.vid, value.author, value.kind, value.sequence,
                                  len(raw), now)
        if status == wire.DUPLICATE:
            self.store.touch(value.vid, now)
            self.stats["duplicate"] += 1
        elif status is not None:
            self.stats[wire.STATUS_NAMES[status] if status != wire.GONE else "gone"] += 1
        elif not self._metered(self._verify, addr, now):
            return
        elif records.read(key, raw) is None:
            self.stats["bad_signature"] += 1
            return
        else:
            self.store.add(value, now + (rec.expiry - wall), now)
            self.stats["stored"] += 1
            status = wire.OK
        self._answer(wire.stored(key, value.vid, status), len(data), addr)

    def _on_find(self, data: bytes, addr: Any, now: float) -> None:
        if not self._metered(self._finds, addr, now):
            return
        key, nonce, cursor = data[2:22], data[22:30], wire.u16(data, 30)
        validated = self._validated is not None and self._validated(addr)
        budget = self._budget(len(data), validated)
        total, nxt, recs = self.store.page(key, cursor, budget - wire.FOUND_HEADER)
        contacts: list[bytes] = []
        if total == 0 and self._closest is not None and self._addr_to_wire is not None:
            # as many as fit, k at most (a ROUTE_RES's count): 52 fit a validated page, and
            # the empty answers of readers' periodic fetches were ~14 % of a 10^4-peer study
            room = min((budget - wire.FOUND_HEADER) // wire.CONTACT_SIZE, self.settings.replicas)
            for node_id, contact in self._closest(int.from_bytes(key, "big"), room + 1):
                packed = self._addr_to_wire(contact) if contact != addr else None
                if packed is not None and len(contacts) < room:
                    contacts.append(node_id.to_bytes(20, "big") + packed)
        self.stats["found_answered"] += 1
        self._answer(wire.found(key, nonce, total, nxt, recs, contacts), len(data), addr,
                     validated)

    def _on_delete(self, data: bytes, addr: Any, now: float) -> None:
        request = wire.parse_delete(data)
        if records.mailbox_key(node_id_of(request.spki), request.epoch) != request.key:
            self.stats["not_owner"] += 1  # only the mailbox's owner may delete
            return
        if not self._metered(self._verify, addr, now):
            return
        if not records.delete_valid(request):
            self.stats["bad_signature"] += 1
            return
        removed = self.store.delete(request.key, request.vids, now)
        self.stats["deleted"] += removed
        self._answer(wire.deleted(request.key, removed), len(data), addr)

    @staticmethod
    def _budget(request_size: int, validated: bool) -> int:
        """A FOUND's size limit: the request's own size, a full page to a proven address."""
        return wire.MAX_ANSWER if validated else request_size

    def _answer(self, out: bytes, request_size: int, addr: Any, validated: bool = False) -> None:
        if len(out) > request_size and not validated:
            self.stats["answer_cut"] += 1  # never an amplifier towards an unproven address
            return
        self._outbox.append((out, addr))

    def _metered(self, guard: FloodGuard, addr: Any, now: float) -> bool:
        host = addr[0] if type(addr) is tuple and addr else addr
        refused = guard.check(host, now)
        if refused is not None:
            self.stats[refused] += 1
        return refused is None

    # -- client: answers ------------------------------------------------------------------------

    def _claim(self, addr: Any, tag: bytes) -> _Op | None:
        op_id = self._waiting.pop((addr, tag), None)
        op = self._ops.get(op_id) if op_id is not None else None
        if op is None:
            self.stats["unsolicited"] += 1
            return None
        op.waits.discard((addr, tag))
        op.answered.add(addr)
        return op

    def _on_stored(self, data: bytes, addr: Any, now: float) -> None:
        op = self._claim(addr, data[22:38])
        if op is not None:
            op.statuses[data[38]] += 1
            self._maybe_finish(op, now)

    def _on_deleted(self, data: bytes, addr: Any, now: float) -> None:
        op = self._claim(addr, data[2:22])
        if op is not None:
            op.confirmed += 1
            self._maybe_finish(op, now)

    def _on_found(self, data: bytes, addr: Any, now: float) -> None:
        answer = wire.parse_found(data)
        op = self._claim(addr, answer.nonce)
        if op is None:
            return
        if answer.key != op.key:
            self.stats["bad_value"] += 1
        else:
            known = {v.raw for v in op.values.values()}
            mailbox = op.purpose is not None and op.purpose[0] == "mailbox"
            for raw in answer.records:
                if raw in known:
                    continue  # another storer's copy: checked already
                if op.got[addr] >= self.settings.max_per_key:
                    self.stats["over_quota"] += 1  # more than a storer holds under one key
                    break
                value = records.read(op.key, raw)
                if value is None:
                    self.stats["bad_value"] += 1  # forged or altered by the storer
                    continue
                op.got[addr] += 1
                if value.vid not in op.values:
                    op.values[value.vid] = value
                    if mailbox:
                        self._take(op, addr, value, now)
            op.pages[addr] += 1
            more = (answer.next != wire.NO_MORE and answer.next < answer.total
                    and op.pages[addr] < MAX_PAGES and op.got[addr] < self.settings.max_per_key)
            if more and mailbox and op.got[addr] and addr not in op.opened:
                self.stats["unopenable_storer"] += 1  # a page of boxes none of which opens:
                more = False  # its next pages would be the same work for nothing
            if more:
                size = len(op.datagram) if answer.records else wire.MAX_ANSWER
                self._send_find(op, addr, answer.next, size, now)
        self._maybe_finish(op, now)

    def _take(self, op: _Op, addr: Any, value: Value, now: float) -> None:
        """A new value of our mailbox from `addr`: opened now (so that a storer whose boxes do
        not open is asked for no further page), or acknowledged again at the fetch's end."""
        if value.vid in self._acked:
            op.again.append(value.vid)  # a storer missed our DELETE: tell it again
            op.opened.add(addr)  # ours, once: an honest storer
        elif self._open(value, op.purpose[1], now):
            op.opened.add(addr)

    # -- client: commands -----------------------------------------------------------------------

    def put(self, key: bytes, record: bytes, now: float) -> bytes:
        """Store `record` (made with records.make) at the k nodes closest to `key`; ValueStored
        or StoreFailed follows. Returns the value id."""
        value = records.read(key, record, check_signature=False)
        if value is None:
            raise ValueError("not a record for this key")
        op = _Op("store", key, now)
        op.records = [record]
        op.vids = (value.vid,)
        self._start(op, now)
        return value.vid

    def fetch(self, key: bytes, now: float, purpose: Any = None) -> int | None:
        """Ask the k nodes closest to `key` for its values; ValuesFound follows."""
        op = _Op("fetch", key, now)
        op.purpose = purpose
        return self._start(op, now)

    def acknowledge(self, epoch: int, vids: list[bytes], now: float) -> None:
        """Delete `vids` from our mailbox of `epoch` at every node that gave us values there
        (or, not known, the k closest): the recipient's signed acknowledgement."""
        vids = list(dict.fromkeys(vids))
        for vid in vids:
            self._remember_ack(vid, epoch)
        for at in range(0, len(vids), wire.MAX_VIDS):
            chunk = tuple(vids[at:at + wire.MAX_VIDS])
            op = _Op("delete", records.mailbox_key(self.identity.node_id, epoch), now)
            op.vids, op.epoch = chunk, epoch
            op.datagram = records.make_delete(self.identity, epoch, list(chunk))
            holders = self._holders.get(op.key)
            if holders:
                if self._register(op, now):
                    self._send_to(op, sorted(holders, key=repr), now)
            else:
                self._start(op, now)

    def _remember_ack(self, vid: bytes, epoch: int) -> None:
        self._acked[vid] = epoch
        self._acked.move_to_end(vid)
        while len(self._acked) > SEEN_LIMIT:
            self._acked.popitem(last=False)

    def not_kept(self, vid: bytes) -> None:
        """The owner could not keep MessageReceived `vid`: it is reported again at the next
        fetch (its copies stay, as it is not acknowledged)."""
        self._seen.pop(vid, None)

    def publish_prekey(self, now: float, rotate: bool = True) -> bytes | None:
        """Make a new prekey, sign it, store it under our prekey key; with `rotate`, again every
        `prekey_rotation`. Returns its public half. With keep_mailbox's `keep`, a prekey is
        published only once `keep` has kept it: else (None) the newest one we have is published
        again and a new one tried after `mailbox_interval`."""
        s, wall = self.settings, self.wall(now)
        raw = self._random(32)
        private = X25519PrivateKey.from_private_bytes(raw)
        public = sealed.public_bytes(private)
        if self._keep is not None and not self._keep(public, raw, wall):
            self.stats["prekey_not_kept"] += 1  # never published: nothing may be sealed to it
            if self.prekeys:
                self._put_prekey(self.prekeys[0][1], self.prekeys[0][2], now)
            self._rotate_at = now + min(s.mailbox_interval, s.prekey_rotation)
            return None
        self.prekeys = [(private, public, wall)] + self.prekeys
        self._prune_prekeys(wall)
        self._events.append(PrekeyMade(public, raw, wall, now))
        self._put_prekey(public, wall, now)
        self._rotate_at = now + s.prekey_rotation if rotate else None
        return public

    def _put_prekey(self, public: bytes, made: float, now: float) -> None:
        """Store our prekey's record: sequence and expiry come from when it was made, so the
        record published again after a restart is the same value (storers say DUPLICATE)."""
        expiry = int(made + min(2 * self.settings.prekey_rotation, self.settings.ttl))
        key = records.prekey_key(self.identity.node_id)
        self.put(key, records.make(self.identity, key, wire.PREKEY, expiry, int(made), public),
                 now)

    def _prune_prekeys(self, wall: float) -> None:
        keep = self.settings.prekey_keep  # boxes sealed to one may still arrive
        self.prekeys = [p for p in self.prekeys if p[2] > wall - keep]

    def keep_mailbox(self, kept: list[tuple[bytes, float]] = (), now: float = 0.0,
                     keep: Keeper | None = None,
                     acknowledged: list[tuple[bytes, int]] = ()) -> None:
        """Turn the recipient's upkeep on: from each `joined` on, publish our prekey and fetch
        our mailbox (then every `mailbox_interval`). `kept`: the prekeys of earlier runs
        (private half, made), as PrekeyMade told them, so boxes sealed to them still open.
        `keep(public, private, made)`: the owner stores a new prekey before it is published
        (True: stored), so none is published that a restart would lose. `acknowledged`: the
        (value id, epoch) pairs we acknowledged before, oldest first: acknowledged again, not
        opened, if a storer still returns them."""
        self._upkeep = True
        self._keep = keep
        for vid, epoch in acknowledged:
            self._remember_ack(vid, epoch)
        held = {p[1] for p in self.prekeys}
        for raw, made in kept:
            private = X25519PrivateKey.from_private_bytes(raw)
            public = sealed.public_bytes(private)
            if public not in held:
                held.add(public)
                self.prekeys.append((private, public, made))
        self.prekeys.sort(key=lambda p: p[2], reverse=True)
        self._prune_prekeys(self.wall(now))

    def joined(self, now: float) -> None:
        """A join succeeded (the node's upkeep tells): with `keep_mailbox` on, publish the
        prekey (the newest while younger than `prekey_rotation`, unchanged) and fetch the
        mailbox now and every `mailbox_interval`."""
        if self._upkeep:
            self._joined_at = now  # on the timer: after the join's own answers are handled

    def _publish_and_fetch(self, now: float) -> None:
        s, wall = self.settings, self.wall(now)
        newest = self.prekeys[0] if self.prekeys else None
        if newest is not None and newest[2] > wall - s.prekey_rotation:
            self._put_prekey(newest[1], newest[2], now)
            self._rotate_at = now + (newest[2] + s.prekey_rotation - wall)
        else:
            self.publish_prekey(now)
        self._mailbox_at = now + s.mailbox_interval
        self._sweep_at = now + s.mailbox_sweep
        self.fetch_mailbox(now)

    def fetch_prekey(self, node_id: bytes, now: float) -> int | None:
        """Find `node_id`'s newest prekey: PrekeyFound follows."""
        return self.fetch(records.prekey_key(node_id), now, ("prekey", node_id))

    def send_message(self, recipient: bytes, prekey: bytes, plaintext: bytes, now: float) -> bytes:
        """Seal `plaintext` for `recipient`'s `prekey` and store it in its mailbox of this epoch
        (expiring after `ttl`). Returns the value id."""
        key, record, _ = self._sealed_record(recipient, prekey, plaintext, now)
        return self.put(key, record, now)

    def _sealed_record(self, recipient: bytes, prekey: bytes, plaintext: bytes,
                       now: float) -> tuple[bytes, bytes, bytes]:
        """(key, record, value id) of `plaintext` sealed for `recipient`'s mailbox now."""
        s, wall = self.settings, self.wall(now)
        key = records.mailbox_key(recipient, records.epoch_of(wall, s.epoch_length))
        body = sealed.seal(prekey, recipient, self.identity, plaintext)
        sequence = int.from_bytes(self._random(4), "big")
        vid = records.value_id(key, self.identity.node_id, wire.MAILBOX, sequence)
        return key, records.make(self.identity, key, wire.MAILBOX, int(wall + s.ttl), sequence,
                                 body), vid

    def mail(self, recipient: bytes, plaintext: bytes, now: float, tag: Any = None) -> None:
        """Deliver `plaintext` to `recipient` (a node ID) through its mailbox: fetch its newest
        prekey (one it signed), seal to it, store. MailStored or MailFailed (with `tag`)
        follows; one prekey fetch serves every message waiting for that recipient."""
        waiting = self._mail.setdefault(recipient, [])
        if len(waiting) >= self.settings.max_mail_waiting:
            self._events.append(MailFailed(recipient, tag, "busy", now))
            return
        waiting.append((plaintext, tag))
        if len(waiting) == 1:
            self.fetch_prekey(recipient, now)  # a fetch that cannot start ends at once

    def _prekey_for_mail(self, recipient: bytes, prekey: bytes | None, missing: str,
                         now: float) -> None:
        for plaintext, tag in self._mail.pop(recipient, ()):
            if prekey is None:
                self._events.append(MailFailed(recipient, tag, missing, now))
                continue
            try:
                key, record, vid = self._sealed_record(recipient, prekey, plaintext, now)
            except sealed.SealedError:
                self._events.append(MailFailed(recipient, tag, "bad_prekey", now))
                continue
            self._mail_vids[vid] = (recipient, tag)
            self.put(key, record, now)

    def _stored(self, event: ValueStored | StoreFailed) -> None:
        """A store ended: its event, and the mail's outcome if it was one of `mail`'s."""
        self._events.append(event)
        mail = self._mail_vids.pop(event.vid, None)
        if mail is None:
            return
        if type(event) is ValueStored:
            self._events.append(MailStored(*mail, event.vid, event.stored, event.at))
        else:
            self._events.append(MailFailed(*mail, event.reason, event.at))

    def fetch_mailbox(self, now: float, every_epoch: bool = True) -> list[int]:
        """Fetch our mailbox: every epoch that may hold an unexpired box sealed to a prekey we
        hold, or (`every_epoch` False, after a whole fetch) only those a box stored since that
        fetch can be under. A MessageReceived follows for each new one that opens, then
        ValuesFound per epoch."""
        s, wall = self.settings, self.wall(now)
        last = records.epoch_of(wall + s.clock_skew, s.epoch_length)
        first = records.epoch_of(self._since(wall, every_epoch), s.epoch_length)
        ops = []
        for epoch in range(first, last + 1):
            key = records.mailbox_key(self.identity.node_id, epoch)
            op_id = None if every_epoch else self._fetch_storers(key, ("mailbox", epoch), now)
            if op_id is None:
                op_id = self.fetch(key, now, ("mailbox", epoch))
                self.stats["mailbox_lookups"] += op_id is not None
            if op_id is not None:
                ops.append(op_id)
        if len(ops) == last - first + 1:  # one refused (busy): the next fetch covers it again
            self._fetched_wall = wall
        return ops

    def _fetch_storers(self, key: bytes, purpose: Any, now: float) -> int | None:
        """A periodic fetch of `key` without a lookup: FIND_VALUE straight to the storers
        that answered its last fetch, while the lookup that found them is younger than
        `republish_interval` (by then each holder has stored its values at the key's new k
        closest nodes, which a lookup finds). None: no such storers (a lookup is needed)."""
        cached = self._storers.get(key)
        if cached is None or now >= cached.found_at + self.settings.republish_interval:
            return None
        op = _Op("fetch", key, now)
        op.purpose, op.reused = purpose, cached
        if not self._register(op, now):
            return None
        self.stats["mailbox_direct"] += 1
        self._send_to(op, list(cached.addrs), now)
        return op.id

    def _remember_storers(self, op: _Op, now: float) -> None:
        """After a fetch of our mailbox: keep the nodes that answered for the next periodic
        fetch, or, when fewer than half of those the key's lookup found still answer (churn
        replaced its storers), find the key's closest nodes again with a lookup now."""
        answered = [addr for addr in op.targets if addr in op.answered]
        cached = op.reused
        if cached is None:  # a lookup's fetch
            cached = _Storers(now, len(op.targets), answered)
        elif self._storers.get(op.key) is not cached:
            return  # a lookup found the key's nodes again meanwhile
        elif 2 * len(answered) < cached.found:
            self._storers.pop(op.key, None)
            self.stats["mailbox_fallbacks"] += 1
            self.stats["mailbox_lookups"] += self.fetch(op.key, now, op.purpose) is not None
            return
        cached.addrs = answered
        if answered:
            self._storers[op.key] = cached
            while len(self._storers) > 8:  # one key, near midnight two, are fetched so
                del self._storers[next(iter(self._storers))]
        else:
            self._storers.pop(op.key, None)

    def _since(self, wall: float, every_epoch: bool) -> float:
        """The earliest Unix time whose epoch a fetch must ask for. A box's epoch is its
        sender's clock's when it sealed it (within `clock_skew` of ours), after `ttl` it has
        expired, and it was sealed to one of our prekeys, none older than the oldest we hold
        (one we no longer hold opens nothing). One sealed just before our last whole fetch may
        reach its storers after that fetch's FIND_VALUEs (its store's lookup takes up to
        LOOKUP_WAIT), so it is looked for once more."""
        s = self.settings
        oldest = wall - s.ttl - s.clock_skew  # the oldest unexpired box's
        if self.prekeys:
            oldest = max(oldest, min(p[2] for p in self.prekeys) - s.clock_skew)
        if every_epoch or self._fetched_wall is None:
            return oldest
        return max(oldest, self._fetched_wall - s.clock_skew - LOOKUP_WAIT - s.request_timeout)

    # -- lookups --------------------------------------------------------------------------------

    def owns(self, lookup_id: int) -> bool:
        return lookup_id in self._by_lookup

    def lookup_done(self, event: Any, now: float) -> None:
        """The routing layer's LookupCompleted for a lookup we started."""
        op_id = self._by_lookup.pop(event.lookup_id, None)
        op = self._ops.get(op_id) if op_id is not None else None
        if op is None:
            return
        own = int.from_bytes(self.identity.node_id, "big") if self.identity is not None else -1
        targets = [addr for node_id, addr in event.closest if node_id != own]
        self._send_to(op, targets[:self.settings.replicas], now)
        if op.kind == "republish":
            self._start_republish(now)

    # -- internals ------------------------------------------------------------------------------

    def _register(self, op: _Op, now: float) -> bool:
        if len(self._ops) >= self.settings.max_operations + self.settings.max_republish_lookups:
            self._fail(op, "busy", now)
            return False
        op.id = self._next_op
        self._next_op += 1
        self._ops[op.id] = op
        self._due_by(op, op.deadline)
        return True

    def _due_by(self, op: _Op, deadline: float) -> None:
        op.deadline = deadline
        heapq.heappush(self._deadlines, (deadline, op.id))

    def _start(self, op: _Op, now: float) -> int | None:
        if not self._register(op, now):
            return None
        lookup_id = self._lookup(int.from_bytes(op.key, "big"), now) if self._lookup else None
        if lookup_id is None:
            del self._ops[op.id]
            self._fail(op, "busy", now)
            return None
        self._by_lookup[lookup_id] = op.id
        self.stats["lookups"] += 1
        self._due_by(op, now + LOOKUP_WAIT)  # the lookup's own timeouts end it long before
        return op.id

    def _send_to(self, op: _Op, targets: list[Any], now: float) -> None:
        op.targets, op.sent = targets, True
        self._due_by(op, now + self.settings.request_timeout)
        for addr in targets:
            if op.kind in ("store", "republish"):
                for raw in op.records:
                    value = records.read(op.key, raw, check_signature=False)
                    self._wait(op, addr, value.vid)
                    self._outbox.append((wire.store(op.key, raw), addr))
            elif op.kind == "fetch":
                self._send_find(op, addr, 0, self.settings.find_padding, now)
            else:
                self._wait(op, addr, op.key)
                self._outbox.append((op.datagram, addr))
        self._maybe_finish(op, now)

    def _send_find(self, op: _Op, addr: Any, cursor: int, size: int, now: float) -> None:
        nonce = self._random(wire.NONCE_SIZE)
        op.datagram = wire.find_value(op.key, nonce, cursor, size)
        self._due_by(op, now + self.settings.request_timeout)
        self._wait(op, addr, nonce)
        self._outbox.append((op.datagram, addr))

    def _wait(self, op: _Op, addr: Any, tag: bytes) -> None:
        op.waits.add((addr, tag))
        self._waiting[(addr, tag)] = op.id

    def _maybe_finish(self, op: _Op, now: float) -> None:
        if not op.waits and op.sent and op.id in self._ops:
            self._finish(op, now)

    def _finish(self, op: _Op, now: float) -> None:
        del self._ops[op.id]
        for lookup_id in [i for i, o in self._by_lookup.items() if o == op.id]:
            del self._by_lookup[lookup_id]
        for wait in op.waits:
            self._waiting.pop(wait, None)
        if op.kind == "store":
            ok, dup = op.statuses[wire.OK], op.statuses[wire.DUPLICATE]
            refused = sum(op.statuses.values()) - ok - dup
            if ok + dup:
                self._stored(ValueStored(op.key, op.vids[0], ok + dup, dup, refused, now))
            elif not op.targets:
                self._fail(op, "no_nodes", now)
            elif refused:
                worst = max((n, s) for s, n in op.statuses.items())[1]
                self._fail(op, wire.STATUS_NAMES[worst], now)
            else:
                self._fail(op, "timeout", now)
        elif op.kind == "republish":
            self.stats["republished"] += sum(op.statuses.values())
        elif op.kind == "delete":
            self._events.append(ValuesDeleted(op.key, op.vids, len(op.targets), op.confirmed,
                                              now))
        else:
            self._fetched(op, now)

    def _fetched(self, op: _Op, now: float) -> None:
        values = tuple(op.values.values())
        purpose = op.purpose
        if purpose is not None and purpose[0] == "mailbox":
            holders = self._holders.setdefault(op.key, set())
            holders.update(op.answered)
            while len(self._holders) > 64:
                del self._holders[next(iter(self._holders))]
            if op.again:
                self.stats["acknowledged_again"] += len(op.again)
                self.acknowledge(purpose[1], op.again, now)
        self._events.append(ValuesFound(op.key, values, len(op.targets), len(op.answered), now))
        if purpose is not None and purpose[0] == "mailbox" and op.sent:
            self._remember_storers(op, now)
        if purpose is not None and purpose[0] == "prekey":
            node_id = purpose[1]
            mine = [v for v in values if v.kind == wire.PREKEY and v.author == node_id
                    and v.expiry > self.wall(now)]
            best = max(mine, key=lambda v: v.sequence, default=None)
            self._events.append(PrekeyFound(node_id, best.body if best else None,
                                            best.expiry if best else 0, now))
            if node_id in self._mail:
                self._prekey_for_mail(node_id, best.body if best else None,
                                      "no_prekey" if op.answered else "no_answer", now)

    def _open(self, value: Value, epoch: int, now: float) -> bool:
        """Report `value` if it opens with one of our prekeys; True if it is ours (opened now
        or before)."""
        if value.kind != wire.MAILBOX:
            return False
        if value.vid in self._seen:
            return True
        if value.expiry <= self.wall(now):
            self.stats["expired"] += 1  # its author's lifetime is over: not a message any more
            return False
        me = self.identity.node_id
        for private, _, _ in self.prekeys:
            try:
                opened = sealed.open_box(private, me, value.body)
            except sealed.SealedError:
                continue
            if opened.sender != value.author:
                self.stats["sender_mismatch"] += 1
                return False
            self._seen[value.vid] = None
            while len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            self._events.append(MessageReceived(value.vid, epoch, opened.sender,
                                                opened.plaintext, value.sequence, now))
            return True
        self.stats["unopenable"] += 1
        return False

    def _fail(self, op: _Op, reason: str, now: float) -> None:
        if op.kind == "store":
            self._stored(StoreFailed(op.key, op.vids[0], reason, now))
        elif op.kind == "fetch":
            self._fetched(op, now)
        elif op.kind == "delete":
            self._events.append(ValuesDeleted(op.key, op.vids, 0, 0, now))

    def _republishing(self) -> list[_Op]:
        return [op for op in self._ops.values() if op.kind == "republish"]

    def _start_republish(self, now: float) -> None:
        queue = self._republish_queue
        while queue and len(self._republishing()) < self.settings.max_republish_lookups:
            key = next(iter(queue))
            del queue[key]
            held = [self.store.values[v] for v in self.store.by_key.get(key, ())]
            if not held:
                continue
            op = _Op("republish", key, now)
            op.records = [h.value.raw for h in held]
            for h in held:
                self.store.republishing(h, now)
            if self._start(op, now) is None:
                queue[key] = None  # the routing layer is busy: again in a second
                self._retry_at = now + 1.0
                break
            self.stats["republish_lookups"] += 1
