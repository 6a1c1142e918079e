"""Token buckets and the flood guard, driven with explicit `now`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from kadtalk.node.ratelimit import FloodGuard, TokenBucket


def test_bucket_starts_full_refills_at_rate_and_caps_at_burst():
    bucket = TokenBucket(rate=10, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1) and not bucket.take(0.1)  # 0.1 s x 10/s = one token
    assert bucket.level(100.0) == 5


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(0, 5, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0.5, 0.0)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.floats(0, 2), st.integers(0, 50)), max_size=50))
def test_bucket_never_admits_more_than_burst_plus_rate_times_time(steps):
    bucket = TokenBucket(rate=7, burst=11, now=0.0)
    now = 0.0
    admitted = 0
    for dt, tries in steps:
        now += dt
        admitted += sum(bucket.take(now) for _ in range(tries))
        assert admitted <= 11 + 7 * now + 1e-9
        assert 0 <= bucket.tokens <= 11


def test_idle_guard_keeps_no_per_source_state():
    guard = FloodGuard(100, 200, 5, 10, 0.0)
    for i in range(50):
        assert guard.check(("10.0.0.%d" % i, 1), i * 0.1) is None
    assert guard.tracked_sources == 0


def test_busy_guard_limits_the_flooder_and_keeps_serving_others():
    guard = FloodGuard(100, 200, 5, 10, 0.0)
    flooder, honest = ("203.0.113.9", 6666), ("10.0.0.2", 5004)
    results = [guard.check(flooder, 0.0) for _ in range(300)]
    assert results.count(None) < 150  # once the node is busy, the flooder is held to its budget
    assert "rate_limited_source" in results
    assert guard.check(honest, 0.0) is None  # others still get through
    assert guard.check(flooder, 0.0) == "rate_limited_source"


def test_many_forged_sources_are_bounded_by_the_global_budget_and_memory_cap():
    guard = FloodGuard(100, 200, 5, 10, 0.0, max_sources=64)
    admitted = sum(guard.check(("198.51.100.1", port), 0.0) is None for port in range(5000))
    assert admitted == 200  # the burst, no more
    assert guard.tracked_sources == 64


def test_per_source_state_is_forgotten_when_the_load_is_over():
    guard = FloodGuard(100, 200, 5, 10, 0.0)
    for _ in range(150):
        guard.check(("203.0.113.9", 1), 0.0)
    assert guard.tracked_sources == 1
    assert guard.check(("10.0.0.2", 1), 1.0) is None
    assert guard.tracked_sources == 2  # the flooder's bucket is not full yet: keep watching
    assert guard.check(("10.0.0.2", 1), 10.0) is None  # all refilled: the load is over
    assert guard.tracked_sources == 0


def test_always_mode_meters_each_source_from_the_first_request():
    guard = FloodGuard(100, 200, 2, 8, 0.0, always=True)
    source = ("198.51.100.7", 1)
    assert [guard.check(source, 0.0) for _ in range(9)][-2:] == [None, "rate_limited_source"]
    assert guard.check(("198.51.100.8", 1), 0.0) is None
    assert guard.check(source, 0.5) is None  # 0.5 s x 2/s = one token


def test_costly_work_takes_more_tokens_and_at_most_a_whole_burst():
    guard = FloodGuard(100.0, 100.0, 2.0, 8.0, 0.0, always=True)
    assert guard.check("a", 0.0, cost=6) is None
    assert guard.check("a", 0.0, cost=6) == "rate_limited_source"  # 2 left
    assert guard.check("b", 0.0, cost=50) is None  # above the burst: takes the whole burst
    assert guard.check("b", 0.0) == "rate_limited_source"
    assert guard.check("c", 0.0) is None  # the default cost is one token
