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
  study shorter than the refresh interval.

The computation is vectorised with numpy on a 64-bit window of the sorted IDs (below the prefix
all IDs share): one pass counts every node's bucket sizes, a second fills one flat array of
handles bucket by bucket (one lexsort by (subtree, join order) per depth), and tables are cut
from it node by node.
"""

from __future__ import annotations

from array import array
from typing import Iterator, Sequence

import numpy as np

from kadtalk.node.routing.messages import ID_BITS

_MASK64 = (1 << 64) - 1
RULES = ("join", "uptime")


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
    ):
        n = len(ids)
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}")
        if rule == "join" and not 0 <= spread <= k:
            raise ValueError("spread must be between 0 and k")
        if n < 1:
            raise ValueError("no IDs")
        if not 1 <= k <= 255:
            raise ValueError("k must be between 1 and 255")
        order_list = sorted(range(n), key=ids.__getitem__)
        lowest, highest = ids[order_list[0]], ids[order_list[-1]]
        self.common = ID_BITS - (lowest ^ highest).bit_length() if n > 1 else ID_BITS
        width = min(64, ID_BITS - self.common)  # bits of the window below the common prefix
        shift = ID_BITS - self.common - width
        keys = np.fromiter(((ids[i] >> shift) & _MASK64 for i in order_list), np.uint64, n)
        if n > 1 and not bool(np.all(keys[1:] > keys[:-1])):
            raise ValueError("two IDs share more than 64 bits below their common prefix (or repeat)")
        order = np.asarray(order_list, dtype=np.int64)
        del order_list
        if age_rank is None:
            age = order  # node i joined i-th
        else:
            age = np.asarray(age_rank, dtype=np.int64)[order]
        self.k = k
        self._n = n
        self._keys = keys
        self._width = width
        self._order = order

        # Pass 1: bucket sizes. Bucket common + r can be non-empty while two IDs share r bits
        # below the common prefix.
        counts = []
        for r in range(width):
            lo, hi = self._sibling_ranges(r)
            counts.append(np.minimum(hi - lo, k).astype(np.uint8))
            if r + 1 == width:
                break
            deeper = keys >> np.uint64(width - r - 1)
            if not bool(np.any(deeper[1:] == deeper[:-1])):
                break  # no two IDs share r + 1 bits: no deeper bucket has anyone
        depths = len(counts)
        sizes = np.zeros((n, self.common + depths), dtype=np.uint8)
        for r, size in enumerate(counts):
            sizes[:, self.common + r] = size
        del counts
        totals = sizes.sum(axis=1, dtype=np.int64)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(totals, out=starts[1:])

        # Pass 2: fill the flat handle array, depth by depth.
        flat = np.empty(int(starts[-1]), dtype=np.int32)
        filled = starts[:-1].copy()  # next free slot of each node (by sorted position)
        rng = np.random.default_rng(seed)
        for r in range(depths):
            count = sizes[:, self.common + r].astype(np.int64)
            rows = np.flatnonzero(count)
            if rows.size == 0:
                continue
            lo, hi = self._sibling_ranges(r)
            prefix = keys >> np.uint64(width - r - 1)
            if int((hi - lo).max()) > 1:
                by_age = np.lexsort((age, prefix))  # positions by (subtree, join order)
            else:
                by_age = np.arange(n)
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
        self._position = np.empty(n, dtype=np.int64)
        self._position[order] = np.arange(n)

    @staticmethod
    def _join_choice(
        lo: np.ndarray, hi: np.ndarray, k: int, spread: int, age: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """For ranges [lo, hi) of more than k nodes: `spread` positions spread over the range (one
        per stratum) and k - spread consecutive ones at a random place; oldest first per row."""
        cluster = k - spread
        start = lo + (rng.random(lo.size) * (hi - lo - cluster + 1)).astype(np.int64)
        chosen = start[:, None] + np.arange(cluster)
        if spread:
            rest = hi - lo - cluster  # > spread, since the range holds more than k
            bounds = (np.arange(spread + 1) * rest[:, None]) // spread  # strata of >= 1 node
            width = np.diff(bounds, axis=1)
            offset = bounds[:, :-1] + (rng.random((lo.size, spread)) * width).astype(np.int64)
            spread_pos = lo[:, None] + offset
            spread_pos += np.where(spread_pos >= start[:, None], cluster, 0)  # skip the cluster
            chosen = np.concatenate([chosen, spread_pos], axis=1)
        return np.take_along_axis(chosen, np.argsort(age[chosen], axis=1, kind="stable"), axis=1)

    def _sibling_ranges(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """For each node (by sorted position): the index range of its sibling subtree at depth r+1."""
        prefix = self._keys >> np.uint64(self._width - r - 1)
        sibling = prefix ^ np.uint64(1)
        return (
            np.searchsorted(prefix, sibling, side="left").astype(np.int64),
            np.searchsorted(prefix, sibling, side="right").astype(np.int64),
        )

    def __len__(self) -> int:
        return self._n

    @property
    def entries_total(self) -> int:
        return len(self._flat)

    def entries(self, index: int) -> array:
        """Node `index`'s handles, bucket by bucket (bucket ascending, oldest first inside)."""
        p = int(self._position[index])
        table = array("i")
        table.frombytes(self._flat[self._starts[p] : self._starts[p + 1]].tobytes())
        return table

    def sizes(self, index: int) -> bytearray:
        p = int(self._position[index])
        return bytearray(self._sizes[p, : self._last[p]].tobytes())

    def tables(self) -> Iterator[tuple[int, array, bytearray]]:
        """(node index, entries, sizes) for every node, cheapest order first."""
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
