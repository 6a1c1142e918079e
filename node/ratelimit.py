"""Token buckets against floods: one for the whole node, one per source while the node is busy.

Time comes in as `now`, like everything in the node. A full bucket holds no information (a new
one starts full), so forgetting it loses nothing. Per-source buckets start when the global
budget falls below half (the node is under load) and are dropped once the global budget is full
again and every source is back within its own (checked at most once a second); at most
`max_sources` of them are kept, oldest forgotten first. So an idle node (or a million simulated
ones) keeps no per-source state, and a flood from many forged sources cannot grow memory.
A source given as an IPv6 address string counts by its /64 (kadtalk.node.addresses.host_key):
one host may hold a whole /64, so each of its addresses must not get a budget of its own.
"""

from __future__ import annotations

from typing import Any

from .addresses import host_key


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def level(self, now: float) -> float:
        """Tokens available at `now` (refilled; time never runs backwards here)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        if self.level(now) >= cost:
            self.tokens -= cost
            return True
        return False


class FloodGuard:
    """Admits work from a source: None when allowed, else the drop reason."""

    __slots__ = (
        "_global", "_sources", "source_rate", "source_burst", "max_sources", "always", "_review_at",
    )

    def __init__(
        self,
        global_rate: float,
        global_burst: float,
        source_rate: float,
        source_burst: float,
        now: float,
        max_sources: int = 4096,
        always: bool = False,
    ):
        """`always`: meter each source even when the node is idle (for costly work such as a
        key exchange's public-key operations)."""
        self._global = TokenBucket(global_rate, global_burst, now)
        self._sources: dict[Any, TokenBucket] | None = None
        self.source_rate = source_rate
        self.source_burst = source_burst
        self.max_sources = max_sources
        self.always = always
        self._review_at = now

    def check(self, source: Any, now: float, cost: float = 1.0) -> str | None:
        """None if `source` may do work costing `cost` tokens now (taken from its bucket and the
        global one), else the reason. A cost above a bucket's burst takes the whole burst."""
        if type(source) is str and ":" in source:
            source = host_key(source)  # an IPv6 host: its /64
        shared = self._global
        if now > shared.stamp:  # shared.level(now), inline: this runs for every request served
            shared.tokens = min(shared.burst, shared.tokens + (now - shared.stamp) * shared.rate)
            shared.stamp = now
        level = shared.tokens
        sources = self._sources
        if sources is not None and now >= self._review_at:
            self._review_at = now + 1.0
            if level >= shared.burst and all(b.level(now) >= b.burst for b in sources.values()):
                sources = self._sources = None  # the load is over, nobody over budget: forget
        if sources is None and (self.always or level < shared.burst / 2):
            sources = self._sources = {}  # busy: start accounting per source
            self._review_at = now + 1.0
        if sources is not None:
            bucket = sources.pop(source, None)  # re-inserted last: most recent
            if bucket is None:
                if len(sources) >= self.max_sources:
                    del sources[next(iter(sources))]
                bucket = TokenBucket(self.source_rate, self.source_burst, now)
            sources[source] = bucket
            if now > bucket.stamp:  # bucket.take(now, ...), inline as for the global bucket
                bucket.tokens = min(bucket.burst, bucket.tokens + (now - bucket.stamp) * bucket.rate)
                bucket.stamp = now
            need = min(cost, bucket.burst)
            if bucket.tokens < need:
                return "rate_limited_source"
            bucket.tokens -= need
        cost = min(cost, shared.burst)  # shared.take(now, ...): the level is current already
        if shared.tokens >= cost:
            shared.tokens -= cost
            return None
        return "rate_limited"

    def ready(self, source: Any, now: float) -> bool:
        """Whether `source` could do one unit of work now (nothing is taken)."""
        if type(source) is str and ":" in source:
            source = host_key(source)
        bucket = self._sources.get(source) if self._sources else None
        return bucket is None or bucket.level(now) >= 1.0

    @property
    def tracked_sources(self) -> int:
        return len(self._sources) if self._sources else 0
