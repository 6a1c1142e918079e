"""What a storer holds: values by id and key, quotas, expiry, republication, tombstones.

Pure bookkeeping (no bytes on the wire, no signatures): the layer calls `admit` before it spends
a signature check, `add` after. Every bound is a count or a byte total in StorageSettings, so a
flood from any number of identities holds at most `max_values` records of at most `max_bytes`,
plus twice `max_tombstones` 16-byte ids (deleted values, and ids deleted before any copy
came). Times are the node's `now`.

Republication is spread as the Kademlia paper asks ("as long as republication intervals are not
exactly synchronized, only one node will republish"): the ~20 storers of a value get its STORE
at the same moment, so with one fixed interval each of them would look the key up and store it
at the others every interval. A storer that received the value (a first copy, or another's
republication) arms its own republication at a random point in the last `republish_spread` of
the interval; one that republishes it re-arms at the start of that range, so it stays the first
and its STOREs postpone the others'. No value waits longer than `republish_interval` after a
storer last received or republished it.
"""

from __future__ import annotations

import collections
import heapq
from random import Random

from . import wire
from .records import Value
from .settings import StorageSettings


class Held:
    __slots__ = ("value", "expires", "republish_at", "queued")

    def __init__(self, value: Value, expires: float, republish_at: float):
        self.value = value
        self.expires = expires
        self.republish_at = republish_at
        self.queued = republish_at  # its live entry in the republication heap


