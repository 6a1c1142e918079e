"""systemd: the readiness protocol (Type=notify, sd_notify(3)), so `systemctl start` returns
only once the control socket answers, and the installer of the user service.

The unit (`unit_text`, the same text as docs/kadtalk.service) is a *user* unit: the daemon runs
as the user, with their identity key, control socket and sound devices. A user manager knows
only user units and the few special targets systemd.special(7) lists for it (default.target,
sound.target, ...): `network-online.target` is a system unit it cannot see, so ordering after it
did nothing. The unit orders itself after sound.target and the user's audio servers (PipeWire,
PulseAudio; an ordering on one that is not installed is ignored); the network may come up later,
which the daemon copes with by itself (it rejoins with back-off, kadtalk.node.upkeep).

Starting at boot without a login needs the user manager to run at boot: `loginctl
enable-linger`, a one-time setting of the *user*, made by the installer (`install`), never by
the unit. Run it as ``python -m kadtalk.app.systemd install [--no-linger] [--no-start]``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

UNIT_NAME = "kadtalk.service"
DEFAULT_EXEC = "%h/.local/bin/kadtalk"  # the unit's ExecStart in docs/kadtalk.service

UNIT = """\
# kadtalk as a systemd user service: the daemon starts at login (or at boot, with lingering)
# and stops cleanly (the current call is hung up, known peers are saved).
#
#   python -m kadtalk.app.systemd install      # writes this file with the right ExecStart,
#                                              # enables and starts it, enables lingering
#   journalctl --user -u kadtalk -f            # its log
#
# By hand instead: copy this file to ~/.config/systemd/user/, edit ExecStart if kadtalk is not
# in ~/.local/bin, then `systemctl --user daemon-reload`, `systemctl --user enable --now
# kadtalk` and, to start at boot without a login (a headless Pi), `loginctl enable-linger`.
#
# A user service (not a system one) on purpose: the daemon then runs as you, with your
# identity key in ~/.config/kadtalk, its control socket in $XDG_RUNTIME_DIR/kadtalk (which
# `kadtalk status` finds), and your access to the sound devices and PulseAudio/PipeWire.
# A user manager cannot see system units such as network-online.target: the daemon joins
# whenever the network comes up (it retries with back-off), so it orders itself only after
# what a user manager has: sound.target and the user's audio servers.

[Unit]
Description=kadtalk serverless voice calls (daemon)
After=sound.target pipewire.service pipewire-pulse.service wireplumber.service pulseaudio.service

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start} daemon --log-format json
Restart=on-failure
RestartSec=5
# The daemon hangs up and saves state on SIGTERM within a second or two.
KillSignal=SIGTERM
TimeoutStopSec=15
# Light hardening only: in a user service, namespace options (ProtectSystem, PrivateTmp)
# need unprivileged user namespaces, which many Pi kernels lack.
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"""


def notify(state: str) -> None:
    """Send `state` (READY=1, STOPPING=1) to $NOTIFY_SOCKET; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
    except OSError as e:
        log.debug("sd_notify failed: %s", e)


def unit_text(exec_start: str = DEFAULT_EXEC) -> str:
    """The user unit, starting `exec_start` (an absolute path, or systemd's %h specifier)."""
    if not exec_start or any(c in exec_start for c in " \t\n\"'\\"):
        raise ValueError(f"ExecStart {exec_start!r}: a path without blanks or quotes, please")
    return UNIT.format(exec_start=exec_start)


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".config") / "systemd" / "user"


def find_executable() -> str:
    """The `kadtalk` command next to this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name("kadtalk")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("kadtalk")
    if found is None:
        raise FileNotFoundError("no `kadtalk` command found (pip install the project first)")
    return os.path.abspath(found)


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def install(exec_start: str, unit_dir: Path, user: str, start: bool = True, linger: bool = True,
            run: Runner = _run) -> list[str]:
    """Write the unit, reload the user manager, enable (and start) the service, enable
    lingering for `user`. Returns the problems, one line each (empty: all done); a step that
    fails is reported with its command and output, and the later ones still run."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    path = unit_dir / UNIT_NAME
    path.write_text(unit_text(exec_start))
    log.info("wrote %s", path)
    steps = [["systemctl", "--user", "daemon-reload"],
             ["systemctl", "--user", "enable", *(["--now"] if start else []), UNIT_NAME]]
    if linger:
        steps.append(["loginctl", "enable-linger", user])
    problems = []
    for argv in steps:
        try:
            done = run(argv)
        except (OSError, subprocess.SubprocessError) as e:
            problems.append(f"`{' '.join(argv)}` could not run: {e}")
            continue
        if done.returncode != 0:
            output = (done.stderr or done.stdout or "").strip().splitlines()
            problems.append(f"`{' '.join(argv)}` failed (exit status {done.returncode})"
                            + (f": {output[-1]}" if output else "")
                            + ("; an administrator can run it with sudo" if argv[0] == "loginctl"
                               else ""))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kadtalk.app.systemd",
        description="Install kadtalk as a systemd user service (docs/headless-calling.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help="write, enable and start the user unit; enable lingering")
    p.add_argument("--no-linger", action="store_true",
                   help="do not run `loginctl enable-linger` (then it starts at login only)")
    p.add_argument("--no-start", action="store_true", help="enable the service, do not start it")
    p.add_argument("--exec", dest="exec_start", help="the kadtalk command (default: found)")
    sub.add_parser("unit", help="print the unit for this installation")
    args = parser.parse_args(argv)
    try:
        exec_start = getattr(args, "exec_start", None) or find_executable()
        if args.command == "unit":
            print(unit_text(exec_start), end="")
            return 0
        problems = install(exec_start, user_unit_dir(), getpass.getuser(),
                           start=not args.no_start, linger=not args.no_linger)
    except (OSError, ValueError) as e:
        print(f"kadtalk: {e}", file=sys.stderr)
        return 1
    for line in problems:
        print(f"kadtalk: {line}", file=sys.stderr)
    if not problems:
        print(f"installed {user_unit_dir() / UNIT_NAME}; `journalctl --user -u kadtalk -f` shows "
              "its log")
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
