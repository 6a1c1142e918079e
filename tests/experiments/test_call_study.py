"""The call set-up study: whole nodes, phases that add up, NAT reachability as the testbed's
table says, the directory baseline, churn, and a seed that reproduces."""

import math

import pytest

from kadtalk.experiments.calls import (
    NOT_PLACED,
    ROW_FIELDS,
    WALL_CLOCK_FIELDS,
    CallStudy,
    _CallStudyRun,
    reachable,
    run_call_study,
)
from kadtalk.sim.nat import FILTERING, FULL_CONE, OPEN, SYMMETRIC

PHASES = ("lookup_ms", "punch_ms", "key_exchange_ms", "ring_ms", "first_media_ms")
NAT = dict(nat_full_cone=0.3, nat_filtering=0.25, nat_symmetric=0.15)
SMALL = dict(nodes=300, calls=80, seed=5, call_rate=20.0)


@pytest.fixture(scope="module")
def open_run():
    return run_call_study(CallStudy(**SMALL))


@pytest.fixture(scope="module")
def nat_runs():
    return {mode: _CallStudyRun(CallStudy(**SMALL | NAT, directory=mode == "directory"), None)
            for mode in ("dht", "directory")}, {}


def _result(nat_runs, mode):
    runs, results = nat_runs
    if mode not in results:
        results[mode] = runs[mode].run()
    return results[mode]


