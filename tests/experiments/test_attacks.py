"""Attack studies: the adversaries, the Sybil / eclipse study with and without defences, the
partition study, the command line and the notebook (small sizes)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from random import Random

import nbformat
import pytest
from nbclient import NotebookClient

from kadtalk import cli
from kadtalk.experiments import attacks
from kadtalk.experiments.attacks import DEFENCES, PartitionStudy, SybilStudy
from kadtalk.node.routing.messages import RouteRequest, RouteResponse, decode, encode_request
from kadtalk.sim.adversary import Collusion, SybilNode, shared_prefix_bits, sybil_ids
from kadtalk.sim.registry import SharedRegistry

TARGET = Random(9).getrandbits(160)


def test_free_ids_sit_next_to_the_target_and_random_ones_do_not():
    free = sybil_ids(50, TARGET, Random(1), "free")
    rand = sybil_ids(50, TARGET, Random(1), "random")
    assert len(set(free)) == 50 and TARGET not in free
    assert min(shared_prefix_bits(TARGET, i) for i in free) >= 56
    assert max(shared_prefix_bits(TARGET, i) for i in rand) < 20


def test_keygen_ids_get_closer_with_a_bigger_budget():
    def best(keys: float) -> int:
        return max(
            shared_prefix_bits(TARGET, i) for i in sybil_ids(20, TARGET, Random(2), "keygen", keys)
        )

    # the best of B uniform IDs shares about log2(B) bits with the target
    assert best(1) < best(1e4) < best(1e9)
    assert 30 <= best(1e9) <= 45


def test_collusion_answers_only_with_its_own_and_a_fake_target():
    evil = sybil_ids(30, TARGET, Random(3), "free")
    collusion = Collusion(evil, list(range(100, 130)), k=20)
    answer = collusion.answer(TARGET)
    assert len(answer) == 20 and answer[0][0] == TARGET and answer[0][1] >= 100
    assert all(node_id in evil for node_id, _ in answer[1:])
    honest = Collusion(evil, list(range(100, 130)), k=20, impersonate=False).answer(TARGET)
    assert TARGET not in [i for i, _ in honest]


def test_a_sybil_node_answers_real_requests_on_the_wire():
    evil = sybil_ids(25, TARGET, Random(3), "free")
    registry = SharedRegistry(list(evil))
    node = SybilNode(evil[0], Collusion(evil, list(range(25)), k=20), registry)
    node.receive_datagram(encode_request(RouteRequest(123, TARGET), 146), 7, 0.0)
    [(data, dst)] = node.datagrams_to_send(0.0)
    msg, _ = decode(data, registry.addr_from_wire)
    assert dst == 7 and type(msg) is RouteResponse and msg.responder == evil[0]
    assert msg.contacts[0][0] == TARGET and evil[0] not in [i for i, _ in msg.contacts]
    node.receive_datagram(b"\x00garbage", 7, 0.0)  # malformed: ignored
    assert node.datagrams_to_send(0.0) == []


SMALL = SybilStudy(nodes=300, lookups=40, seed=2)


def run(share: float, defence: str, **extra) -> dict:
    return attacks.run_sybil_study(
        replace(SMALL, share=share, **DEFENCES[defence], **extra)
    ).summary


def test_without_an_attacker_every_lookup_reaches_its_target():
    for defence in ("none (newest wins)", "verify+4 paths+/24"):
        summary = run(0.0, defence)
        assert summary["sybils"] == 0
        assert summary["reached_rate"] == 1.0 and summary["intercepted_rate"] == 0.0


def test_eclipse_intercepts_without_defences_and_verify_stops_interception():
    open_ = run(0.1, "none (newest wins)")
    assert open_["sybils"] == 33
    assert open_["intercepted_rate"] >= 0.9 and open_["tables_with_attacker"] > 0.9
    verified = run(0.1, "verify")
    assert verified["intercepted_rate"] == 0.0  # a fake never gets through the key check
    assert verified["rejected_mean"] > 0


def test_the_subnet_limit_with_verify_and_disjoint_paths_keeps_the_victim_reachable():
    unprotected = run(0.2, "verify+4 paths")
    protected = run(0.2, "verify+4 paths+/24")
    assert protected["entries_replaced_by_subnet_limit"] > 0
    assert protected["attacker_share_near_victim"] < unprotected["attacker_share_near_victim"]
    assert protected["reached_rate"] >= 0.9 > unprotected["reached_rate"]


def test_uptime_keeps_a_late_attacker_out_of_most_tables():
    late = run(0.1, "uptime (attacker late)")
    assert late["tables_with_attacker"] < 0.3 and late["reached_rate"] >= 0.9


def test_random_targets_with_random_attacker_ids_are_intercepted_in_proportion():
    low = run(0.05, "none (newest wins)", ids="random", target="random")
    high = run(0.3, "none (newest wins)", ids="random", target="random")
    assert 0 < low["intercepted_rate"] < high["intercepted_rate"]
    assert run(0.3, "verify", ids="random", target="random")["intercepted_rate"] == 0.0


def test_sybil_study_is_deterministic():
    study = replace(SMALL, share=0.05, verify=True, paths=2, tables="mixed")
    a, b = attacks.run_sybil_study(study), attacks.run_sybil_study(study)
    assert a.rows == b.rows


def test_study_settings_are_checked():
    with pytest.raises(ValueError):
        SybilStudy(share=1.0)
    with pytest.raises(ValueError):
        SybilStudy(tables="oldest")
    with pytest.raises(ValueError):
        PartitionStudy(dark_at=100, dark_for=100, duration=150)


# -- partition -------------------------------------------------------------------------------------


def test_a_dark_region_fails_only_its_own_lookups_and_the_network_recovers():
    study = PartitionStudy(
        nodes=300, region=0.3, dark_at=20, dark_for=60, duration=140, lookup_rate=5, bin=10, seed=3
    )
    result = attacks.run_partition_study(study)
    s = result.summary
    assert s["success_before"] == 1.0
    assert 0.5 < s["success_dark"] < 0.9  # lookups for the region's nodes fail while it is dark
    # lookups outside the region still succeed; they no longer wait out the dark contacts'
    # timeouts: a request unanswered after the slow time gives its slot away (routing layer)
    assert s["success_dark_outside"] == 1.0
    assert s["success_after"] >= 1.0 - study.tolerance
    assert s["recovery_s"] == study.bin  # back in the first bin after the return
    assert 0 < s["region_entries_at_return"] <= s["region_entries_before"]
    dark = [r for r in result.rows if r["phase"] == "dark"]
    assert dark and not any(r["source_in_region"] for r in dark)


def test_recovery_time_from_a_series():
    def series(rates):
        return [
            {"t": 10 * i, "t_end": 10 * (i + 1), "lookups": 10, "success_rate": r}
            for i, r in enumerate(rates)
        ]

    # before: 1.0 (bins 0-1); dark 20-40; back at 40; good again from the bin starting at 60
    assert attacks.recovery_time(series([1, 1, 0.5, 0.5, 0.6, 0.9, 1, 1]), 20, 20, 0.02) == 30
    assert math.isnan(attacks.recovery_time(series([1, 1, 0.5, 0.5, 0.6, 0.6]), 20, 20, 0.02))


# -- command line and notebook ---------------------------------------------------------------------


def test_cli_sybil_and_partition_write_tidy_tables(tmp_path, capsys):
    out = tmp_path / "sybil"
    assert (
        cli.main(
            [
                "sim",
                "attack",
                "sybil",
                "--nodes",
                "150",
                "--share",
                "0.1",
                "--lookups",
                "20",
                "--verify",
                "--paths",
                "2",
                "--tables",
                "newest",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        summary["verify"] is True and summary["paths"] == 2 and summary["intercepted_rate"] == 0.0
    )
    assert (out / "lookups.csv").read_text().count("\n") == 21
    out = tmp_path / "partition"
    assert (
        cli.main(
            [
                "sim",
                "attack",
                "partition",
                "--nodes",
                "150",
                "--duration",
                "60",
                "--dark-at",
                "10",
                "--dark-for",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "series.csv").exists() and "recovery_s" in json.loads(
        (out / "summary.json").read_text()
    )


NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "attacks.ipynb"


def test_attacks_notebook_runs_on_small_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("KADTALK_NB_SMALL", "1")
    monkeypatch.setenv("KADTALK_NB_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None  # stored without outputs
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    for name in ("sybil_eclipse.csv", "sybil_eclipse.png", "keygen_cost.png", "partition.png"):
        assert (tmp_path / "attacks" / name).stat().st_size > 100, name


def test_figures_write_every_table_and_plot(tmp_path):
    small = PartitionStudy(nodes=120, dark_at=10, dark_for=20, duration=50, seed=2)
    written = attacks.figures(
        tmp_path, nodes=120, lookups=10, shares=(0.0, 0.1), budgets=(1, 100), partition=small
    )
    assert sorted(written) == [
        "keygen_cost",
        "partition",
        "summary",
        "sybil_eclipse",
        "sybil_random",
    ]
    for name in (
        "sybil_eclipse.csv",
        "sybil_random.csv",
        "keygen_cost.csv",
        "partition_series.csv",
    ):
        assert (tmp_path / name).read_text().count("\n") > 2, name
    eclipse = (tmp_path / "sybil_eclipse.csv").read_text().splitlines()
    assert len(eclipse) == 1 + 2 * len(DEFENCES)  # one row per (defence, share)
    headline = json.loads((tmp_path / "summary.json").read_text())
    assert {r["defence"] for r in headline["sybil_random"]} == set(DEFENCES)
