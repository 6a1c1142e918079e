"""The Kademlia routing table: buckets by common-prefix length, kept by uptime.

Bucket `c` holds contacts whose ID shares exactly `c` leading bits with ours (the paper's buckets
covering prefixes, indexed from the far half of the space, c = 0). All entries of one node live in
one `array('i')` of contact handles, grouped by bucket (c ascending) and oldest first inside a
bucket, plus a `bytearray` of bucket sizes: about 4 bytes a contact, which is what lets a
million simulated tables fit in memory. Replacement caches and failure counts are allocated only
when a bucket first overflows or a contact first fails to answer.

With `bucket_bits` b > 1 (Kademlia section 4.2, b bits a hop) every prefix bucket c is split
into 2^(b-1) buckets by the b-1 ID bits after bit c: index (c << (b-1)) | s (`bucket_of`), each
kept by the rules below as bucket c is (at most k, its own cache, refresh time); the array is
grouped by that index, `_sizes` by whole prefix groups. b = 1 is the paper's table.

A table made with `index=True` (a real node's: one table, not a million) also keeps the set of
handles it holds, entries and cached newcomers (`_held`), so that `known`, asked for every
request served, is one set lookup rather than a walk of the bucket and its cache (issue 15).
Every path that changes an entry or a cache keeps it exact (`_hold`, `_release`).

Entries and cached newcomers are contacts that answered an address probe of ours (`observe(...,
answered=True)`) or that the node was given (`add_contact`, `load`); the routing layer offers a
requester, or a contact a lookup met, to the table only through a probe, asking `known` and
`admits` first. Only answers clear an entry's failures: a request's source may be forged.

Uptime rule: a full bucket never drops an answering entry for a newcomer; the newcomer waits in
the bucket's replacement cache and takes the place of an entry that stops answering. A contact
whose ID is already in the table under another address does not displace it while the old
address answers (address spoofing); it takes the old entry's place only once the old address
has failed a request and the new address has answered one (`observe(..., answered=True)`;
`moved` tells the routing layer when to send the new address that request). A node restarted
on another port sends nothing to its old address, so when the new address has answered a probe
the routing layer checks the old one (`check_wanted`, `start_check`): at most once per entry
every ADDRESS_CHECK_INTERVAL, with probes spread over a window (`continue_check`) so that one
lost or refused probe does not decide; any answer of the old address ends the check, and
unanswered to the last, the new address takes the place (`expired_checks`, `move`), as a
deployed DHT pings the old contact before replacing it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from heapq import heappop, heappush
from itertools import accumulate
from random import Random
from typing import Any, Iterator, Sequence

from .messages import ID_BITS

# A known ID answering at a new address makes the node check its entry's old address at most
# this often (s): a forger who answers at its own address costs one bare probe per interval.
ADDRESS_CHECK_INTERVAL = 300.0
_INF = float("inf")  # `next_check` with no check due (asked after every datagram a node handles)


@dataclass(frozen=True, slots=True)
class TableSettings:
    k: int = 20
    replacement_cache: int = 20  # newcomers remembered per full bucket
    max_failures: int = 5  # unanswered requests in a row before an entry goes without a replacement
    # b: each prefix bucket split in 2^(b-1) by the next b-1 ID bits (1: the paper's table)
    bucket_bits: int = 1


MAX_BUCKET_BITS = 8


def check_bucket_bits(bits: object) -> int:
    """`bits` as a valid bucket_bits, else a ValueError naming the range: checked where it is
    given (RoutingSettings, a table, the fast bootstrap), not as a TypeError deep in
    `bucket_of` at the first contact. A bool is an int (True: b = 1)."""
    if not isinstance(bits, int) or not 1 <= bits <= MAX_BUCKET_BITS:
        raise ValueError(f"bucket_bits must be an integer between 1 and {MAX_BUCKET_BITS}"
                         f" (1: the paper's table), not {bits!r}")
    return bits


def bucket_of(own: int, node_id: int, extra_bits: int = 0) -> int:
    """The bucket index of `node_id` in `own`'s table with buckets split by `extra_bits` (b - 1)
    more bits: (c << extra_bits) | s, c the common-prefix length, s the `extra_bits` bits of
    `node_id` after bit c (zero-padded on the right when fewer remain). `ID_BITS << extra_bits`
    for `own` itself. extra_bits = 0: c, the paper's index."""
    rest = (own ^ node_id).bit_length() - 1  # bits after the first differing bit
    if rest < 0:
        return ID_BITS << extra_bits
    index = (ID_BITS - 1 - rest) << extra_bits
    if extra_bits:
        low = node_id & ((1 << rest) - 1)
        index |= low >> (rest - extra_bits) if rest >= extra_bits else low << (extra_bits - rest)
    return index


