"""The per-/24 defence on converged tables: at most `limit` entries of one /24 per bucket
(RoutingSettings.max_per_subnet), applied after the fast bootstrap as it would be on arrival."""

from __future__ import annotations

from typing import Any, Sequence


class SubnetLimit:
    """Converged "uptime" tables under the per-/24 limit: a bucket holding more than `limit`
    entries of one /24 is chosen again from its whole range, oldest first, skipping nodes of a
    /24 that already has `limit` entries there (what the limit, applied as nodes arrive, leaves
    behind: the room the attacker cannot take goes to the next oldest honest nodes)."""

    def __init__(
        self,
        ids: Sequence[int],
        age_rank: Sequence[int],
        subnets: Sequence[int],
        k: int,
        limit: int,
    ):
        self.order = sorted(range(len(ids)), key=ids.__getitem__)
        self.keys = [ids[i] for i in self.order]
        self.age_rank, self.subnets, self.k, self.limit = age_rank, subnets, k, limit

    def table(self, own: int, entries: Any, sizes: bytearray) -> tuple[Any, bytearray, int]:
        from array import array
        from bisect import bisect_left

        subnets, limit = self.subnets, self.limit
        out, new_sizes, changed, pos = array("i"), bytearray(sizes), 0, 0
        for c, size in enumerate(sizes):
            bucket = entries[pos : pos + size]
            pos += size
            counts: dict[int, int] = {}
            for h in bucket:
                counts[subnets[h]] = counts.get(subnets[h], 0) + 1
            if not counts or max(counts.values()) <= limit:
                out.extend(bucket)
                continue
            shift = 159 - c
            low = ((own >> shift) ^ 1) << shift
            lo, hi = bisect_left(self.keys, low), bisect_left(self.keys, low + (1 << shift))
            chosen: list[int] = []
            per: dict[int, int] = {}
            for h in sorted(self.order[lo:hi], key=self.age_rank.__getitem__):
                if per.get(subnets[h], 0) >= limit:
                    continue
                per[subnets[h]] = per.get(subnets[h], 0) + 1
                chosen.append(h)
                if len(chosen) == self.k:
                    break
            changed += len(set(bucket) - set(chosen))
            out.extend(chosen)
            new_sizes[c] = len(chosen)
        return out, new_sizes, changed
