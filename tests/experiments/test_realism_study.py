"""The lookup study with latency models, jitter, churn, NAT and traffic accounting switched on."""

import math
from dataclasses import replace

import pytest

from kadtalk.experiments.lookup import ROW_FIELDS, WALL_CLOCK_FIELDS, LookupStudy, run_lookup_study

# small and quick: no refresh after join, short timeouts, small k so that churn hurts
QUICK = dict(nodes=120, lookups=60, seed=4, k=4, alpha=2, request_timeout=0.3, refresh_on_join=False,
             settle=5.0, wire="objects")
CHURN = dict(churn="weibull", session=20.0, offline=20.0, session_shape=0.6, offline_shape=0.6)
EVERYTHING = QUICK | CHURN | dict(latency="topology", routers=80, jitter=0.1, nat_full_cone=0.2,
                                  nat_filtering=0.2, nat_timeout=5.0, traffic=True)
REALISM_KEYS = {
    "datagrams", "datagrams_lost", "departures", "returns", "online_share", "lookups_aborted",
    "lookups_skipped", "nat_filtered", "nat_share", "table_entries_mean", "table_offline_share",
    "table_unreachable_share", "requests_user", "requests_join", "requests_refresh",
    "maintenance_share", "maintenance_req_per_node_s",
}


def stable(summary):
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK_FIELDS}


@pytest.fixture(scope="module")
def everything():
    return run_lookup_study(LookupStudy(**EVERYTHING))


def test_same_seed_gives_identical_rows_with_every_feature_on(everything):
    again = run_lookup_study(LookupStudy(**EVERYTHING))
    assert again.rows == everything.rows
    assert stable(again.summary) == stable(everything.summary)
    other = run_lookup_study(LookupStudy(**EVERYTHING | dict(seed=5)))
    assert other.rows != everything.rows


def test_bytes_and_objects_agree_with_every_feature_on(everything):
    as_bytes = run_lookup_study(LookupStudy(**EVERYTHING | dict(wire="bytes")))
    assert as_bytes.rows == everything.rows
    assert stable(as_bytes.summary) == stable(everything.summary) | {"wire": "bytes"}


def test_every_feature_shows_in_the_summary(everything):
    s = everything.summary
    assert REALISM_KEYS <= set(s)
    assert s["departures"] > 0 and s["returns"] > 0 and 0 < s["online_share"] < 1
    assert s["nat_filtered"] > 0 and 0.2 < s["nat_share"] < 0.6
    assert s["requests_user"] > 0 and s["requests_join"] > 0
    assert 0 <= s["table_offline_share"] <= 1 and 0 <= s["table_unreachable_share"] <= 1
    assert s["datagrams"] > 0


def test_churn_makes_lookups_time_out():
    static = run_lookup_study(LookupStudy(**QUICK))
    churned = run_lookup_study(LookupStudy(**QUICK | CHURN))
    assert static.summary["success_rate"] == 1.0 and static.summary["timeouts_mean"] == 0
    s = churned.summary
    # requests to departed nodes time out; whether a lookup then fails depends on the seed (since
    # table entries need an answered probe, this small network routes around every dead entry)
    assert s["timeouts_mean"] > 0
    assert s["departures"] > 0 and s["returns"] > 0
    assert 0 < s["table_offline_share"] < 1  # tables hold entries of nodes that left
    # one row per lookup whose source stayed online; the others are counted
    assert len(churned.rows) + s["lookups_aborted"] + s["lookups_skipped"] == QUICK["lookups"]
    for row in churned.rows:
        assert set(row) == set(ROW_FIELDS) and row["source"] != row["target"]


def test_exponential_churn_runs_and_is_seeded():
    study = LookupStudy(**QUICK | dict(churn="exponential", session=15.0, offline=15.0))
    a, b = run_lookup_study(study), run_lookup_study(study)
    assert a.rows == b.rows and a.summary["departures"] == b.summary["departures"] > 0


def test_churn_keeps_the_network_and_lookup_times_of_the_static_run():
    """Features draw from their own generators: the lookup schedule does not move."""
    static = run_lookup_study(LookupStudy(**QUICK))
    churned = run_lookup_study(LookupStudy(**QUICK | CHURN | dict(session=1e9, offline=1e-9)))
    # (almost) nobody leaves: the same lookups start at the same times
    assert churned.summary["departures"] <= 1
    assert sorted(r["start"] for r in churned.rows) == pytest.approx(sorted(r["start"] for r in static.rows))


def test_nat_entries_become_unreachable_after_the_mapping_timeout():
    study = LookupStudy(**QUICK | dict(nat_full_cone=0.3, nat_filtering=0.3, nat_timeout=2.0, settle=20.0))
    s = run_lookup_study(study).summary
    assert s["nat_filtered"] > 0
    assert s["table_unreachable_share"] > 0.2  # idle NATed entries closed
    assert s["table_offline_share"] == 0 and s["departures"] is None


def test_traffic_counts_user_requests_exactly():
    result = run_lookup_study(LookupStudy(**QUICK | dict(traffic=True, refresh_on_join=True, nodes=80,
                                                         lookups=30)))
    s = result.summary
    assert s["requests_user"] == sum(r["rpcs"] for r in result.rows)
    assert s["requests_refresh"] >= 0 and 0 <= s["maintenance_share"] <= 1


def test_features_off_add_only_empty_figures():
    result = run_lookup_study(LookupStudy(**QUICK))
    s = result.summary
    assert s["datagrams"] > 0
    assert all(s[key] is None for key in REALISM_KEYS - {"datagrams", "datagrams_lost"})


@pytest.mark.parametrize("extra", [dict(latency="sphere"), dict(latency="topology", routers=50,
                                   topology="barabasi_albert"), dict(jitter=0.3)])
def test_latency_options_run(extra):
    result = run_lookup_study(LookupStudy(**QUICK | extra))
    assert result.summary["success_rate"] == 1.0
    assert not math.isnan(result.summary["median_ms"])


@pytest.mark.parametrize("bad", [
    dict(churn="sometimes"), dict(churn="weibull", session=0), dict(churn="weibull", offline_shape=0),
    dict(nat_full_cone=0.7, nat_filtering=0.4), dict(nat_filtering=-0.1), dict(nat_timeout=0),
    dict(jitter=-1), dict(routers=1), dict(topology="ring"),
])
def test_realism_validation(bad):
    with pytest.raises(ValueError):
        LookupStudy(**bad)


def test_defaults_are_the_static_open_network():
    study = LookupStudy()
    assert (study.churn, study.jitter, study.nat_full_cone, study.nat_filtering, study.traffic) == (
        "none", 0.0, 0.0, 0.0, False)
    assert replace(study, seed=2).churn == "none"