class RoutingTable:
    __slots__ = ("own_id", "settings", "_ids", "_entries", "_sizes", "_touched", "_cache", "_failures",
                 "_checks", "_check_due", "address_checks", "_held", "_extra")

    def __init__(self, own_id: int, ids: Sequence[int], settings: TableSettings = TableSettings(),
                 index: bool = False):
        """`settings` is anything with k, replacement_cache and max_failures (RoutingSettings too);
        `index`: keep the set of handles held (~13 KB a table of 160: not for simulated ones)."""
        if not 0 <= settings.k <= 255:
            raise ValueError("k must be between 0 and 255")
        bits = check_bucket_bits(getattr(settings, "bucket_bits", 1))
        # b - 1: index (c << _extra) | s, so `_sizes` holds whole groups of 2^_extra buckets
        self._extra = bits - 1
        self.own_id = own_id
        self.settings = settings
        self._ids = ids  # the registry's handle -> ID list
        self._entries = array("i")
        self._sizes = bytearray()
        self._touched = array("d")  # per bucket: when a lookup last went into its range
        self._cache: dict[int, list[int]] | None = None
        self._failures: dict[int, int] | None = None
        # Address checks: entry handle -> (deadline, claimed new handle, started, probes still
        # to send) while one runs, then (started + ADDRESS_CHECK_INTERVAL, -1, started, 0) until
        # it is forgotten (no other check of that entry till then); made at the first one.
        # `_check_due` is a lazy heap of (deadline, entry), stale once the record's deadline
        # differs, so that the timer reads the earliest without walking every record.
        # `address_checks` counts those started.
        self._checks: dict[int, tuple[float, int, float, int]] | None = None
        self._check_due: list[tuple[float, int]] = []
        self.address_checks = 0
        self._held: set[int] | None = set() if index else None

    # -- queries --------------------------------------------------------------------------------

    def bucket_index(self, node_id: int) -> int:
        """Common-prefix length with our ID (160 for our own ID); with bucket_bits b > 1,
        `bucket_of`'s (c << (b - 1)) | s."""
        if self._extra:
            return bucket_of(self.own_id, node_id, self._extra)
        return ID_BITS - (self.own_id ^ node_id).bit_length()

    def range_bits(self, index: int) -> int:
        """Bucket `index`'s range is the IDs differing from any of them in the last this many
        bits only (our first c bits, bit c flipped, then the b - 1 bits s)."""
        return max(0, ID_BITS - 1 - (index >> self._extra) - self._extra)

    def farther_buckets(self, node_id: int) -> list[int] | range:
        """The buckets whose whole range is farther from our ID than `node_id` (the paper's
        join refreshes them): every bucket of a shorter common prefix than `node_id`'s, and,
        with bucket_bits > 1, those of its prefix group whose next bits are farther from ours."""
        extra = self._extra
        c = ID_BITS - (self.own_id ^ node_id).bit_length()
        if not extra:
            return range(c)
        if c >= ID_BITS:
            return range(ID_BITS << extra)
        mask = (1 << extra) - 1
        ours = bucket_of(self.own_id, self.own_id ^ (1 << (ID_BITS - 1 - c)), extra) & mask
        theirs = bucket_of(self.own_id, node_id, extra) & mask
        farther = list(range(c << extra)) + [
            (c << extra) | s for s in range(1 << extra) if s ^ ours > theirs ^ ours]
        if c >= ID_BITS - extra:  # not the buckets no ID maps to (`empty_range`)
            return [index for index in farther if not self.empty_range(index)]
        return farther

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, handle: int) -> bool:
        return handle in self._entries

    def bucket(self, index: int) -> list[int]:
        """Handles in bucket `index`, oldest first."""
        if index >= len(self._sizes):
            return []
        start = sum(self._sizes[:index])
        return self._entries[start : start + self._sizes[index]].tolist()

    def bucket_count(self) -> int:
        return len(self._sizes)

    def replacements(self, index: int) -> list[int]:
        if not self._cache:
            return []
        return list(self._cache.get(index, ()))

    def failures(self, handle: int) -> int:
        return self._failures.get(handle, 0) if self._failures else 0

    def handles(self) -> Iterator[int]:
        """Every handle the table refers to (entries and replacement caches)."""
        yield from self._entries
        if self._cache:
            for cache in self._cache.values():
                yield from cache

    def find(self, node_id: int) -> int:
        """The handle stored for `node_id`, or -1."""
        index = self.bucket_index(node_id)
        if index >= len(self._sizes):
            return -1
        start = sum(self._sizes[:index])
        ids = self._ids
        for handle in self._entries[start : start + self._sizes[index]]:
            if ids[handle] == node_id:
                return handle
        return -1

    def closest(self, target: int, count: int, exclude: int = -1) -> list[int]:
        """Up to `count` handles closest to `target` by XOR distance, closest first.

        Bucket c = prefix length of target with our ID holds the closest entries; next come all
        deeper buckets (c+1 ...), then the shallower buckets c-1, c-2, ... in turn. So only a
        few small groups are ever sorted: with count = k and bucket c full (a request served,
        the common case) one bucket of k. The deeper buckets are sorted together when that
        is about what is needed of them, else taken bucket by bucket nearest first (below),
        so that one more contact (bucket c held the excluded requester) costs one bucket,
        not every deeper one (issue 15: this runs for every request served).
        With bucket_bits > 1: `_closest_split`.
        """
        if self._extra:
            return self._closest_split(target, count, exclude)
        ids = self._ids
        entries = self._entries
        sizes = self._sizes
        nbuckets = len(sizes)
        own = self.own_id
        distance = own ^ target
        c = ID_BITS - distance.bit_length()
        key = lambda h: ids[h] ^ target  # noqa: E731
        # `exclude` (the requester) can only be in its own ID's bucket
        skip = ID_BITS - (own ^ ids[exclude]).bit_length() if exclude >= 0 else -1
        if c < nbuckets:
            start = sum(sizes[:c]) if c else 0
            end = start + sizes[c]
            result = entries[start:end].tolist()
            if skip == c and exclude in result:
                result.remove(exclude)
            result.sort(key=key)
            if len(result) >= count:
                return result[:count] if len(result) > count else result
            if len(entries) - end > 2 * (count - len(result)) + 1:
                starts = list(accumulate(sizes[c + 1:], initial=end))  # bucket j: starts[j - c - 1]
                result = self._deeper(result, c, starts, count, key, skip, exclude, distance)
            elif end < len(entries):
                group = entries[end:].tolist()
                if skip > c and exclude in group:
                    group.remove(exclude)
                group.sort(key=key)
                result += group
            index = c - 1
        else:
            result = []
            start = len(entries)
            index = nbuckets - 1
        while len(result) < count and index >= 0:
            end = start
            start -= sizes[index]
            if start < end:
                group = entries[start:end].tolist()
                if skip == index and exclude in group:
                    group.remove(exclude)
                group.sort(key=key)
                result += group
            index -= 1
        return result[:count] if len(result) > count else result

    def _deeper(self, result: list[int], c: int, bounds: list[int], count: int, key: Any,
                skip: int, exclude: int, distance: int) -> list[int]:
        """`result` and the entries of the groups deeper than c (group j: `entries[bounds[j - c
        - 1]:bounds[j - c]]`, a bucket at b = 1, a prefix group at b > 1), nearest first, group
        by group until `count`: for groups j < j', every entry of j is nearer the target than
        every entry of j' when bit j (from the top) of our `distance` to the target is set,
        farther when it is clear. So: the set ones ascending, then the clear ones descending.
        `exclude` can only be in group `skip`."""
        entries = self._entries
        top = ID_BITS - 1
        deeper = range(c + 1, c + len(bounds))
        for nearer in (1, 0):
            for j in deeper if nearer else reversed(deeper):
                a, b = bounds[j - c - 1], bounds[j - c]
                if a < b and (distance >> (top - j) & 1) == nearer:
                    group = entries[a:b].tolist()
                    if skip == j and exclude in group:
                        group.remove(exclude)
                    group.sort(key=key)
                    result += group
                    if len(result) >= count:
                        return result
        return result

    def _group_size(self, group: int) -> int:
        extra = self._extra
        return sum(self._sizes[group << extra:(group + 1) << extra])

    def _closest_split(self, target: int, count: int, exclude: int) -> list[int]:
        """`closest` with bucket_bits > 1. Prefix group c (the buckets c << B .. (c + 1) << B
        - 1, B = b - 1) is the target's; its buckets are taken nearest first until `count`:
        bucket s's entries differ from the target in bits c+1 .. c+B by s ^ (the target's s),
        so that XOR orders them exactly, and what is taken is sorted once. Then the deeper
        groups (all together when about what is needed, else by `_deeper`),
        then the shallower groups c-1, c-2, ... in turn, each sorted whole."""
        ids, entries, sizes = self._ids, self._entries, self._sizes
        extra = self._extra
        span = 1 << extra
        distance = self.own_id ^ target
        c = ID_BITS - distance.bit_length()
        groups = (len(sizes) + span - 1) >> extra
        key = lambda h: ids[h] ^ target  # noqa: E731
        result: list[int] = []
        if c < groups:
            base = c << extra
            starts = list(accumulate(sizes[base:base + span], initial=sum(sizes[:base])))
            starts += [starts[-1]] * (span + 1 - len(starts))  # a group cut short: empty buckets
            rest = distance.bit_length() - 1  # the target's s: its B bits after bit c
            low = target & ((1 << rest) - 1)
            mine = low >> (rest - extra) if rest >= extra else low << (extra - rest)
            for d in range(span):
                sub = mine ^ d
                if starts[sub] < starts[sub + 1]:
                    result += entries[starts[sub]:starts[sub + 1]]
                    if len(result) > count:
                        break  # whole buckets, nearest first: they hold the `count` nearest
            if exclude >= 0 and exclude in result:
                result.remove(exclude)
            result.sort(key=key)
            if len(result) >= count:
                return result[:count] if len(result) > count else result
            start, end = starts[0], starts[-1]
            if len(entries) - end <= 2 * (count - len(result)) + 1:
                group = entries[end:].tolist()  # every deeper entry: about what is needed
                if exclude >= 0 and exclude in group:
                    group.remove(exclude)
                group.sort(key=key)
                result += group
            else:
                bounds = list(accumulate((self._group_size(j) for j in range(c + 1, groups)),
                                         initial=end))
                skip = ID_BITS - (self.own_id ^ ids[exclude]).bit_length() if exclude >= 0 else -1
                result = self._deeper(result, c, bounds, count, key, skip, exclude, distance)
                if len(result) >= count:
                    return result[:count]
            group_index = c - 1
        else:
            start = len(entries)
            group_index = groups - 1
        while len(result) < count and group_index >= 0:
            end = start
            start -= self._group_size(group_index)
            if start < end:
                group = entries[start:end].tolist()
                if exclude >= 0 and exclude in group:
                    group.remove(exclude)
                group.sort(key=key)
                result += group
            group_index -= 1
        return result[:count] if len(result) > count else result

    # -- learning -------------------------------------------------------------------------------

    def _grow(self, index: int, now: float) -> None:
        old = len(self._sizes)
        extra = ((index >> self._extra) + 1 << self._extra) - old
        self._sizes.extend(bytes(extra))
        self._touched.extend([now] * extra)
        if old + extra > (ID_BITS - self._extra) << self._extra:
            self._never_idle(old)

    def _never_idle(self, start: int) -> None:
        """Buckets from `start` whose range is empty never need a refresh: with bucket_bits > 1,
        index (c << B) | s with fewer than B bits after bit c and a 1 in s's zero padding (no
        ID maps there; `random_id_in_bucket` draws in the one with that padding cleared)."""
        extra, touched = self._extra, self._touched
        for index in range(max(start, (ID_BITS - extra) << extra), len(touched)):
            if self.empty_range(index):
                touched[index] = _INF

    def empty_range(self, index: int) -> bool:
        """Whether no ID maps to bucket `index` (bucket_bits > 1, the last prefix groups only)."""
        padding = self._extra - (ID_BITS - 1 - (index >> self._extra))
        return padding > 0 and index & ((1 << padding) - 1) != 0

    def observe(self, handle: int, now: float, answered: bool = False) -> bool:
        """The contact sent us a datagram from its address (`answered`: a response to a request
        we sent there); return True if it is in the table."""
        ids = self._ids
        node_id = ids[handle]
        distance = self.own_id ^ node_id
        if not distance:
            return False
        index = ID_BITS - distance.bit_length()
        if self._extra:
            index = bucket_of(self.own_id, node_id, self._extra)
        sizes = self._sizes
        if index >= len(sizes):
            self._grow(index, now)
        start = sum(sizes[:index])
        end = start + sizes[index]
        entries = self._entries
        bucket = entries[start:end]
        failures = self._failures
        if handle in bucket:
            if answered:  # a request may be forged: only an answer shows it alive
                if failures:
                    failures.pop(handle, None)
                checks = self._checks
                if checks and handle in checks and checks[handle][1] >= 0:
                    started = checks[handle][2]  # check answered: the entry stays
                    self._set_check(handle, (started + ADDRESS_CHECK_INTERVAL, -1, started, 0))
            return True
        for position, other in enumerate(bucket):
            if ids[other] == node_id:
                # Same ID, new address: believe it only once the old address stopped answering
                # and the new one answered us.
                if answered and failures and other in failures:
                    del failures[other]
                    entries[start + position] = handle
                    if self._held is not None:
                        self._held.add(handle)
                        self._release(other)
                    self._carry_check(other, handle)
                    return True
                return False
        if end - start < self.settings.k:
            entries.insert(end, handle)
            sizes[index] += 1
            if self._held is not None:
                self._held.add(handle)
            cache = self._cache.get(index) if self._cache else None
            if cache and handle in cache:
                cache.remove(handle)
            return True
        self._remember(index, handle)
        return False

    def known(self, handle: int) -> bool:
        """Whether `handle` (this ID at this address) is an entry or in its bucket's cache."""
        held = self._held
        if held is not None:
            return handle in held
        index = ID_BITS - (self.own_id ^ self._ids[handle]).bit_length()  # bucket_index, inline
        if self._extra:
            index = bucket_of(self.own_id, self._ids[handle], self._extra)
        sizes = self._sizes
        if index >= len(sizes):
            return False
        start = sum(sizes[:index])
        if handle in self._entries[start : start + sizes[index]]:
            return True
        cache = self._cache.get(index) if self._cache else None
        return bool(cache) and handle in cache

    def heard(self, handle: int, now: float, answered: bool = False) -> bool | None:
        """`observe(handle, now, answered)` if `known(handle)`, else None: a request or an
        answer from a contact offered to the table, with one walk of its bucket for an entry
        (the common case: an entry heard again, all `observe` would find; issue 15 item 2)."""
        held = self._held
        if held is not None:
            return self.observe(handle, now, answered) if handle in held else None
        index = ID_BITS - (self.own_id ^ self._ids[handle]).bit_length()  # bucket_index, inline
        if self._extra:
            index = bucket_of(self.own_id, self._ids[handle], self._extra)
        sizes = self._sizes
        if index >= len(sizes):
            return None
        start = sum(sizes[:index])
        if handle in self._entries[start : start + sizes[index]]:
            if answered and (self._failures or self._checks):
                return self.observe(handle, now, answered)  # a failure or a check to clear
            return True  # all observe does for an entry
        cache = self._cache.get(index) if self._cache else None
        return self.observe(handle, now, answered) if cache and handle in cache else None

    def admits(self, handle: int, cached: int | None = None) -> bool:
        """Whether an answer from `handle` would change the table: a place in its bucket or the
        bucket's replacement cache, or the place of a failing entry with its ID (`moved`), or a
        check of the old address of an entry with its ID (`check_wanted`). Not when that entry
        was checked lately (its record is kept for ADDRESS_CHECK_INTERVAL).

        `cached` (the routing layer's `cache_probes`): also not when its ID is no entry, its
        bucket is full and the bucket's cache holds `cached` newcomers already (a probe would
        only push an older one out of the cache): the same walk of the bucket answers both,
        asked for every request from a contact the table does not hold (issue 15)."""
        ids = self._ids
        node_id = ids[handle]
        index = ID_BITS - (self.own_id ^ node_id).bit_length()  # bucket_index, inline
        if index >= ID_BITS:
            return False  # our own ID
        if self._extra:
            index = bucket_of(self.own_id, node_id, self._extra)
        sizes = self._sizes
        settings = self.settings
        if index >= len(sizes):
            size = 0
        else:
            start = sum(sizes[:index])
            size = sizes[index]
            for other in self._entries[start : start + size]:
                if ids[other] == node_id:
                    if other == handle:
                        return False
                    failures, checks = self._failures, self._checks
                    return bool(failures) and other in failures or not (checks and other in checks)
        if size < settings.k:
            return True
        if settings.replacement_cache <= 0:
            return False
        if cached is None:
            return True
        cache = self._cache.get(index) if self._cache else None
        return (len(cache) if cache else 0) < cached

    def moved(self, handle: int) -> bool:
        """Whether `handle`'s ID is in the table at another address that has failed a request:
        the claimed new address is worth a request of its own (answered, it takes the place)."""
        failures = self._failures
        if not failures:
            return False
        other = self.find(self._ids[handle])
        return other >= 0 and other != handle and other in failures

    # -- address change: checking the old address ---------------------------------------------

    def check_wanted(self, handle: int, now: float) -> int:
        """`handle` answered our probe, but its ID is an entry at another address that has not
        failed: that entry, whose address is worth a check (a probe; unanswered by its deadline,
        `handle` takes the place), or -1 when there is none or it was checked within
        ADDRESS_CHECK_INTERVAL."""
        old = self.find(self._ids[handle])
        if old < 0 or old == handle or (self._failures and old in self._failures):
            return -1
        checks = self._checks
        if checks and old in checks:
            if now < checks[old][2] + ADDRESS_CHECK_INTERVAL:
                return -1
            del checks[old]  # its timer had not run yet
        return old

    def start_check(self, old: int, new: int, deadline: float, now: float, more: int = 0) -> None:
        """A probe went to entry `old`'s address: unless it answers (`observe(old, answered=
        True)`), at `deadline` the caller sends the next of `more` probes (`continue_check`)
        or, none left, claimed address `new` takes the entry's place."""
        if self._checks is None:
            self._checks = {}
        self._set_check(old, (deadline, new, now, more))
        self.address_checks += 1

    def continue_check(self, old: int, deadline: float, more: int) -> None:
        """Check of `old` still unanswered at its deadline (`expired_checks` gave it with
        probes left): the caller probed again (or could not: `more` unchanged); next step at
        `deadline`."""
        _, new, started, _ = self._checks[old]
        self._set_check(old, (deadline, new, started, more))

    def _set_check(self, old: int, record: tuple[float, int, float, int]) -> None:
        self._checks[old] = record
        heappush(self._check_due, (record[0], old))

    def next_check(self) -> float:
        """When a check's deadline passes or its record is forgotten (inf: none)."""
        checks, due = self._checks, self._check_due
        while due:
            deadline, old = due[0]
            record = checks.get(old) if checks else None
            if record is not None and record[0] == deadline:
                return deadline
            heappop(due)  # stale: answered, moved, forgotten or rescheduled
        return _INF

    def expired_checks(self, now: float) -> list[tuple[int, int, int]]:
        """(old entry, new handle, probes left) of the checks whose deadline passed
        unanswered: with probes left the caller probes again (`continue_check`, which it must
        call); with none the old address failed and the caller moves the entry (`move`).
        Forgets checks older than the interval."""
        checks, heap = self._checks, self._check_due
        expired = []
        while heap and heap[0][0] <= now:
            deadline, old = heappop(heap)
            record = checks.get(old) if checks else None
            if record is None or record[0] != deadline:
                continue  # stale
            _, new, started, more = record
            if new >= 0 and more > 0 and self.find(self._ids[old]) != old:
                more = new = -1  # no longer the entry (removed, moved): the check is over
            if new >= 0:
                expired.append((old, new, more))
                if more > 0:
                    continue  # still running: the caller continues it
            if new >= 0 and now < started + ADDRESS_CHECK_INTERVAL:
                self._set_check(old, (started + ADDRESS_CHECK_INTERVAL, -1, started, 0))
            else:
                del checks[old]
        return expired

    def checking(self) -> Iterator[int]:
        """The entries and claimed new handles of checks running (the registry must keep them:
        a running check names both)."""
        if self._checks:
            for old, (_, new, _, _) in self._checks.items():
                if new >= 0:
                    yield old
                    yield new

    def move(self, old: int, new: int) -> bool:
        """Entry `old` failed its address check: `new` (same ID, another address, it answered a
        probe) takes its place in the bucket. False, and nothing changes, unless `old` is still
        the entry of that ID."""
        ids = self._ids
        if old == new or ids[old] != ids[new] or self.find(ids[old]) != old:
            return False
        index = self.bucket_index(ids[old])
        start = sum(self._sizes[:index])
        position = self._entries.index(old, start, start + self._sizes[index])
        self._entries[position] = new
        if self._failures:
            self._failures.pop(old, None)
            self._failures.pop(new, None)
        cache = self._cache.get(index) if self._cache else None
        if cache and new in cache:
            cache.remove(new)
        if self._held is not None:
            self._held.add(new)
            self._release(old)
        self._carry_check(old, new)
        return True

    def _carry_check(self, old: int, new: int) -> None:
        """The entry moved from `old` to `new`: its ID's next check waits out the interval."""
        checks = self._checks
        if checks and old in checks:
            started = checks.pop(old)[2]  # a check running on `old` is over: it moved anyway
            self._set_check(new, (started + ADDRESS_CHECK_INTERVAL, -1, started, 0))

    def displace(self, handle: int, slower: int) -> bool:
        """Proximity neighbour selection: cached newcomer `handle` takes the place of entry
        `slower` of its bucket (the routing layer measured both and found `handle` faster);
        `slower` goes to the replacement cache (it comes back if `handle` stops answering).
        False, and nothing changes, unless `handle` is cached and `slower` an entry of that
        bucket."""
        ids = self._ids
        index = self.bucket_index(ids[handle])
        cache = self._cache.get(index) if self._cache else None
        if not cache or handle not in cache or index >= len(self._sizes):
            return False
        start = sum(self._sizes[:index])
        end = start + self._sizes[index]
        try:
            position = self._entries.index(slower, start, end)
        except ValueError:
            return False
        if any(ids[h] == ids[handle] for h in self._entries[start:end]):
            return False  # its ID is an entry at another address: the moved rule decides
        cache.remove(handle)
        del self._entries[position]
        self._entries.insert(end - 1, handle)  # the youngest entry
        if self._failures:
            self._failures.pop(slower, None)
        self._remember(index, slower)
        return True

    def _remember(self, index: int, handle: int) -> None:
        limit = self.settings.replacement_cache
        if not limit:
            return
        if self._cache is None:
            self._cache = {}
        cache = self._cache.setdefault(index, [])
        if handle in cache:
            cache.remove(handle)
        cache.append(handle)
        held = self._held
        if held is not None:
            held.add(handle)
        if len(cache) > limit:
            oldest = cache.pop(0)
            if held is not None:
                self._release(oldest)

    def failed(self, handle: int) -> None:
        """A request to the contact went unanswered: replace it, or drop it after repeated failures."""
        index = self.bucket_index(self._ids[handle])
        if index >= len(self._sizes):
            return
        start = sum(self._sizes[:index])
        end = start + self._sizes[index]
        try:
            position = self._entries.index(handle, start, end)
        except ValueError:
            cache = self._cache.get(index) if self._cache else None
            if cache and handle in cache:
                cache.remove(handle)
                if self._held is not None:
                    self._release(handle)
            return
        if self._failures is None:
            self._failures = {}
        count = self._failures.get(handle, 0) + 1
        replacement = self._pop_replacement(index, start, end, handle)
        if replacement >= 0:
            del self._entries[position]
            self._entries.insert(end - 1, replacement)
            self._failures.pop(handle, None)
            if self._held is not None:
                self._release(handle)
        elif count >= self.settings.max_failures:
            del self._entries[position]
            self._sizes[index] -= 1
            self._failures.pop(handle, None)
            if self._held is not None:
                self._release(handle)
        else:
            self._failures[handle] = count

    def _pop_replacement(self, index: int, start: int, end: int, leaving: int) -> int:
        """The most recent cached newcomer whose ID is not in the bucket yet, or -1. (Not
        `leaving`'s ID either: a new address of the failing node takes its place only by
        answering a request, through `observe`.)"""
        cache = self._cache.get(index) if self._cache else None
        if not cache:
            return -1
        ids = self._ids
        present = {ids[h] for h in self._entries[start:end]}
        while cache:
            candidate = cache.pop()
            if ids[candidate] not in present:
                return candidate
            if self._held is not None:
                self._release(candidate)
        return -1

    def remove(self, handle: int) -> bool:
        index = self.bucket_index(self._ids[handle])
        if index >= len(self._sizes):
            return False
        start = sum(self._sizes[:index])
        try:
            position = self._entries.index(handle, start, start + self._sizes[index])
        except ValueError:
            return False
        del self._entries[position]
        self._sizes[index] -= 1
        if self._failures:
            self._failures.pop(handle, None)
        if self._held is not None:
            self._release(handle)
        return True

    def _release(self, handle: int) -> None:
        """`handle` left an entry or a cache: out of `_held` unless it is still in the other
        (observe's same-ID path can leave an entry in its bucket's cache too)."""
        index = self.bucket_index(self._ids[handle])
        start = sum(self._sizes[:index])
        cache = self._cache.get(index) if self._cache else None
        if (handle not in self._entries[start : start + self._sizes[index]]
                and not (cache and handle in cache)):
            self._held.discard(handle)

    def load(self, entries: array, sizes: bytearray, now: float) -> None:
        """Replace the whole table (the simulator's fast bootstrap): `entries` bucket by bucket,
        oldest first, `sizes[c]` entries in bucket c; every bucket counts as refreshed `now`."""
        if sum(sizes) != len(entries):
            raise ValueError("bucket sizes do not add up to the number of entries")
        if sizes and max(sizes) > self.settings.k:
            raise ValueError("a bucket holds more than k entries")
        if len(sizes) & ((1 << self._extra) - 1):  # bucket_bits > 1: whole prefix groups
            sizes = sizes + bytes((1 << self._extra) - len(sizes) % (1 << self._extra))
        self._entries = entries
        self._sizes = sizes
        self._touched = array("d", [now]) * len(sizes)
        if len(sizes) > (ID_BITS - self._extra) << self._extra:
            self._never_idle(0)
        self._cache = None
        self._failures = None
        self._checks = None
        self._check_due = []
        if self._held is not None:
            self._held = set(entries)

    # -- refresh --------------------------------------------------------------------------------

    def touch(self, target: int, now: float) -> None:
        """A lookup went into the bucket covering `target`: that bucket is not idle."""
        index = self.bucket_index(target)
        if index < len(self._touched):
            self._touched[index] = now

    def idle_buckets(self, now: float, interval: float) -> list[int]:
        return [i for i, t in enumerate(self._touched) if t + interval <= now]

    def idle_since(self, buckets: Sequence[int]) -> float:
        """When a lookup last went into the longest idle of `buckets`."""
        touched = self._touched
        return min(touched[index] for index in buckets)

    def touch_group(self, target: int, now: float) -> None:
        """A refresh lookup went into the prefix group covering `target` (bucket_bits > 1,
        RoutingSettings.refresh_groups / join_groups): none of the group's buckets is idle (a
        bucket no ID maps to stays never idle)."""
        extra, touched = self._extra, self._touched
        group = self.bucket_index(target) >> extra
        for index in range(group << extra, min((group + 1) << extra, len(touched))):
            if touched[index] != _INF:
                touched[index] = now

    def group_refreshes(self, buckets: Sequence[int], rng: Random) -> list[tuple[int, list[int]]]:
        """`buckets` (ascending) by prefix group, one refresh a group (bucket_bits > 1,
        RoutingSettings.refresh_groups / join_groups): (the emptiest of them in the group, a
        random one of equals, so that a join's empty groups are refreshed anywhere in them;
        those of the group)."""
        extra, sizes = self._extra, self._sizes
        groups: dict[int, list[int]] = {}
        for index in buckets:
            groups.setdefault(index >> extra, []).append(index)
        refreshes = []
        for group in groups.values():
            held = [sizes[index] if index < len(sizes) else 0 for index in group]
            least = min(held)
            refreshes.append((rng.choice([i for i, n in zip(group, held) if n == least]), group))
        return refreshes

    def group_range_bits(self, index: int) -> int:
        """`range_bits` of bucket `index`'s whole prefix group: its every bucket (our first c
        bits, bit c flipped)."""
        return max(0, ID_BITS - 1 - (index >> self._extra))

    def next_refresh(self, interval: float) -> float | None:
        return min(self._touched) + interval if self._touched else None

    def random_id_in_bucket(self, index: int, rng: Random) -> int:
        """A random ID in bucket `index`'s range (our first c bits, bit c flipped, then s). For
        a bucket whose range is empty (`_never_idle`): the ID of that with s's padding cleared."""
        extra = self._extra
        if not extra:
            low_bits = ID_BITS - 1 - index
            return self.own_id ^ (1 << low_bits) ^ rng.getrandbits(low_bits)
        rest = ID_BITS - 1 - (index >> extra)  # bits after bit c
        s = index & ((1 << extra) - 1)
        prefix = (self.own_id >> rest ^ 1) << rest
        if rest >= extra:
            return prefix | s << (rest - extra) | rng.getrandbits(rest - extra)
        return prefix | s >> (extra - rest)
