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
