"""Fast bootstrap: the tables it computes follow the table's rules, and lookups on them behave
like lookups on tables built by the protocol's own join."""

from __future__ import annotations

import math
from random import Random

import pytest
from hypothesis import given, settings, strategies as st

from kadtalk.experiments.lookup import LookupStudy, run_lookup_study
from kadtalk.experiments.testbed_study import ks_distance
from kadtalk.node.routing.table import RoutingTable, TableSettings
from kadtalk.sim.bootstrap import ConvergedTables

ID_BITS = 160


def tables_by_observing(ids: list[int], k: int) -> list[tuple[list[int], bytes]]:
    """What RoutingTable itself keeps when every node hears from every other in join order."""
    result = []
    for own in ids:
        table = RoutingTable(own, ids, TableSettings(k=k, replacement_cache=0))
        for handle in range(len(ids)):
            table.observe(handle, 0.0)
        result.append((list(table._entries), bytes(table._sizes)))
    return result


def fits_window(ids: list[int]) -> bool:
    """No two IDs share 64 bits below the prefix common to all (which random 160-bit IDs never do:
    the chance is about n**2 / 2**65); the fast bootstrap refuses such sets."""
    ordered = sorted(ids)
    common = ID_BITS - (ordered[0] ^ ordered[-1]).bit_length()
    return all(ID_BITS - (a ^ b).bit_length() < common + 64 for a, b in zip(ordered, ordered[1:]))


def id_sets(max_size: int = 60):
    """Sets of distinct IDs: random 160-bit ones, small integers (long shared prefix), clusters."""
    full = st.integers(0, (1 << ID_BITS) - 1)
    small = st.integers(0, 1 << 12)
    clustered = st.integers(0, (1 << 30) - 1).map(lambda low: (0xABC << 148) | low)
    return st.one_of(
        st.lists(full, min_size=1, max_size=max_size, unique=True).filter(fits_window),
        st.lists(small, min_size=1, max_size=max_size, unique=True),
        st.lists(clustered, min_size=1, max_size=max_size, unique=True),
    )


@settings(max_examples=60, deadline=None)
@given(ids=id_sets(), k=st.sampled_from([1, 2, 3, 5, 20]))
def test_uptime_rule_equals_the_table_hearing_everyone_in_join_order(ids, k):
    tables = ConvergedTables(ids, k, rule="uptime")
    expected = tables_by_observing(ids, k)
    for index, (entries, sizes) in enumerate(expected):
        assert tables.entries(index).tolist() == entries
        assert bytes(tables.sizes(index)) == sizes.rstrip(b"\0") or bytes(tables.sizes(index)) == sizes
    assert {i: e.tolist() for i, e, _ in tables.tables()} == {
        i: e for i, (e, _) in enumerate(expected)
    }


@settings(max_examples=60, deadline=None)
@given(ids=id_sets(), k=st.sampled_from([1, 3, 5, 20]), seed=st.integers(0, 2**32 - 1))
def test_join_rule_keeps_bucket_rules(ids, k, seed):
    """Each bucket: the right range, no repeats, min(range, k) entries, oldest first, and a range
    of at most k is complete."""
    spread = min(3, k)
    tables = ConvergedTables(ids, k, rule="join", spread=spread, seed=seed)
    for index, entries, sizes in tables.tables():
        own = ids[index]
        start = 0
        for bucket, size in enumerate(sizes):
            members = [h for h, other in enumerate(ids) if other != own and
                       ID_BITS - (own ^ other).bit_length() == bucket]
            chosen = entries[start:start + size].tolist()
            start += size
            assert size == min(len(members), k)
            assert len(set(chosen)) == size
            assert set(chosen) <= set(members)
            assert chosen == sorted(chosen)  # node i joined i-th: oldest first
        assert start == len(entries)
        assert not sizes or sizes[-1] > 0


@settings(max_examples=80, deadline=None)
@given(ids=id_sets(), k=st.sampled_from([1, 2, 3, 5, 20]), spread=st.integers(0, 3),
       seed=st.integers(0, 2**32 - 1), aged=st.booleans())
def test_rows_derived_on_demand_are_the_flat_tables(ids, k, spread, seed, aged):
    """store="rows" (sim/lazy.py's untouched nodes) derives each table from the join rule's
    draws: every table equals the flat fill's, with any join order."""
    spread = min(spread, k)
    age = list(range(len(ids)))
    if aged:
        Random(seed).shuffle(age)
    flat = ConvergedTables(ids, k, age_rank=age, spread=spread, seed=seed)
    rows = ConvergedTables(ids, k, age_rank=age, spread=spread, seed=seed, store="rows")
    for index in range(len(ids)):
        entries, sizes = rows.row(index)
        assert entries == flat.entries(index) and sizes == flat.sizes(index)
        assert flat.row(index) == (entries, sizes)


def test_rows_match_the_flat_tables_of_20000_nodes():
    rng = Random(11)
    ids = [rng.getrandbits(160) for _ in range(20_000)]
    flat = ConvergedTables(ids, 20, seed=3)
    rows = ConvergedTables(ids, 20, seed=3, store="rows")
    assert all(rows.row(i) == (flat.entries(i), flat.sizes(i)) for i in range(20_000))
    assert rows.entries_total == flat.entries_total


