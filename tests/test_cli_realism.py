"""`kadtalk sim lookup` with the realism options (latency models, jitter, churn, NAT, traffic)."""

import json

import pytest

from kadtalk.cli import build_parser, main

OPTIONS = ["--nodes", "120", "--lookups", "40", "--seed", "4", "--k", "4", "--alpha", "2", "--timeout", "0.3",
           "--no-refresh-on-join", "--no-progress", "--json"]


def test_every_option_reaches_the_study_and_the_summary(capsys, tmp_path):
    code = main(["sim", "lookup", *OPTIONS, "--latency", "topology", "--routers", "60", "--topology",
                 "barabasi_albert", "--jitter", "0.1", "--churn", "weibull", "--session", "20",
                 "--session-shape", "0.6", "--offline", "20", "--offline-shape", "0.6", "--nat-full-cone",
                 "0.2", "--nat-filtering", "0.2", "--nat-timeout", "30", "--traffic", "--out",
                 str(tmp_path / "run")])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code in (0, 1)  # 1: some lookups failed, as churn makes them
    for key in ("nodes", "lookups", "success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean",
                "hops_mean", "wall_s", "peak_rss_mb"):
        assert key in summary  # the keys the JSON line always had
    assert summary["departures"] > 0 and summary["nat_filtered"] > 0 and summary["requests_user"] > 0
    assert "maintenance_share" in out and "table_offline_share" in out  # the printed table
    study = json.loads((tmp_path / "run" / "params.json").read_text())["study"]
    assert (study["latency"], study["routers"], study["topology"], study["jitter"]) == (
        "topology", 60, "barabasi_albert", 0.1)
    assert (study["churn"], study["session"], study["session_shape"], study["offline"],
            study["offline_shape"]) == ("weibull", 20.0, 0.6, 20.0, 0.6)
    assert (study["nat_full_cone"], study["nat_filtering"], study["nat_timeout"], study["traffic"]) == (
        0.2, 0.2, 30.0, True)


def test_defaults_leave_realism_off():
    args = build_parser().parse_args(["sim", "lookup"])
    assert (args.latency, args.churn, args.jitter, args.nat_full_cone, args.nat_filtering, args.traffic) == (
        "coordinate", "none", 0.0, 0.0, 0.0, False)


@pytest.mark.parametrize("argv", [["--nat-filtering", "1.5"], ["--jitter", "-0.1"], ["--session", "0"],
                                  ["--churn", "often"], ["--latency", "wormhole"]])
def test_bad_values_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "lookup", *argv])


def test_shares_above_one_together_are_an_error(capsys):
    code = main(["sim", "lookup", *OPTIONS, "--nat-full-cone", "0.7", "--nat-filtering", "0.5"])
    assert code == 2 and "nat_full_cone + nat_filtering" in capsys.readouterr().err


def test_sim_calls_json_line_and_outputs(capsys, tmp_path):
    code = main(["sim", "calls", "--nodes", "150", "--calls", "20", "--seed", "2", "--call-rate", "5",
                 "--nat-full-cone", "0.3", "--nat-filtering", "0.2", "--nat-symmetric", "0.1",
                 "--no-progress", "--json", "--out", str(tmp_path / "calls")])
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0
    for key in ("nodes", "calls", "success_rate", "reachable_success_rate", "setup_median_ms",
                "setup_p90_ms", "setup_p99_ms", "lookup_median_ms", "punch_median_ms",
                "key_exchange_median_ms", "wall_s", "peak_rss_mb"):
        assert key in summary
    assert (summary["nodes"], summary["calls"], summary["mode"]) == (150, 20, "dht")
    assert "end reasons:" in out and "setup_median_ms" in out
    assert {p.name for p in (tmp_path / "calls").iterdir()} == {"calls.csv", "params.json",
                                                                "setup_cdf.png"}
    study = json.loads((tmp_path / "calls" / "params.json").read_text())["study"]
    assert (study["nat_symmetric"], study["call_rate"], study["directory"]) == (0.1, 5.0, False)


def test_sim_calls_refuses_bad_input_cleanly(capsys):
    assert main(["sim", "calls", "--nat-full-cone", "0.7", "--nat-symmetric", "0.5",
                 "--no-progress"]) == 2
    assert "nat_symmetric" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sim", "calls", "--nodes", "1"])
    assert "at least 2" in capsys.readouterr().err
