"""Checkpoints (experiments/checkpoint.py): a study saved mid-run and continued in a fresh load
counts exactly what the uninterrupted run counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import simpy.events

from kadtalk.experiments import checkpoint
from kadtalk.experiments.mailbox import (WALL_CLOCK_FIELDS, Checkpoints, MailboxStudy,
                                         resume_mailbox_study, run_mailbox_study)
from kadtalk.node.identity import Identity, signature_args, verify
from kadtalk.sim.lazy import DORMANT

STUDY = MailboxStudy(nodes=80, messages=20, seed=7, hours=0.5, warmup=300)
PROCESS_FIELDS = WALL_CLOCK_FIELDS | {"cpu_s", "processes"}


def _counted(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in PROCESS_FIELDS}


@pytest.fixture(scope="module")
def straight():
    return run_mailbox_study(STUDY)


def test_a_resumed_run_counts_what_an_uninterrupted_one_counts(straight, tmp_path) -> None:
    path = tmp_path / "run.ckpt"
    saved = run_mailbox_study(STUDY, checkpoints=Checkpoints(path, every=600.0))
    assert saved.rows == straight.rows  # checkpointing (steps, saves) changes nothing
    assert _counted(saved.summary) == _counted(straight.summary)
    resumed = resume_mailbox_study(path)  # from the last one: 1,200 s of 1,800 s run
    assert resumed.summary["processes"] == 2
    assert resumed.rows == straight.rows
    assert _counted(resumed.summary) == _counted(straight.summary)
    assert any(r["delivered"] for r in resumed.rows)  # the rows say something


def test_a_resumed_run_can_be_saved_and_resumed_again(straight, tmp_path) -> None:
    """A run longer than two sessions: its resumed churn loop is saved as well."""
    first, second = tmp_path / "first.ckpt", tmp_path / "second.ckpt"
    run_mailbox_study(STUDY, checkpoints=Checkpoints(first, every=1200.0))  # last save at 1,200 s
    resume_mailbox_study(first, checkpoints=Checkpoints(second, every=300.0))  # saves to 1,800 s
    again = resume_mailbox_study(second)
    assert again.summary["processes"] == 3
    assert again.rows == straight.rows
    assert _counted(again.summary) == _counted(straight.summary)


def test_a_checkpoint_keeps_singletons_and_keys(tmp_path) -> None:
    identity = Identity.generate()
    path = tmp_path / "state.ckpt"
    checkpoint.save({"pending": simpy.events.PENDING, "dormant": DORMANT, "key": identity.private_key,
                     "f": lambda x: x + 1}, path)
    back = checkpoint.load(path)
    assert back["pending"] is simpy.events.PENDING and back["dormant"] is DORMANT
    data = b"signed by the key that came back"
    assert verify(identity.public_der, back["key"].sign(data, *signature_args(back["key"])), data)
    assert back["f"](1) == 2


def test_what_cannot_be_saved_is_named(tmp_path) -> None:
    def counting():
        yield 1
    running = counting()
    next(running)
    with pytest.raises(checkpoint.CheckpointError, match="counting"):
        checkpoint.save([running], tmp_path / "gen.ckpt")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind
    (tmp_path / "junk.ckpt").write_bytes(b"not a pickle")
    with pytest.raises(checkpoint.CheckpointError, match="junk.ckpt"):
        checkpoint.load(tmp_path / "junk.ckpt")


def test_command_line_resumes_to_the_same_table(straight, tmp_path) -> None:
    args = ["--nodes", "80", "--messages", "20", "--seed", "7", "--hours", "0.5",
            "--warmup", "300", "--no-progress"]
    run = [sys.executable, "-m", "kadtalk", "sim", "mailbox"]
    first = subprocess.run(run + args + ["--checkpoint", str(tmp_path / "c"), "--checkpoint-every",
                                         "10", "--out", str(tmp_path / "a")],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(run + ["--resume", str(tmp_path / "c"), "--no-progress", "--out",
                                  str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "a" / "mailbox.csv").read_bytes() == (tmp_path / "b" / "mailbox.csv").read_bytes()
    missing = subprocess.run(run + ["--resume", str(tmp_path / "nothing")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "nothing" in missing.stderr and "Traceback" not in missing.stderr


def test_progress_may_differ_between_the_saving_and_the_resuming_process(straight, tmp_path) -> None:
    """Review R1-1: a run saved with a progress callback and resumed without one crashed at its
    next minute tick; one saved without a callback gave no minutes when resumed with one."""
    seen: list[tuple] = []
    with_progress = tmp_path / "with.ckpt"
    run_mailbox_study(STUDY, lambda *a: None, checkpoints=Checkpoints(with_progress, every=900.0))
    assert resume_mailbox_study(with_progress).rows == straight.rows
    without = tmp_path / "without.ckpt"
    run_mailbox_study(STUDY, checkpoints=Checkpoints(without, every=900.0))
    resumed = resume_mailbox_study(without, lambda *a: seen.append(a))
    assert resumed.rows == straight.rows
    minutes = [a[1] for a in seen if a[0] == "minutes"]
    assert minutes and minutes == sorted(minutes) and minutes[0] == 15  # from the save (900 s) on


def test_a_checkpoint_refuses_other_code_and_damage(tmp_path, monkeypatch) -> None:
    path = tmp_path / "state.ckpt"
    checkpoint.save({"a": 1}, path)
    assert checkpoint.load(path) == {"a": 1}
    data = path.read_bytes()
    for damaged in (data[:-1], data[: len(data) // 2],
                    data[:40] + bytes([data[40] ^ 1]) + data[41:]):
        path.write_bytes(damaged)
        with pytest.raises(checkpoint.CheckpointError, match="not a whole checkpoint"):
            checkpoint.load(path)
    path.write_bytes(data)
    monkeypatch.setattr(checkpoint, "code_digest", lambda: "0" * 64)
    with pytest.raises(checkpoint.CheckpointError, match="other code"):
        checkpoint.load(path)


def test_a_failed_save_is_logged_and_the_run_goes_on(straight, tmp_path, caplog) -> None:
    """Review R1-6: a save into a missing directory (or a full disk) ended the whole run."""
    result = run_mailbox_study(STUDY, checkpoints=Checkpoints(tmp_path / "no" / "c", every=900.0))
    assert result.rows == straight.rows
    assert "failed, the run goes on" in caplog.text


def test_a_lazy_node_list_is_saved_without_building_its_nodes(tmp_path) -> None:
    """Review R1-8: pickle walked LazyNodes through __iter__, building every dormant node."""
    from kadtalk.sim.lazy import LazyNodes
    woken: list[int] = []
    nodes = LazyNodes(5, lambda addr: woken.append(addr) or f"node {addr}")
    assert nodes[1] == "node 1"
    checkpoint.save(nodes, tmp_path / "lazy.ckpt")
    back = checkpoint.load(tmp_path / "lazy.ckpt")
    assert woken == [1] and back.dormant == 4 and back.built(1) and not back.built(0)
    assert back[3] == "node 3" and back.dormant == 3


def test_too_deep_a_state_is_an_error_not_a_crash(tmp_path) -> None:
    """Review R1-7: with a recursion limit of 200,000 the C pickler overflowed the stack."""
    script = ("import sys; from kadtalk.experiments import checkpoint\n"
              "deep = []\n"
              "for _ in range(100_000):\n    deep = [deep]\n"
              "try:\n    checkpoint.save(deep, sys.argv[1])\n"
              "except checkpoint.CheckpointError as e:\n    print('refused:', e)\n")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "deep.ckpt")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "refused" in run.stdout, run.stderr
    assert not list(tmp_path.iterdir())