def test_join_rule_is_reproducible_and_seeded():
    rng = Random(5)
    ids = [rng.getrandbits(160) for _ in range(3000)]
    a = ConvergedTables(ids, 20, seed=1)
    b = ConvergedTables(ids, 20, seed=1)
    c = ConvergedTables(ids, 20, seed=2)
    assert all(a.entries(i) == b.entries(i) for i in range(0, 3000, 7))
    assert any(a.entries(i) != c.entries(i) for i in range(0, 3000, 7))


def test_loaded_table_answers_like_a_table_built_by_observing():
    rng = Random(9)
    ids = [rng.getrandbits(160) for _ in range(300)]
    tables = ConvergedTables(ids, 8, rule="uptime")
    loaded = RoutingTable(ids[17], ids, TableSettings(k=8))
    loaded.load(tables.entries(17), tables.sizes(17), 0.0)
    built = RoutingTable(ids[17], ids, TableSettings(k=8))
    for handle in range(300):
        built.observe(handle, 0.0)
    for _ in range(50):
        target = rng.getrandbits(160)
        assert loaded.closest(target, 8) == built.closest(target, 8)
    assert loaded.idle_buckets(10.0, 5.0) == list(range(loaded.bucket_count()))


def test_load_rejects_inconsistent_sizes():
    ids = [1, 2, 3]
    table = RoutingTable(1, ids, TableSettings(k=2))
    with pytest.raises(ValueError):
        table.load(tables_array([1, 2]), bytearray([3]), 0.0)
    with pytest.raises(ValueError):
        table.load(tables_array([1, 2, 0]), bytearray([3]), 0.0)


def tables_array(values):
    from array import array

    return array("i", values)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ConvergedTables([], 20)
    with pytest.raises(ValueError):
        ConvergedTables([1, 1], 20)
    with pytest.raises(ValueError):
        ConvergedTables([1, 2], 20, rule="nearest")
    with pytest.raises(ValueError, match="64 bits"):
        ConvergedTables([0, 1, 1 << 64], 20)
    with pytest.raises(ValueError):
        ConvergedTables([1, 2], 20, store="rows", rule="uptime")
    with pytest.raises(ValueError):
        ConvergedTables([1, 2], 20, store="columns")


# -- the two ways to converge agree --------------------------------------------------------------


def ks_pvalue(a: list[float], b: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov test, asymptotic p-value."""
    d = ks_distance(a, b)
    en = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    lam = (en + 0.12 + 0.11 / en) * d
    return max(0.0, min(1.0, 2 * sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam)
                                     for j in range(1, 101))))


@pytest.fixture(scope="module")
def three_ways():
    def run(bootstrap):
        study = LookupStudy(nodes=800, lookups=1500, seed=4, wire="objects", bootstrap=bootstrap)
        return run_lookup_study(study)

    return run("protocol"), run("fast"), run("fast-uptime")


def test_fast_bootstrap_matches_join_by_protocol(three_ways):
    protocol, fast, uptime = three_ways
    assert protocol.summary["success_rate"] == fast.summary["success_rate"] == 1.0
    latency = lambda result: [r["latency_ms"] for r in result.rows]  # noqa: E731
    # The latency distributions are close, and much closer than the idealised tables' are.
    # A KS p-value alone is too sharp for the known bias below: at 1,500 lookups it read
    # 0.06, 0.10, 0.03, 0.003, 0.005 for seeds 1-5 once slow requests gave their slots away
    # (which shifts each run's random course); here D = 0.065 against 0.138 for `uptime`.
    distance = ks_distance(latency(protocol), latency(fast))
    assert distance < 0.08 and distance < 0.6 * ks_distance(latency(protocol), latency(uptime))
    for key in ("rpcs_mean", "hops_mean"):
        assert fast.summary[key] == pytest.approx(protocol.summary[key], rel=0.08), key
    # Since contacts enter a table only by answering a probe (issue 17), the nearest first, tables
    # built by protocol favour near contacts a little, which the fast bootstrap does not model:
    # their median is 4-10 % lower (seeds 1-6; 0-7 % before), at equal RPCs and hops.
    assert fast.summary["median_ms"] == pytest.approx(protocol.summary["median_ms"], rel=0.12)


def test_the_comparison_can_tell_tables_apart(three_ways):
    """The idealised uptime-only tables are measurably better: the test above has power."""
    protocol, _, uptime = three_ways
    latency = lambda result: [r["latency_ms"] for r in result.rows]  # noqa: E731
    assert ks_pvalue(latency(protocol), latency(uptime)) < 0.001
    assert uptime.summary["hops_mean"] < 0.9 * protocol.summary["hops_mean"]


def test_fast_bootstrap_study_reproduces_exactly():
    study = LookupStudy(nodes=3000, lookups=200, seed=3, bootstrap="fast")
    assert run_lookup_study(study).rows == run_lookup_study(study).rows
