"""The fuzz job: a short run of every target family reports its counts and finds no crash, and
each target's checks can fail."""

from __future__ import annotations

import json

import pytest

from benchmarks import fuzz
from benchmarks.fuzz import control, routing, runner, session, stack, traversal

FAMILIES = {
    "routing": ["routing-decode", "routing-layer"],
    "session": ["session-key", "session-stream", "session-cookie"],
    "traversal": ["traversal"],
    "stack": ["node-stack"],
    "control": ["control-json", "websocket"],
}


def test_every_target_belongs_to_one_family_and_the_runner_knows_them_all():
    modules = {"routing": routing, "session": session, "traversal": traversal,
               "stack": stack, "control": control}
    for family, names in FAMILIES.items():
        assert [t.name for t in modules[family].TARGETS] == names
    assert sorted(fuzz.TARGETS) == sorted(n for names in FAMILIES.values() for n in names)
    assert runner.FAMILIES == tuple(modules[f] for f in ("routing", "session", "traversal",
                                                        "stack", "control"))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_quick_run_of_each_family_finds_no_crash(family, tmp_path, capsys):
    names = [n for n in FAMILIES[family] if fuzz.TARGETS[n].available()]
    if not names:
        pytest.skip("kadtalk.app not installed")
    out = tmp_path / "fuzz.json"
    status = fuzz.main(["--quick", "--inputs", "400", "--targets", *names, "--json", str(out)])
    payload = json.loads(out.read_text())
    rows = {r["target"]: r for r in payload["results"]}
    assert list(rows) == names
    for name, row in rows.items():
        assert row["inputs"] >= 400, name  # hypothesis ran every input asked for
        assert row["crashes"] == 0, row["examples"]
    assert status == 0
    assert names[-1] in capsys.readouterr().out


def test_python_m_benchmarks_fuzz_keeps_its_flags():
    args = runner.build_parser().parse_args(
        ["--quick", "--targets", "session-cookie", "node-stack", "--seed", "3", "--json", "-"]
    )
    assert (args.quick, args.targets, args.seed, args.json) == (
        True, ["session-cookie", "node-stack"], 3, "-"
    )


def test_a_crash_is_counted_and_shown():
    """The harness itself: a target that raises on some inputs is reported, not stopped at."""

    def run(_state, data: bytes) -> None:
        if data[:1] == b"\x00":
            raise ValueError("boom")

    target = fuzz.Target("toy", "toy", lambda: None, lambda _s: fuzz.typed_bytes([0, 1], 4), run)
    result = fuzz.fuzz(target, 200)
    assert result["inputs"] >= 200
    assert 0 < result["crashes"] < result["inputs"]
    assert list(result["crash_kinds"]) == ["ValueError: boom"]
