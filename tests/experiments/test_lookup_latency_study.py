"""The lookup study's latency variants (issue 15 item 3): RoutingSettings overrides, urgent
lookups and round trips loaded for the fast bootstrap (`rtt_known`), without touching the plain
study's summary (its pinned digest covers every key)."""

import pytest

from kadtalk.experiments.lookup import LookupStudy, run_lookup_study

SMALL = dict(nodes=300, lookups=60, seed=2, bootstrap="fast")


def test_the_plain_study_reports_no_latency_variant_figures():
    summary = run_lookup_study(LookupStudy(**SMALL)).summary
    assert "rtt_measured_share" not in summary


def test_round_trips_loaded_for_the_sources_steer_the_choice():
    plain = run_lookup_study(LookupStudy(**SMALL, routing=(("rtt_choice_bits", 2),)))
    known = run_lookup_study(LookupStudy(**SMALL, routing=(("rtt_choice_bits", 2),),
                                         rtt_known=1.0))
    # nothing measured before a source's first lookup in a fast-bootstrapped network
    assert plain.summary["rtt_measured_share"] == 0.0
    # the loaded round trips change which contacts are asked, so some lookups differ
    assert [r["latency_ms"] for r in plain.rows] != [r["latency_ms"] for r in known.rows]
    assert known.summary["median_ms"] < plain.summary["median_ms"]
    assert known.summary["success_rate"] == plain.summary["success_rate"] == 1.0


def test_urgent_lookups_ask_more():
    plain = run_lookup_study(LookupStudy(**SMALL)).summary
    urgent = run_lookup_study(LookupStudy(**SMALL, urgent=True)).summary
    assert urgent["rpcs_mean"] > plain["rpcs_mean"]


def test_rtt_known_is_a_share():
    with pytest.raises(ValueError):
        LookupStudy(**SMALL, rtt_known=1.5)


def test_proximity_tables_keep_the_fastest_of_each_full_buckets_range():
    from random import Random

    from kadtalk.experiments.lookup import ProximityTables, round_trips
    from kadtalk.node.routing.table import RoutingTable
    from kadtalk.sim.bootstrap import ConvergedTables
    from kadtalk.sim.latency import CoordinateLatency

    rng = Random(4)
    ids = [rng.getrandbits(160) for _ in range(600)]
    model = CoordinateLatency()
    for _ in ids:
        model.add_node(rng)
    rtt = round_trips(model)
    assert rtt(3, [5])[0] == pytest.approx(model.delay(3, 5) + model.delay(5, 3))
    tables = ConvergedTables(ids, 8, seed=1)
    near = ProximityTables(ConvergedTables(ids, 8, seed=1), ids, 8, 30, rtt, seed=1)
    assert len(near) == 600
    changed = 0
    batch = {index: (entries, sizes) for index, entries, sizes in near.tables()}
    for index in range(0, 600, 7):
        sizes = tables.sizes(index)
        before = tables.entries(index).tolist()
        after, same_sizes = batch[index]
        assert same_sizes == sizes and len(after) == len(before)
        assert len(near.entries(index)) == len(before)  # one node alone, as by address
        table = RoutingTable(ids[index], ids)
        table.load(after, sizes, 0.0)  # every entry in its bucket, at most k per bucket
        for c in range(len(sizes)):
            old, new = set(table.bucket(c)), set()
            start = sum(sizes[:c])
            old = set(before[start:start + sizes[c]])
            new = set(after.tolist()[start:start + sizes[c]])
            assert len(new) == sizes[c]  # no repeats
            assert all(table.bucket_index(ids[h]) == c for h in new)
            dropped = old - new
            if dropped:  # what went was slower than anything kept
                changed += 1
                assert max(rtt(index, sorted(new))) <= min(rtt(index, sorted(dropped)))
                assert [h for h in before if h in new] == [h for h in after.tolist()[
                    start:start + sizes[c]] if h in old]  # the kept ones in their order
    assert changed > 20


def test_proximity_tables_shorten_lookups():
    # 2,000 peers: at 300 most lookups end in the source's own table, where nothing changes
    study = dict(nodes=2000, lookups=300, seed=2, bootstrap="fast", rtt_known=1.0,
                 routing=(("proximity", True),))
    plain = run_lookup_study(LookupStudy(**study)).summary
    near = run_lookup_study(LookupStudy(**study, near=20)).summary
    assert near["median_ms"] < 0.9 * plain["median_ms"]
    assert near["success_rate"] == 1.0
    with pytest.raises(ValueError):
        LookupStudy(nodes=300, lookups=60, near=5)  # the protocol's joins build their own


def test_proximity_tables_leave_the_kept_oldest_entries_in_place():
    from random import Random

    from kadtalk.experiments.lookup import ProximityTables, round_trips
    from kadtalk.sim.bootstrap import ConvergedTables
    from kadtalk.sim.latency import CoordinateLatency

    rng = Random(5)
    ids = [rng.getrandbits(160) for _ in range(600)]
    model = CoordinateLatency()
    for _ in ids:
        model.add_node(rng)
    tables = ConvergedTables(ids, 8, seed=1)
    near = ProximityTables(ConvergedTables(ids, 8, seed=1), ids, 8, 30, round_trips(model),
                           seed=1, keep=3)
    changed = 0
    for index, after, sizes in near.tables():
        before, start = tables.entries(index).tolist(), 0
        for size in sizes:
            old, new = before[start:start + size], after.tolist()[start:start + size]
            if size == 8:
                assert new[:3] == old[:3] and len(set(new)) == 8  # the oldest three stay
                changed += new != old
            start += size
    assert changed > 100
