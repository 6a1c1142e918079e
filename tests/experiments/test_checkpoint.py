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
