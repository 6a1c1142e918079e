"""The offline-delivery study (experiments/mailbox.py) on small worlds of whole nodes."""

from __future__ import annotations

import collections
import hashlib
import math

import pytest

from kadtalk.cli import build_parser
from kadtalk.experiments.mailbox import GRACE, MailboxStudy, delay_cdf, run_mailbox_study


@pytest.fixture(scope="module")
def churned():
    return run_mailbox_study(MailboxStudy(nodes=100, messages=30, seed=5, hours=0.5,
                                          warmup=300))


def test_mail_to_offline_recipients_is_delivered_when_they_come_back(churned) -> None:
    rows, s = churned.rows, churned.summary
    assert s["messages"] == len(rows) >= 20
    delivered = [r for r in rows if r["delivered"]]
    assert delivered, "no message reached its recipient"
    for r in delivered:
        assert r["stored"] == "ok" and 1 <= r["stored_at"] <= 20
        assert r["returned"] and r["returned_s"] >= r["sent_s"]  # offline at the send
        # delivered by the fetch at its return (a join and a lookup: seconds), or a later one
        assert r["delay_s"] >= r["returned_s"] - r["sent_s"]
        assert r["sent_s"] + r["delay_s"] <= 0.5 * 3600
    returning = [r for r in rows if r["returned"]]
    assert s["delivered"] == len(delivered)
    assert s["returning"] == len(returning)
    assert s["delivered_share"] == pytest.approx(len(delivered) / len(rows))
    assert s["delivered_of_returning_share"] == pytest.approx(
        sum(r["delivered"] for r in returning) / len(returning))
    assert s["stored_failed"] == sum(r["stored"] != "ok" for r in rows)
    delays = sorted(r["delay_s"] for r in delivered)
    assert delays[0] <= s["delay_median_s"] <= s["delay_p90_s"] <= s["delay_p99_s"] <= delays[-1]
    for r in rows:
        if r["returned"] and not r["delivered"]:
            assert r["returned_s"] <= 0.5 * 3600 - GRACE


def test_periodic_fetches_ask_the_storers_found_before_and_lose_nothing(churned) -> None:
    """Most periodic fetches ask the last fetch's storers with no lookup (node/storage/layer.py,
    `_fetch_storers`); every message whose recipient fetched its key after the store opened.
    Before that rule this study made 320 mailbox lookups and 49,330 datagrams, the same
    deliveries; with it 70 lookups, 251 fetches without one and 33,998 datagrams."""
    s = churned.summary
    assert s["mailbox_direct"] > 3 * s["mailbox_lookups"] > 0
    assert s["fetched"] >= 5 and s["delivered_of_fetched_share"] == 1.0


# The rows' outcomes of the study above (not the wall clock). Node rules that change who stores,
# fetches or opens what change it: re-pin with the command in docs/simulation.md's study section.
DIGEST = "e0997296fe3575ed"


def test_digest_pins_what_the_study_counts(churned) -> None:
    counted = [(r["index"], r["sender"], r["recipient"], r["stored"], r["returned"],
                r["delivered"], round(r["sent_s"], 3)) for r in churned.rows]
    assert hashlib.sha256(repr(counted).encode()).hexdigest()[:16] == DIGEST


def test_without_churn_every_message_arrives_within_one_fetch_interval(tmp_path) -> None:
    study = MailboxStudy(nodes=60, messages=12, seed=2, hours=0.25, warmup=60, churn="none",
                         mailbox_interval=120.0)
    result = run_mailbox_study(study)
    s = result.summary
    assert s["messages"] == 12 and s["stored_failed"] == 0
    assert s["delivered_share"] == 1.0 == s["delivered_of_returning_share"]
    assert max(r["delay_s"] for r in result.rows) <= study.mailbox_interval + 10
    assert delay_cdf(result.rows, tmp_path / "cdf.png").stat().st_size > 1000


def test_cpu_limit_stops_after_a_simulated_minute_and_judges_there() -> None:
    s = run_mailbox_study(MailboxStudy(nodes=40, messages=5, seed=1, hours=1.0, warmup=60,
                                       cpu_limit=1e-6)).summary
    assert s["stopped_early"] and s["sim_hours"] < 1.0
    assert math.isclose(s["sim_hours"] * 3600, 30 + 60)  # settle, then one simulated minute


def test_command_line_registers_the_study() -> None:
    args = build_parser().parse_args(["sim", "mailbox", "--nodes", "50", "--replicas", "5",
                                      "--republish-interval", "600", "--mailbox-interval", "60"])
    assert (args.sim_command, args.nodes, args.replicas, args.republish_interval,
            args.mailbox_interval, args.churn) == ("mailbox", 50, 5, 600.0, 60.0, "weibull")
    with pytest.raises(ValueError):
        MailboxStudy(replicas=0)


@pytest.mark.parametrize("spread", [False, True])
def test_loaded_tables_refresh_their_buckets_at_spread_times(spread, monkeypatch) -> None:
    """The fast bootstrap loads every table at 0: without `spread_refresh` every node refreshes
    all its idle buckets at the same instant one refresh interval later; with it, each
    bucket's first refresh falls at its own time in the second interval."""
    from kadtalk.node.routing.layer import RoutingLayer

    starts: list[float] = []
    original = RoutingLayer._refresh_lookup

    def refresh(self, bucket, now, **kwargs):
        starts.append(now)
        original(self, bucket, now, **kwargs)

    monkeypatch.setattr(RoutingLayer, "_refresh_lookup", refresh)
    study = MailboxStudy(nodes=30, messages=0, seed=3, hours=1.5, warmup=60, churn="none",
                         spread_refresh=spread)
    run_mailbox_study(study)
    interval = 3600.0
    first = [t for t in starts if t < study.settle + 1.5 * 3600]
    assert len(first) > 60  # 30 nodes, a few idle buckets each
    most = max(collections.Counter(int(t) for t in first).values())  # in one second
    if spread:
        assert min(first) > interval  # none in the first interval
        assert most < 0.1 * len(first) and max(first) - min(first) > interval / 3
    else:
        assert most > 0.5 * len(first)  # measured: 117 of 150 in one second, 6 of 95 spread
