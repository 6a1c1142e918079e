"""Fast bootstrap: converged routing tables computed from the global ID list.

Joining a million nodes through the protocol would take days of wall time; this fills every
node's table directly with what the protocol's join leaves behind in a network without churn.
Node i joined i-th (or in `age_rank` order). For node x:

- bucket c covers the IDs sharing exactly c leading bits with x (the sibling subtree at depth
  c + 1), as `RoutingTable` does; a range of at most k nodes is held completely (the join's
  own-ID lookup and the refreshes find them all);
- a larger range ("join" rule, the default) holds what a refresh lookup of a random ID in it
  hears first: `spread` entries spread over the range (the first round of α answers comes from
  far apart) and k - spread consecutive IDs around a random point (the refresh target's
  neighbourhood). With spread = α = 3 lookups on these tables match lookups after a real
  join by protocol (tests/sim/test_bootstrap.py: KS test on latency, RPCs, hops);
- the "uptime" rule keeps the k nodes that joined first: the idealised table the uptime rule
  alone gives when every node hears from every other in join order. Its entries are spread
  evenly, so lookups are about 15 % shorter than after a real join (the same test shows it);
- entries are ordered oldest first inside a bucket, as the table keeps them; replacement caches
  start empty; every bucket counts as just refreshed, so no maintenance traffic starts during a
  study shorter than the refresh interval;
- with b bits a hop (`bucket_bits` b > 1, RoutingSettings.bucket_bits, Kademlia section 4.2)
  bucket c is split into 2^(b-1) sub-buckets by the b - 1 ID bits after bit c (zero-padded on
  the right past the last bit): index (c << (b-1)) | s, each sub-bucket's range filled by the
  rule above. Tables list their entries by index ascending, `sizes` one byte per index. With
  b = 1 the tables are those of before sub-buckets, byte for byte (tests/sim/
  test_bootstrap_bits.py pins digests).

The computation is vectorised with numpy on a 64-bit window of the sorted IDs (below the prefix
all IDs share): one pass counts every node's bucket sizes, a second fills one flat array of
handles bucket by bucket (one lexsort by (subtree, join order) per depth), and tables are cut
from it node by node. Sub-buckets split each node's sibling range by searchsorted on the keys
(2^(b-1) - 1 searches per node and depth).

`store="rows"` keeps no table at all: only the sorted window, the join order and the random
draws of the join rule (16 bytes per node and bucket whose range holds more than k: with
sub-buckets about 2^(b-1) times as many: a 10^6-node build peaks at 0.55 GB with b = 1, 2.1 GB
with b = 4), and
`row(i)` derives node i's table on demand, equal to what the flat array holds (a test checks
every table). That is what lets untouched nodes of a 10^7 network stay rows (sim/lazy.py):
the flat array would take ~16 GB there.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterator, Sequence

import numpy as np

from kadtalk.node.routing.messages import ID_BITS
from kadtalk.node.routing.table import check_bucket_bits

_MASK64 = (1 << 64) - 1
RULES = ("join", "uptime")
STORES = ("flat", "rows")  # every table in one flat array, or each derived on demand


class ConvergedTables:
    """Every node's converged table: `entries(i)` (handles, bucket by bucket) and `sizes(i)`.

    `ids[i]` is node i's ID and handle i its contact (the simulator's shared registry);
    `age_rank[i]` orders joins (smaller joined earlier; default: node i joined i-th).
    """

    def __init__(
        self,
        ids: Sequence[int],
        k: int,
        age_rank: Sequence[int] | None = None,
        rule: str = "join",
        spread: int = 3,
        seed: int = 0,
        store: str = "flat",
        bucket_bits: int = 1,
    ):
        n = len(ids)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}")
        if store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}")
        if store == "rows" and rule != "join":
            raise ValueError("tables are derived as rows for the join rule only")
        if rule == "join" and not 0 <= spread <= k:
            raise ValueError("spread must be between 0 and k")
        if n < 1:
            raise ValueError("no IDs")
        if not 1 <= k <= 255:
            raise ValueError("k must be between 1 and 255")
        check_bucket_bits(bucket_bits)
        order_list = sorted(range(n), key=ids.__getitem__)
        lowest, highest = ids[order_list[0]], ids[order_list[-1]]
        self.common = ID_BITS - (lowest ^ highest).bit_length() if n > 1 else ID_BITS
        width = min(64, ID_BITS - self.common)  # bits of the window below the common prefix
        shift = ID_BITS - self.common - width
        keys = np.fromiter(((ids[i] >> shift) & _MASK64 for i in order_list), np.uint64, n)
        if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("two IDs share more than 64 bits below their common prefix (or repeat)")
        bits = bucket_bits - 1
        if bits and shift and n > 1:
            # a sub-bucket at depth r reads window bits r+1 .. r+bits: they must be in the window
            shared = width - int((keys[1:] ^ keys[:-1]).min()).bit_length()
            if shared + bits >= width:
                raise ValueError(f"two IDs share more than {width - 1 - bits} bits below their "
                                 f"common prefix: too many for bucket_bits={bucket_bits}")
        order = np.asarray(order_list, dtype=np.int64)
        del order_list
        if age_rank is None:
            age = order  # node i joined i-th
        else:
            age = np.asarray(age_rank, dtype=np.int64)[order]
        self.k = k
        self.bucket_bits = bucket_bits
        self._bits = bits
        self._n = n
        self._keys = keys
        self._width = width
        self._order = order
        self._position = np.empty(n, dtype=np.int64)
        self._position[order] = np.arange(n)
        self.store = store
        if store == "rows":
            self._draw_rows(age, spread, seed)
            return

        # Pass 1: bucket sizes. Bucket common + r can be non-empty while two IDs share r bits
        # below the common prefix; with bucket_bits its 2^bits sub-buckets are indices
        # ((common + r) << bits) | s.
        counts = []
        for r in range(width):
            for lo, hi in self._sub_ranges(r):
                counts.append(np.minimum(hi - lo, k).astype(np.uint8))
            if r + 1 == width:
                break
            deeper = keys >> np.uint64(width - r - 1)
            if not bool(np.any(deeper[1:] == deeper[:-1])):
                break  # no two IDs share r + 1 bits: no deeper bucket has anyone
        depths = len(counts) >> bits
        first_index = self.common << bits
        sizes = np.zeros((n, first_index + len(counts)), dtype=np.uint8)
        for index, size in enumerate(counts):
            sizes[:, first_index + index] = size
        del counts
        totals = sizes.sum(axis=1, dtype=np.int64)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(totals, out=starts[1:])

        # Pass 2: fill the flat handle array, depth by depth (sub-bucket by sub-bucket).
        flat = np.empty(int(starts[-1]), dtype=np.int32)
        filled = starts[:-1].copy()  # next free slot of each node (by sorted position)
        rng = np.random.default_rng(seed)
        for r in range(depths):
            column = first_index + (r << bits)
            if not sizes[:, column : column + (1 << bits)].any():
                continue
            ranges = self._sub_ranges(r)
            # positions by (sub-bucket's subtree, join order): each range is one subtree
            prefix = keys >> np.uint64(max(0, width - r - 1 - bits))
            if int(max((hi - lo).max() for lo, hi in ranges)) > 1:
                by_age = np.lexsort((age, prefix))
            else:
                by_age = np.arange(n)
            for s, (lo, hi) in enumerate(ranges):
                count = sizes[:, column + s].astype(np.int64)
                rows = np.flatnonzero(count)
                if rows.size == 0:
                    continue
                m = count[rows]
                first = np.cumsum(m) - m
                j = np.arange(int(m.sum())) - np.repeat(first, m)
                source = by_age[np.repeat(lo[rows], m) + j]  # the k oldest of each range
                if rule == "join":
                    big = rows[(hi - lo)[rows] > k]
                    if big.size:
                        chosen = self._join_choice(lo[big], hi[big], k, spread, age, rng)
                        is_big = np.zeros(n, dtype=bool)
                        is_big[big] = True
                        source[np.repeat(is_big[rows], m)] = chosen.ravel()
                flat[np.repeat(filled[rows], m) + j] = order[source]
                filled[rows] += m
        # Trailing empty buckets are not kept: a table has buckets up to its deepest entry.
        nonzero = sizes != 0
        last = sizes.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
        last[~nonzero.any(axis=1)] = 0
        self._flat = flat
        self._starts = starts
        self._sizes = sizes
        self._last = last

    @staticmethod
    def _join_choice(
        lo: np.ndarray, hi: np.ndarray, k: int, spread: int, age: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """For ranges [lo, hi) of more than k nodes: `spread` positions spread over the range (one
        per stratum) and k - spread consecutive ones at a random place; oldest first per row."""
        start, offset = ConvergedTables._join_draws(lo, hi, k, spread, rng)
        return ConvergedTables._join_positions(lo, start, offset, k, age)

    @staticmethod
    def _join_draws(
        lo: np.ndarray, hi: np.ndarray, k: int, spread: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The join rule's random part: where the cluster starts, and each spread entry's offset
        from lo (before the cluster is skipped)."""
        cluster = k - spread
        start = lo + (rng.random(lo.size) * (hi - lo - cluster + 1)).astype(np.int64)
        if not spread:
            return start, None
        rest = hi - lo - cluster  # > spread, since the range holds more than k
        bounds = (np.arange(spread + 1) * rest[:, None]) // spread  # strata of >= 1 node
        width = np.diff(bounds, axis=1)
        offset = bounds[:, :-1] + (rng.random((lo.size, spread)) * width).astype(np.int64)
        return start, offset

    @staticmethod
    def _join_positions(
        lo: np.ndarray, start: np.ndarray, offset: np.ndarray | None, k: int, age: np.ndarray
    ) -> np.ndarray:
        """The positions the draws pick, per row (cluster, then spread), oldest first."""
        cluster = k - (0 if offset is None else offset.shape[1])
        chosen = start[:, None] + np.arange(cluster)
        if offset is not None:
            spread_pos = lo[:, None] + offset
            spread_pos += np.where(spread_pos >= start[:, None], cluster, 0)  # skip the cluster
            chosen = np.concatenate([chosen, spread_pos], axis=1)
        return np.take_along_axis(chosen, np.argsort(age[chosen], axis=1, kind="stable"), axis=1)

    def _draw_rows(self, age: np.ndarray, spread: int, seed: int) -> None:
        """store="rows": the draws of the flat fill, in its order (depth by depth, sub-bucket by
        sub-bucket, rows by sorted position), kept per node and bucket index (below the common
        prefix) as (cluster start - lo, spread offsets from lo)."""
        n, k, keys, width, bits = self._n, self.k, self._keys, self._width, self._bits
        # A range of more than k nodes at depth r needs k + 1 IDs sharing r + 1 + bits bits:
        # the deepest such depth bounds the draws' block, allocated once.
        if n > k:
            closest = int((keys[k:] ^ keys[:-k]).min())
            big_depths = max(0, min(width, width - closest.bit_length()) - bits)
        else:
            big_depths = 0
        self._draws = (np.zeros((n, big_depths << bits, 1 + spread), dtype=np.uint32)
                       if big_depths else None)
        rng = np.random.default_rng(seed)
        for r in range(big_depths):  # the flat fill's draws, depth by depth
            for s, (lo, hi) in enumerate(self._sub_ranges(r)):
                big = np.flatnonzero(hi - lo > k)
                if big.size:
                    start, offset = self._join_draws(lo[big], hi[big], k, spread, rng)
                    self._draws[big, (r << bits) | s, 0] = start - lo[big]
                    if offset is not None:
                        self._draws[big, (r << bits) | s, 1:] = offset
                del lo, hi, big
        # Depths with a bucket: up to the longest prefix two IDs share (the flat fill's pass 1
        # stops there too).
        if n > 1:
            shared = width - int((keys[1:] ^ keys[:-1]).min()).bit_length()
            depths = min(width, shared + 1)
        else:
            depths = 0
        self._spread = spread
        self._age = None if age is self._order else age  # None: nodes joined in index order
        self._depths = depths
        # bisect on a list of ints: a node's subtree narrows depth by depth, so each search
        # stays inside the last one's range (~40 bytes a node)
        self._keylist = keys.tolist()
        self._orderlist = self._order.tolist()
        self._agelist = None if self._age is None else self._age.tolist()

    def row(self, index: int) -> tuple[array, bytearray]:
        """Node `index`'s table (entries, sizes): a slice of the flat array, or derived from the
        draws with store="rows" (the same table)."""
        if self.store == "flat":
            return self.entries(index), self.sizes(index)
        p = int(self._position[index])
        if self._bits:
            return self._row_split(p)
        k, keys, width, n = self.k, self._keylist, self._width, self._n
        key = keys[p]
        draws = self._draws[p].tolist() if self._draws is not None else ()
        cluster = k - self._spread
        order, age = self._orderlist, self._agelist
        entries: list[int] = []
        counts = bytearray(self.common)
        last = 0
        low, high = 0, n  # the IDs sharing r bits with this one (its subtree at depth r)
        for r in range(self._depths):
            if high - low == 1:
                break  # alone in its subtree: no deeper bucket has anyone
            shift = width - 1 - r
            middle = bisect_left(keys, ((key >> shift) | 1) << shift, low, high)
            if (key >> shift) & 1:
                lo, hi, low = low, middle, middle  # the sibling subtree is the lower half
            else:
                lo, hi, high = middle, high, middle
            size = hi - lo
            if not size:
                counts.append(0)
                continue
            if age is None:  # node i joined i-th: oldest first is smallest handle first
                if size <= k:  # the whole range
                    bucket = order[lo:hi]
                    counts.append(size)
                else:  # the join rule's choice (_join_positions): a cluster, the spread ones
                    start = lo + draws[r][0]
                    bucket = order[start : start + cluster]
                    for offset in draws[r][1:]:
                        at = lo + offset
                        bucket.append(order[at + cluster if at >= start else at])
                    counts.append(k)
                bucket.sort()
            else:  # by join order; ties keep the flat fill's order (sorts are stable)
                if size <= k:
                    chosen = list(range(lo, hi))
                else:
                    start = lo + draws[r][0]
                    chosen = list(range(start, start + cluster))
                    for offset in draws[r][1:]:
                        at = lo + offset
                        chosen.append(at + cluster if at >= start else at)
                counts.append(len(chosen))
                chosen.sort(key=age.__getitem__)
                bucket = [order[q] for q in chosen]
            entries += bucket
            last = len(counts)
        del counts[last:]
        return array("i", entries), counts

    def _row_split(self, p: int) -> tuple[array, bytearray]:
        """`row` with sub-buckets (bucket_bits > 1): each depth's sibling range split by the next
        `bits` ID bits as `_sub_ranges` splits it, each part chosen as `row` chooses a range.
        It would give b = 1's tables too, but `row` keeps its own loop for them: through this
        one, row() took 1.43x the CPU at 10^6 nodes (2.93 against 2.04 s per 20,000 rows,
        docs/measurements/bootstrap-bits-2026-12-07-buildtime.py), and every lazily built node
        of a 10^6-10^7 study pays it."""
        k, keys, width, n, bits = self.k, self._keylist, self._width, self._n, self._bits
        key = keys[p]
        draws = self._draws[p].tolist() if self._draws is not None else ()
        cluster = k - self._spread
        order, age = self._orderlist, self._agelist
        entries: list[int] = []
        counts = bytearray(self.common << bits)
        last = 0
        low, high = 0, n  # the IDs sharing r bits with this one (its subtree at depth r)
        for r in range(self._depths):
            if high - low == 1:
                break  # alone in its subtree: no deeper bucket has anyone
            shift = width - 1 - r
            middle = bisect_left(keys, ((key >> shift) | 1) << shift, low, high)
            if (key >> shift) & 1:
                lo, hi, low = low, middle, middle  # the sibling subtree is the lower half
            else:
                lo, hi, high = middle, high, middle
            if hi == lo:
                counts.extend(bytes(1 << bits))
                continue
            used = min(bits, shift)  # below the window's last bit, s is zero-padded
            pad = bits - used
            base = ((key >> shift) ^ 1) << shift
            bounds = [lo]
            for t in range(1, 1 << used):
                bounds.append(bisect_left(keys, base + (t << (shift - used)), lo, hi))
            bounds.append(hi)
            for t in range(1 << used):
                lo, hi = bounds[t], bounds[t + 1]
                size = hi - lo
                if age is None:  # node i joined i-th: oldest first is smallest handle first
                    if size <= k:  # the whole range
                        bucket = order[lo:hi]
                    else:  # the join rule's choice (_join_positions): a cluster, the spread ones
                        draw = draws[(r << bits) | (t << pad)]
                        start = lo + draw[0]
                        bucket = order[start : start + cluster]
                        for offset in draw[1:]:
                            at = lo + offset
                            bucket.append(order[at + cluster if at >= start else at])
                    bucket.sort()
                else:  # by join order; ties keep the flat fill's order (sorts are stable)
                    if size <= k:
                        chosen = list(range(lo, hi))
                    else:
                        draw = draws[(r << bits) | (t << pad)]
                        start = lo + draw[0]
                        chosen = list(range(start, start + cluster))
                        for offset in draw[1:]:
                            at = lo + offset
                            chosen.append(at + cluster if at >= start else at)
                    chosen.sort(key=age.__getitem__)
                    bucket = [order[q] for q in chosen]
                counts.append(len(bucket))
                if bucket:
                    entries += bucket
                    last = len(counts)
                if pad:
                    counts.extend(bytes((1 << pad) - 1))
        del counts[last:]
        return array("i", entries), counts

    def _sibling_ranges(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """For each node (by sorted position): the index range of its sibling subtree at depth r+1."""
        prefix = self._keys >> np.uint64(self._width - r - 1)
        sibling = prefix ^ np.uint64(1)
        return (
            np.searchsorted(prefix, sibling, side="left").astype(np.int64),
            np.searchsorted(prefix, sibling, side="right").astype(np.int64),
        )

    def _sub_ranges(self, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each node (by sorted position): the index range [lo, hi) of each of the 2^bits
        sub-buckets of bucket common + r, s = 0, 1, ...: its sibling subtree at depth r + 1 split
        by the next `bits` bits. Below the window's last bit a sub-bucket's s is zero-padded on
        the right (the table's rule), so only every 2^(bits - rest)-th s can hold anyone."""
        lo, hi = self._sibling_ranges(r)
        bits = self._bits
        if not bits:
            return [(lo, hi)]
        rest = self._width - 1 - r  # window bits below the differing bit
        used = min(bits, rest)
        pad = bits - used
        keys = self._keys
        rest64 = np.uint64(rest)
        base = ((keys >> rest64) ^ np.uint64(1)) << rest64  # the sibling subtree's lowest key
        bounds = [lo]
        for t in range(1, 1 << used):
            bounds.append(np.searchsorted(keys, base + np.uint64(t << (rest - used))).astype(np.int64))
        bounds.append(hi)
        ranges = []
        for t in range(1 << used):
            ranges.append((bounds[t], bounds[t + 1]))
            ranges += [(hi, hi)] * ((1 << pad) - 1)  # s not a multiple of 2^pad: nobody
        return ranges

    def __len__(self) -> int:
        return self._n

    @property
    def entries_total(self) -> int:
        if self.store == "rows":
            return sum(len(self.row(i)[0]) for i in range(self._n))
        return len(self._flat)

    def entries(self, index: int) -> array:
        """Node `index`'s handles, bucket by bucket (bucket ascending, oldest first inside)."""
        if self.store == "rows":
            return self.row(index)[0]
        p = int(self._position[index])
        table = array("i")
        table.frombytes(self._flat[self._starts[p] : self._starts[p + 1]].tobytes())
        return table

    def sizes(self, index: int) -> bytearray:
        if self.store == "rows":
            return self.row(index)[1]
        p = int(self._position[index])
        return bytearray(self._sizes[p, : self._last[p]].tobytes())

    def tables(self) -> Iterator[tuple[int, array, bytearray]]:
        """(node index, entries, sizes) for every node, cheapest order first."""
        if self.store == "rows":
            for index in self._order.tolist():
                yield index, *self.row(index)
            return
        flat = memoryview(self._flat).cast("B")
        starts = (self._starts * 4).tolist()
        sizes = self._sizes
        last = self._last.tolist()
        for p, index in enumerate(self._order.tolist()):
            table = array("i")
            table.frombytes(flat[starts[p] : starts[p + 1]])
            yield index, table, bytearray(sizes[p, : last[p]].tobytes())

    def release(self) -> None:
        """Free the flat arrays once the tables are loaded."""
        self._flat = self._starts = self._sizes = self._last = None  # type: ignore[assignment]
        self._keys = self._order = self._position = None  # type: ignore[assignment]
        self._draws = self._age = self._keylist = self._orderlist = self._agelist = None
