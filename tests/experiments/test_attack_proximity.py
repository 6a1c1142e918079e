"""Proximity neighbour selection against an attacker next to the victim (experiments/attacks/
proximity.py): the uptime rule keeps a late attacker out of the victim's full buckets; a
measured-faster newcomer displacing entries lets it in, and its fake entries then win the
victim's lookups unless the key is checked."""

from kadtalk.experiments.attacks.proximity import VARIANTS
from kadtalk.experiments.attacks.sybil import SybilStudy, run_sybil_study

TAKEOVER = dict(nodes=300, share=0.1, ids="random", target="random", sources="victim",
                near_victim=True, refreshes=100, lookups=60)


def run(variant: str, **extra):
    return run_sybil_study(SybilStudy(**TAKEOVER, routing=VARIANTS[variant], **extra)).summary


def test_an_attacker_next_to_the_victim_takes_entries_only_under_proximity():
    today = run("today")
    pns = run("PNS keep 0 + choice")
    kept = run("PNS keep 10 + choice (candidates)")
    # the victim's refreshes asked the attacker's nodes in every variant
    assert today["attacker_requests"] > 100
    # uptime alone: the victim's table holds what it held at the start (buckets with room)
    assert today["attacker_entries_of_victim_after"] < 0.1
    assert today["intercepted_rate"] == 0.0 and today["reached_rate"] == 1.0
    # proximity: the attacker's 1 ms answers displace entries, and its fakes win lookups
    assert pns["attacker_entries_of_victim_after"] > 3 * today["attacker_entries_of_victim_after"]
    assert pns["intercepted_rate"] > 0.5
    # proximity_keep bounds the entries it can take, not the lookups it wins
    assert kept["attacker_entries_of_victim_after"] <= pns["attacker_entries_of_victim_after"]
    assert kept["intercepted_rate"] > 0.5


def test_checking_the_key_keeps_the_victims_lookups_at_a_cost_in_requests():
    today = run("today", verify=True)
    kept = run("PNS keep 10 + choice (candidates)", verify=True)
    assert kept["reached_rate"] == today["reached_rate"] == 1.0
    assert kept["intercepted_rate"] == 0.0
    assert kept["rpcs_mean"] > 2 * today["rpcs_mean"]  # the fakes are asked and dropped first


def test_the_study_settings_are_checked():
    import pytest

    with pytest.raises(ValueError):
        SybilStudy(sources="victim")  # the victim looking itself up
    with pytest.raises(ValueError):
        SybilStudy(refreshes=5)  # refreshes are the victim's


def test_a_floor_bounds_what_the_attacker_next_to_the_victim_takes():
    """RoutingSettings.rtt_floor (100 ms): the attacker's 1 ms answers count as 100 ms, so it
    takes only slots whose entries were slower than that; a young victim (the join's table) and
    one that met 30 honest members of each range first (`victim_near`). Not today's zero: the
    residual is what docs/results.md "PNS with a floor" reports."""
    for near in (0, 30):
        today = run("today", victim_near=near)
        kept = run("PNS keep 10 + choice (candidates)", victim_near=near)
        floor = run("PNS keep 10 floor 100 ms + choice", victim_near=near)
        entries = "attacker_entries_of_victim_after"
        assert floor[entries] < kept[entries] / 2
        assert floor["intercepted_rate"] < kept["intercepted_rate"] / 2
        assert today[entries] <= floor[entries]  # the residual: more than the uptime rule's


def test_the_victim_near_setting_is_checked():
    import pytest

    with pytest.raises(ValueError):
        SybilStudy(victim_near=5)  # the victim's: with sources=victim


def test_displacing_only_measured_entries_leaves_the_young_table_open():
    """RoutingSettings.proximity_measured (docs/results.md "PNS that displaces only measured
    entries"): the young victim's refreshes measure the entries they ask, and a measured entry
    slower than the floor goes to the first newcomer within it, which the attacker's nodes
    (naming only each other, all 1 ms away) mostly are: the attacker still takes more than the
    uptime rule lets it and wins lookups it never wins today."""
    today = run("today")
    measured = run("PNS keep 10 floor 80 ms measured + choice")
    entries = "attacker_entries_of_victim_after"
    assert today["intercepted_rate"] == 0.0
    assert measured[entries] > today[entries]
    assert measured["intercepted_rate"] >= 0.1
