"""Calls between hosts with address families (experiments/reach.py `families`, calls.py with
`v6_only` / `dual_stack`): a small sweep with and without relays, on one seed. Whole nodes;
every host with IPv6 and not on public IPv4 behind a stateful IPv6 firewall."""

from __future__ import annotations

import csv
import json

import pytest

from kadtalk.experiments import reach
from kadtalk.experiments.calls import NOT_PLACED, CallStudy, run_call_study

MIX = dict(v6_only=0.2, dual_stack=0.4)


@pytest.fixture(scope="module")
def sweep():
    return reach.family_sweep(80, 24, seed=2, mixes=[(0.2, 0.4)], symmetric=[0.2],
                              settle=40.0, call_rate=4.0)


def pair(row, key):
    done, placed = (int(x) for x in row["by_pair"].get(key, "0/0").split("/"))
    return done, placed


def test_the_sweep_runs_to_its_end_and_its_figures_hold(sweep):
    without, with_relays = sweep
    assert not without["relays"] and with_relays["relays"]
    for row in sweep:
        assert row["placed"] >= 18  # every call ended (a node's timer stuck at one instant
        # froze the simulation before 2548b97)
        assert row["success"] <= row["placed"]
        assert row["no_route"] > 0  # IPv6-only hosts tried IPv4 contacts: dropped, counted
    # without relays no call crosses the families (no path)
    for key in ("v4>v6", "v6>v4"):
        assert pair(without, key)[0] == 0
    # `path` is the pairs a path joins from no earlier traffic; beyond it a pair sets up only
    # where earlier traffic opened a filter: seed 2, with other addresses on (the node's
    # default since 2c3e9bf, the study's since review R1 finding 4), 21 of 22 calls set up
    # against a path for 20 (off: none beyond `path`, this test's bound until then); the extra
    # one a symmetric IPv4 caller whose filtering callee (address-dependent filtering,
    # sim/nat.py) had sent to its host: it held the callee in its table, the KEY_REQ went in.
    assert without["share"] < 1.0 and without["path"] < 1.0
    assert without["success"] <= round(without["path"] * without["placed"]) + 1
    assert with_relays["path"] == 1.0  # node 0 is a public dual-stack relay
    assert with_relays["share"] >= without["share"]


def test_rows_name_each_ends_family_and_ipv6_only_hosts_have_no_ipv4():
    study = CallStudy(nodes=60, calls=10, seed=3, call_rate=4.0, settle=40.0,
                      bootstrap="protocol", nat_full_cone=0.2, nat_filtering=0.1, **MIX)
    result = run_call_study(study)
    families = {r["caller_family"] for r in result.rows} | {r["callee_family"] for r in result.rows}
    assert families <= {"v4", "v6", "dual"} and len(families) >= 2
    assert {r["path"] for r in result.rows if {r["caller_family"], r["callee_family"]}
            == {"v4", "v6"} and r["end_reason"] != "engaged"} <= {False}
    assert result.summary["dual_stack_share"] > 0.2 and result.summary["v6_only_share"] > 0.05


def test_without_the_firewall_calls_across_families_set_up_both_ways_through_a_relay():
    """IPv6-only -> IPv4-only goes through a dual-stack relay that names its IPv4 side to the
    IPv6-only caller (ALLOCATED's other-family field). 0 of 4 before the simulated IPv6
    addresses were private as the IPv4 ones are: a relay names its private IPv4 address only to
    a private owner (9b424a2), and 2001:db8::/32 owners were public."""
    study = CallStudy(nodes=80, calls=30, seed=1, settle=60.0, call_rate=5.0, relays=True,
                      bootstrap="protocol", wire="bytes", v6_only=0.3, dual_stack=0.3,
                      v6_firewall=0.0, **reach.mix(0.3))
    rows = [r for r in run_call_study(study).rows if r["end_reason"] not in NOT_PLACED]
    for key in ("v6>v4", "v4>v6"):
        across = [r for r in rows if f"{r['caller_family']}>{r['callee_family']}" == key]
        assert len(across) >= 2 and all(r["success"] for r in across), (key, across)
        assert all(r["relay"] is not None for r in across)  # no path but through a relay


def test_a_families_study_refuses_what_it_does_not_model():
    with pytest.raises(ValueError):
        CallStudy(nodes=60, calls=1, bootstrap="protocol", directory=True, **MIX)
    with pytest.raises(ValueError):
        run_call_study(CallStudy(nodes=60, calls=1, bootstrap="fast", **MIX))
    with pytest.raises(ValueError):
        CallStudy(nodes=60, calls=1, v6_only=0.7, dual_stack=0.5)


def test_the_figure_and_the_csv_are_written(sweep, tmp_path):
    reach.plot_families(sweep, tmp_path / "families.png", "test")
    assert (tmp_path / "families.png").stat().st_size > 10_000
    path = tmp_path / "families.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=reach.FAMILY_FIELDS)
        writer.writeheader()
        writer.writerows(r | {"by_pair": json.dumps(r["by_pair"])} for r in sweep)
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert [int(r["placed"]) for r in back] == [r["placed"] for r in sweep]


class _Stop(Exception):
    pass


def test_the_world_runs_the_nodes_own_default_unless_the_study_says_otherwise(monkeypatch,
                                                                               tmp_path):
    """Review R1 finding 4: the families study ran with other addresses off while a node (and
    the daemon) runs with them on. The world keeps the routing settings' own default; the
    study's --no-other-addresses / --other-addresses set it."""
    from kadtalk.experiments.calls import _CallStudyRun
    from kadtalk.experiments.harness.dualstack import DualStackWorld
    from kadtalk.node.routing.layer import RoutingSettings

    study = CallStudy(nodes=30, calls=1, seed=1, bootstrap="protocol", wire="bytes", **MIX)
    assert _CallStudyRun(study, None).world.settings6.other_addresses \
        is RoutingSettings().other_addresses
    monkeypatch.setattr(DualStackWorld, "other_addresses", False)
    assert _CallStudyRun(study, None).world.settings6.other_addresses is False

    seen = []

    def sweep(*args, **kwargs):
        seen.append(DualStackWorld.other_addresses)
        raise _Stop

    monkeypatch.setattr(reach, "family_sweep", sweep)
    for flag, wanted in (([], None), (["--no-other-addresses"], False),
                         (["--other-addresses"], True)):
        with pytest.raises(_Stop):
            reach.main(["families", "--out", str(tmp_path), *flag])
        assert seen[-1] is wanted, flag