def test_every_call_between_public_peers_sets_up_and_its_phases_add_up(open_run):
    rows, summary = open_run.rows, open_run.summary
    assert len(rows) == SMALL["calls"] and all(set(r) == set(ROW_FIELDS) for r in rows)
    assert summary["reachable_success_rate"] == 1.0
    placed = [r for r in rows if r["end_reason"] not in NOT_PLACED]
    assert len(placed) == summary["reachable_calls"] > 0.8 * len(rows)  # a few were engaged
    for row in placed:
        assert row["success"] and row["end_reason"] == "talking" and row["punch_ms"] == 0.0
        assert sum(row[p] for p in PHASES) == pytest.approx(row["setup_ms"])
        assert all(row[p] >= 0 for p in PHASES)
        # the key exchange and the ring are a round trip each: at least twice the 2 x 0 ms floor
        assert row["key_exchange_ms"] > 0 and row["ring_ms"] > 0 and row["first_media_ms"] > 0
    assert summary["setup_median_ms"] == pytest.approx(
        sorted(r["setup_ms"] for r in placed)[len(placed) // 2], rel=0.2)
    for key in ("nodes", "calls", "success_rate", "reachable_success_rate", "setup_median_ms",
                "setup_p90_ms", "setup_p99_ms", "lookup_median_ms", "punch_median_ms",
                "key_exchange_median_ms", "wall_s", "peak_rss_mb"):
        assert key in summary
    assert summary["identities"] == SMALL["nodes"]


def test_a_seed_reproduces_rows_and_summary(open_run):
    again = run_call_study(CallStudy(**SMALL))
    assert again.rows == open_run.rows
    strip = lambda s: {k: v for k, v in s.items() if k not in WALL_CLOCK_FIELDS}  # noqa: E731
    assert strip(again.summary) == strip(open_run.summary)


def test_reachability_is_the_testbed_table():
    """Without a relay only a symmetric caller to a filtering or symmetric callee fails (a
    symmetric callee is reached at the peer-reflexive address its PUNCH shows); a caller that
    offers a relay reaches anyone."""
    kinds = (OPEN, FULL_CONE, FILTERING, SYMMETRIC)
    unreachable = {(a, b) for a in kinds for b in kinds if not reachable(a, b)}
    assert unreachable == {(SYMMETRIC, FILTERING), (SYMMETRIC, SYMMETRIC)}
    assert all(reachable(a, b, caller_relays=True) for a in kinds for b in kinds)


@pytest.mark.parametrize("mode", ["dht", "directory"])
def test_no_call_between_unreachable_pairs_sets_up(nat_runs, mode):
    result = _result(nat_runs, mode)
    rows = result.rows
    combos = {(r["caller_nat"], r["callee_nat"]) for r in rows}
    assert ("open", "symmetric") in combos or ("full_cone", "symmetric") in combos
    for row in rows:
        if not row["reachable"]:
            assert not row["success"], row
    # calls from behind a symmetric NAT to public and full-cone callees do set up, and so do
    # calls from public and cone callers to symmetric callees (peer-reflexive addresses)
    assert any(r["success"] for r in rows if r["caller_nat"] == "symmetric")
    to_symmetric = [r for r in rows if r["callee_nat"] == "symmetric" and r["reachable"]]
    assert to_symmetric and all(r["success"] for r in to_symmetric)
    assert result.summary["nat_filtered"] > 0


def test_the_directory_sets_up_every_reachable_pair_with_one_round_trip_to_find(nat_runs):
    result = _result(nat_runs, "directory")
    run = nat_runs[0]["directory"]
    assert result.summary["reachable_success_rate"] >= 0.95
    latency = run.world.latency
    server = run.server_addr
    for row in result.rows:
        if row["success"]:
            rtt = latency.delay(row["caller"], server) + latency.delay(server, row["caller"])
            assert row["lookup_ms"] == pytest.approx(rtt * 1000)
    # callees behind filtering NATs were reached by their PUNCH, with a measured punch phase
    punched = [r for r in result.rows if r["success"] and r["callee_nat"] == "filtering"]
    assert punched and all(r["punch_ms"] > 0 for r in punched)


def test_the_dht_and_the_directory_see_the_same_workload(nat_runs):
    dht, directory = _result(nat_runs, "dht"), _result(nat_runs, "directory")
    key = lambda r: (r["start"], r["caller"], r["callee"], r["caller_nat"], r["callee_nat"])  # noqa: E731
    assert [key(r) for r in dht.rows] == [key(r) for r in directory.rows]


def test_under_churn_calls_go_between_peers_online_when_they_start():
    study = dict(nodes=200, calls=60, seed=3, call_rate=2.0, session=20.0, offline=20.0,
                 session_shape=0.6, offline_shape=0.6)
    result = run_call_study(CallStudy(**study, churn="weibull"))
    static = run_call_study(CallStudy(**study))
    assert result.summary["departures"] > 0 and result.summary["returns"] > 0
    assert not any(r["end_reason"] == "offline" for r in result.rows)  # half are offline at any time
    # a node back from churn is a new node whose session ids start afresh: never mixed up
    assert not any(r["end_reason"] == "incomplete" for r in result.rows)
    pairs = lambda res: [(r["caller"], r["callee"]) for r in res.rows]  # noqa: E731
    assert pairs(result) != pairs(static)  # drawn among the online peers, not in advance
    assert result.summary["reachable_success_rate"] >= 0.8
    assert result.summary["reachable_calls"] == sum(r["reachable"] for r in result.rows)


def test_bad_parameters_are_refused():
    for bad in (dict(nodes=1), dict(calls=-1), dict(call_rate=0), dict(answer_delay=-1),
                dict(nat_full_cone=0.6, nat_filtering=0.3, nat_symmetric=0.2),
                dict(latency="site-matrix")):
        with pytest.raises(ValueError):
            CallStudy(**bad)


def test_answer_delay_is_the_ring_phase():
    result = run_call_study(CallStudy(nodes=150, calls=10, seed=2, call_rate=0.2, answer_delay=2.0))
    assert result.summary["success_rate"] == 1.0
    assert all(r["ring_ms"] >= 2000.0 for r in result.rows)


def test_a_filtering_callee_is_punched_only_through_peers_it_keeps_its_nat_open_to(nat_runs):
    """The rendezvous the caller asks must be among the callee's keep-alive peers: with none in
    common (rendezvous_overlap 0), the PUNCH_FWD meets the callee's filtering NAT and the call
    fails; the directory, to which every callee keeps its NAT open, has no such gap."""
    rows = [r for r in _result(nat_runs, "dht").rows
            if r["callee_nat"] == "filtering" and r["reachable"]]
    assert any(r["success"] for r in rows)
    assert all(r["rendezvous_overlap"] >= 1 for r in rows if r["success"])
    assert all(r["rendezvous_overlap"] is None for r in _result(nat_runs, "directory").rows)


def test_the_daemons_upkeep_keeps_every_nat_mapping_open():
    """Upkeep on (Node.keep_joined, as the daemon): keep-alives every 20 s keep full-cone
    mappings of 30 s open through 100 s of quiet, so every callee stays reachable."""
    run = _CallStudyRun(CallStudy(nodes=150, calls=10, seed=4, call_rate=2.0, nat_full_cone=1.0,
                                  nat_timeout=30.0, settle=100.0), None)
    result = run.run()
    world = run.world
    nat, now = world.realism.nat, world.env.now
    assert all(nat.admits(addr, 0, now) for addr in range(1, 150))
    assert all(world.driver.nodes[a].rejoin is not None for a in range(150))
    assert result.summary["reachable_success_rate"] == 1.0
