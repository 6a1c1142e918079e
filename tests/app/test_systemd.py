"""The systemd user unit and its installer (app/systemd.py, docs/kadtalk.service)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kadtalk.app import systemd

DOCS_UNIT = Path(__file__).resolve().parents[2] / "docs" / "kadtalk.service"
# systemd.special(7), "Special User Units": what a user manager provides besides user services
USER_TARGETS = {"default.target", "exit.target", "shutdown.target", "sockets.target",
                "timers.target", "paths.target", "bluetooth.target", "printer.target",
                "smartcard.target", "sound.target", "graphical-session.target",
                "graphical-session-pre.target", "xdg-desktop-autostart.target"}


def after(text: str) -> list[str]:
    return [u for line in re.findall(r"^After=(.*)$", text, re.M) for u in line.split()]


def test_the_documented_unit_is_the_installers():
    assert DOCS_UNIT.read_text() == systemd.unit_text()


def test_the_unit_orders_itself_only_after_what_a_user_manager_has():
    text = systemd.unit_text()
    units = after(text)
    assert "sound.target" in units
    assert not [u for u in units if u.endswith(".target") and u not in USER_TARGETS]
    assert "network-online.target" not in text.split("[Unit]")[1]
    assert "Wants=" not in text and "linger" not in text.split("[Unit]")[1]  # the installer's


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit_and_has_its_targets_for_users(tmp_path):
    """systemd itself: the unit verifies as a user unit, every target it orders after is in the
    user manager's unit path, and network-online.target (the old ordering) is not."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    unit = tmp_path / systemd.UNIT_NAME
    unit.write_text(systemd.unit_text(sys.executable))
    done = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    paths = subprocess.run(["systemd-analyze", "--user", "unit-paths"], env=env,
                           capture_output=True, text=True, timeout=60).stdout.split()
    paths.append("/usr/lib/systemd/user")

    def found(name: str) -> bool:
        return any((Path(p) / name).exists() for p in paths)

    assert not found("network-online.target")
    for target in (u for u in after(unit.read_text()) if u.endswith(".target")):
        assert found(target), target


class Recorder:
    def __init__(self, fail: dict[str, int] | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    def __call__(self, argv):
        self.calls.append(argv)
        code = self.fail.get(argv[0], 0)
        return subprocess.CompletedProcess(argv, code, "", "Access denied\n" if code else "")


def test_the_installer_writes_enables_starts_and_lingers(tmp_path):
    run = Recorder()
    problems = systemd.install("/home/pi/kadtalk/.venv/bin/kadtalk", tmp_path / "user", "pi",
                               run=run)
    assert problems == []
    text = (tmp_path / "user" / "kadtalk.service").read_text()
    assert "ExecStart=/home/pi/kadtalk/.venv/bin/kadtalk daemon --log-format json" in text
    assert run.calls == [["systemctl", "--user", "daemon-reload"],
                         ["systemctl", "--user", "enable", "--now", "kadtalk.service"],
                         ["loginctl", "enable-linger", "pi"]]

    run = Recorder({"loginctl": 1})
    problems = systemd.install("/opt/kadtalk", tmp_path / "user", "pi", start=False, run=run)
    assert run.calls[1] == ["systemctl", "--user", "enable", "kadtalk.service"]
    assert problems == ["`loginctl enable-linger pi` failed (exit status 1): Access denied; "
                        "an administrator can run it with sudo"]

    run = Recorder()
    assert systemd.install("/opt/kadtalk", tmp_path / "user", "pi", linger=False, run=run) == []
    assert all(c[0] == "systemctl" for c in run.calls)


def test_the_installer_reports_a_missing_systemctl(tmp_path):
    def missing(argv):
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    problems = systemd.install("/opt/kadtalk", tmp_path, "pi", run=missing)
    assert len(problems) == 3 and "could not run" in problems[0]
    with pytest.raises(ValueError):
        systemd.unit_text("/home/my user/kadtalk")  # systemd would split it