class ValueStore:
    __slots__ = ("settings", "rng", "values", "by_key", "per_author", "author_bytes", "bytes",
                 "tombstones", "blind_tombstones", "_expiry", "_republish")

    def __init__(self, settings: StorageSettings, rng: Random | None = None):
        self.settings = settings
        self.rng = rng if rng is not None else Random()  # the node's: a simulation stays seeded
        self.values: dict[bytes, Held] = {}
        self.by_key: dict[bytes, dict[bytes, None]] = {}  # key -> vids, oldest first
        self.per_author: collections.Counter[bytes] = collections.Counter()
        self.author_bytes: collections.Counter[bytes] = collections.Counter()
        self.bytes = 0
        self.tombstones: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        # Deletions of ids never held here, apart: anyone may sign DELETEs of made-up ids for
        # their own mailbox, and these must not push out the tombstones of deleted values.
        self.blind_tombstones: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._expiry: list[tuple[float, bytes]] = []  # stale entries skipped
        self._republish: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self.values)

    def admit(self, key: bytes, vid: bytes, author: bytes, kind: int, sequence: int, size: int,
              now: float) -> int | None:
        """None if a value of this shape may be stored now, else the STORED status."""
        gone = self.tombstones.get(vid) or self.blind_tombstones.get(vid)
        if gone is not None and gone > now:
            return wire.GONE
        if vid in self.values:
            return wire.DUPLICATE
        s = self.settings
        older = self._prekeys_of(key, author) if kind == wire.PREKEY else []
        if any(h.value.sequence >= sequence for h in older):
            return wire.STALE
        freed = sum(len(h.value.raw) for h in older)
        if (len(self.by_key.get(key, ())) - len(older) >= s.max_per_key
                or self.per_author[author] - len(older) >= s.max_per_author
                or self.author_bytes[author] - freed + size > s.max_author_bytes):
            return wire.QUOTA
        if len(self.values) - len(older) >= s.max_values or self.bytes - freed + size > s.max_bytes:
            return wire.FULL
        return None

    def add(self, value: Value, expires: float, now: float) -> None:
        """Hold `value` (admitted) until `expires`; a prekey replaces its author's older ones."""
        if value.kind == wire.PREKEY:
            for held in self._prekeys_of(value.key, value.author):
                self._remove(held.value.vid)
        held = Held(value, expires, self._received_at(now))
        self.values[value.vid] = held
        self.by_key.setdefault(value.key, {})[value.vid] = None
        self.per_author[value.author] += 1
        self.author_bytes[value.author] += len(value.raw)
        self.bytes += len(value.raw)
        heapq.heappush(self._expiry, (expires, value.vid))
        heapq.heappush(self._republish, (held.republish_at, value.vid))

    def touch(self, vid: bytes, now: float) -> None:
        """Another node stored this value here: our own republication can wait (Kademlia)."""
        held = self.values.get(vid)
        if held is not None:
            self._arm(held, self._received_at(now))

    def republishing(self, held: Held, now: float) -> None:
        """We republish `held` now: next time at the start of the spread range, before the
        storers our STOREs reach now (each armed in that range)."""
        s = self.settings
        self._arm(held, now + s.republish_interval * (1.0 - s.republish_spread))

    def _received_at(self, now: float) -> float:
        s = self.settings
        return now + s.republish_interval * (1.0 - s.republish_spread * self.rng.random())

    def _arm(self, held: Held, at: float) -> None:
        held.republish_at = at
        if at < held.queued:  # earlier than its heap entry: a new entry (the old one goes stale)
            held.queued = at
            heapq.heappush(self._republish, (at, held.value.vid))

    def delete(self, key: bytes, vids: tuple[bytes, ...], now: float) -> int:
        """Remove `vids` under `key` and remember them (a republish must not bring one back);
        return how many were held."""
        removed = 0
        for vid in vids:
            held = self.values.get(vid)
            if held is not None and held.value.key != key:
                continue  # another key's value: the deleter does not own it
            until = held.expires if held is not None else now + self.settings.ttl \
                + self.settings.clock_skew
            if held is not None:
                self._remove(vid)
                removed += 1
            self.tombstones.pop(vid, None)
            self.blind_tombstones.pop(vid, None)
            book = self.tombstones if held is not None else self.blind_tombstones
            book[vid] = until
            while len(book) > self.settings.max_tombstones:
                book.popitem(last=False)
        return removed

    def page(self, key: bytes, cursor: int, budget: int) -> tuple[int, int, list[bytes]]:
        """(values under key, the next cursor or NO_MORE, records from `cursor` within
        `budget` bytes, each costing its size plus 2)."""
        vids = list(self.by_key.get(key, ()))
        records: list[bytes] = []
        at = cursor
        while at < len(vids) and len(records) < 255:
            raw = self.values[vids[at]].value.raw
            if len(raw) + 2 > budget:
                break
            budget -= len(raw) + 2
            records.append(raw)
            at += 1
        return len(vids), (wire.NO_MORE if at >= len(vids) else at), records

    def expire(self, now: float) -> int:
        """Drop what expired by `now` (values, and tombstones met on the way); return the
        number of values dropped."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, vid = heapq.heappop(heap)
            held = self.values.get(vid)
            if held is not None and held.expires <= now:
                self._remove(vid)
                dropped += 1
        for tombs in (self.tombstones, self.blind_tombstones):
            while tombs:
                vid, until = next(iter(tombs.items()))
                if until > now:
                    break
                del tombs[vid]
        return dropped

    def due(self, now: float) -> list[Held]:
        """Values whose republication is due (each re-armed one interval later)."""
        out: list[Held] = []
        heap = self._republish
        while heap and heap[0][0] <= now:
            at, vid = heapq.heappop(heap)
            held = self.values.get(vid)
            if held is None or at != held.queued:
                continue  # removed, or an entry a later one replaced
            if held.republish_at > now:  # touched since
                held.queued = held.republish_at
                heapq.heappush(heap, (held.republish_at, vid))
                continue
            held.queued = float("inf")  # `republishing` re-arms it
            self.republishing(held, now)
            out.append(held)
        return out

    def get_timer(self) -> float | None:
        expiry, republish = self._expiry, self._republish
        if not republish:
            return expiry[0][0] if expiry else None
        return min(expiry[0][0], republish[0][0]) if expiry else republish[0][0]

    def _prekeys_of(self, key: bytes, author: bytes) -> list[Held]:
        values = self.values
        return [values[v] for v in self.by_key.get(key, ()) if values[v].value.author == author
                and values[v].value.kind == wire.PREKEY]

    def _remove(self, vid: bytes) -> None:
        held = self.values.pop(vid)
        value = held.value
        keyed = self.by_key[value.key]
        del keyed[vid]
        if not keyed:
            del self.by_key[value.key]
        size = len(value.raw)
        self.bytes -= size
        for counter, amount in ((self.per_author, 1), (self.author_bytes, size)):
            counter[value.author] -= amount
            if counter[value.author] <= 0:
                del counter[value.author]
        if len(self._expiry) > 2 * len(self.values) + 64:  # removed ones' entries
            self._expiry = [(h.expires, v) for v, h in self.values.items()]
            heapq.heapify(self._expiry)
            self._republish = [(h.queued, v) for v, h in self.values.items()]
            heapq.heapify(self._republish)
