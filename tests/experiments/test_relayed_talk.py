"""`relayed_talk` (experiments/calls.py): relayed calls carry media both ways for a while, so
the relays' bytes, their busiest second and their caps show (issue 13, relay load)."""

import pytest

from kadtalk.experiments.calls import (
    MEDIA_INTERVAL, TALK_RELAY_FIELDS, CallStudy, run_call_study)
from kadtalk.experiments.reach import mix

TALK = 10.0
BASE = dict(nodes=200, calls=40, seed=3, call_rate=2.0, settle=120.0, relays=True, **mix(0.5))


@pytest.fixture(scope="module")
def runs():
    return run_call_study(CallStudy(**BASE)), run_call_study(CallStudy(**BASE, relayed_talk=TALK))


def test_relayed_calls_carry_media_for_the_talk_and_the_rows_do_not_change(runs):
    quiet, talking = runs
    # set-up ends at the first media heard, as before; only a call to or from someone still
    # talking through a relay is not placed (engaged) that was placed before
    changed = [(a, b) for a, b in zip(quiet.rows, talking.rows) if a != b]
    assert len(changed) < len(quiet.rows) // 4
    for before, after in changed:
        assert after["end_reason"] == "engaged" and before["end_reason"] != "engaged"
        assert any(r["relay"] is not None and r["start"] < after["start"] < r["start"] + TALK + 2
                   and {r["caller"], r["callee"]} & {after["caller"], after["callee"]}
                   for r in talking.rows)
    carrying = [r for r in talking.relays if r["calls"]]
    assert carrying and sum(r["calls"] for r in carrying) == talking.summary["relayed_calls"]
    packets = 2 * TALK / MEDIA_INTERVAL  # both ways
    by_addr = {r["addr"]: r for r in quiet.relays}
    for relay in carrying:
        added = relay["forwarded"] - by_addr[relay["addr"]]["forwarded"]
        # one relayed call at a time here: ~1,000 more DATA, each a 10-byte relay header,
        # the session's header and tag and the 80-byte frame. (Since the CLAIM, session 10,
        # H1b: a held KEY_REQ now beats some direct ones, and one relay sets up two calls at
        # once; the media of one of them does not cross it: 1,007 more DATA there, one talk's)
        assert relay["calls"] == relay["peak_calls"] <= 2
        assert 0.97 * packets <= added <= 1.04 * packets  # (and the hang-up, the odd check)
        per_packet = (relay["forwarded_bytes"] - by_addr[relay["addr"]]["forwarded_bytes"]) / added
        assert 90 < per_packet < 130
        # its busiest second: ~100 packets
        assert 0.95 * per_packet / MEDIA_INTERVAL * 2 <= relay["peak_bytes_per_s"] \
            <= 1.1 * per_packet / MEDIA_INTERVAL * 2 + 1500
        assert relay["over_rate"] == 0  # ~10 KB/s: under the 40 KB/s an allocation may take
    idle = [r for r in talking.relays if not r["calls"]]
    assert idle and all(r["peak_calls"] == r["peak_bytes_per_s"] == 0 for r in idle)
    summary = talking.summary
    assert summary["relay_peak_calls"]["max"] <= 2 and summary["relay_over_rate_total"] == 0
    assert set(TALK_RELAY_FIELDS) <= set(talking.relays[0])
    assert not set(TALK_RELAY_FIELDS) & set(quiet.relays[0])  # the pinned load is unchanged


def test_the_run_waits_for_the_last_talk_and_costs_its_media(runs):
    # (every carrying relay, the last call's too, forwarded its whole talk: above)
    quiet, talking = runs
    last = max(r["start"] for r in talking.rows if r["relay"] is not None)
    assert talking.summary["sim_s"] - quiet.summary["sim_s"] \
        >= TALK - (max(r["start"] for r in quiet.rows) - last)
    assert talking.summary["datagrams"] > quiet.summary["datagrams"] \
        + talking.summary["relayed_calls"] * 2 * TALK / MEDIA_INTERVAL


def test_relayed_talk_needs_relays_and_is_not_negative():
    with pytest.raises(ValueError):
        CallStudy(relayed_talk=5.0)
    with pytest.raises(ValueError):
        CallStudy(relays=True, relayed_talk=-1.0)


def test_relay_load_script_writes_what_reach_load_draws(tmp_path, capsys):
    import csv
    import json

    from kadtalk.experiments.reach import main as reach_main
    from kadtalk.experiments.relay_load import main

    out = tmp_path / "run"
    assert main(["--nodes", "120", "--calls", "12", "--seed", "2", "--call-rate", "2",
                 "--talk", "3", "--heartbeat", "0.01", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with open(out / "relays.csv", newline="") as f:
        relays = list(csv.DictReader(f))
    assert len(relays) == summary["relays_serving"] > 0
    assert set(TALK_RELAY_FIELDS) <= set(relays[0])
    assert sum(int(r["calls"]) for r in relays) == summary["relayed_calls"]
    log = (out / "progress.log").read_text()
    assert summary["cpu_s"] > 0 and log.endswith("done\n")
    assert "heartbeat sim_s=" in log  # the joins and calls of 120 nodes last far over 10 ms
    assert json.loads((out / "params.json").read_text())["study"]["relayed_talk"] == 3
    assert reach_main(["load", str(out)]) == 0
    assert (out / "relay_load.png").stat().st_size > 0
