"""Defects a new user met (issue 14 item 6), at the level of the `kadtalk` command: real
subprocesses, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

KADTALK = [sys.executable, "-m", "kadtalk"]


def run(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*KADTALK, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_no_command_prints_the_dsa_deprecation_warning(tmp_path):
    for args in (["id", "--key", str(tmp_path / "k.pem")],
                 ["status", "--socket", str(tmp_path / "none.sock")]):
        result = run(*args)
        assert "Warning" not in result.stderr, result.stderr


def test_identity_checks_and_the_handshake_do_not_warn_about_dsa():
    from cryptography.utils import CryptographyDeprecationWarning

    from kadtalk.node.identity import Identity, check_key_limits, signature_args, verify
    from kadtalk.node.session.handshake import max_signature_size, verify_cost

    from cryptography.hazmat.primitives.asymmetric import ed25519

    with warnings.catch_warnings():
        warnings.simplefilter("error", CryptographyDeprecationWarning)
        for identity in (Identity.generate(),
                         Identity.from_private_key(ed25519.Ed25519PrivateKey.generate())):
            public = identity.private_key.public_key()
            check_key_limits(identity.private_key)
            check_key_limits(public)
            signature_args(public)
            assert verify(identity.public_der, identity.sign(b"x"), b"x")
            assert max_signature_size(public) > 0 and verify_cost(public) == 1


@pytest.mark.parametrize("args", [["daemon", "--port", "99999"], ["daemon", "--web-port", "70000"],
                                  ["web", "--port", "99999"], ["web", "--port", "-1"],
                                  ["daemon", "--port", "http"]])
def test_a_port_out_of_range_is_a_usage_error_of_that_command(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"usage: kadtalk {args[0]}" in result.stderr
    assert f"argument {args[1]}:" in result.stderr and "port" in result.stderr.splitlines()[-1]


def test_a_mistyped_daemon_flag_gets_the_daemon_usage():
    result = run("daemon", "--prot", "5004")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: kadtalk daemon ")
    assert "--capture DEVICE" in result.stderr  # the daemon's options, not the command list
    assert "kadtalk daemon: error: unrecognized arguments: --prot 5004" in result.stderr


def test_version():
    from kadtalk import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout == f"kadtalk {__version__}\n"


def test_web_without_a_daemon_refuses_to_start_and_says_to_start_one(tmp_path):
    result = run("web", "--socket", str(tmp_path / "missing.sock"), "--port", "0", timeout=20)
    assert result.returncode == 3
    assert "web GUI:" not in result.stdout
    assert "no kadtalk daemon" in result.stderr and "kadtalk daemon" in result.stderr


def test_a_web_port_in_use_gets_a_clear_message_naming_the_fix(tmp_path):
    with socket.socket(socket.AF_UNIX) as control, socket.socket() as taken:
        control.bind(str(tmp_path / "c.sock"))  # a control socket that accepts connections
        control.listen()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("web", "--socket", str(tmp_path / "c.sock"), "--port", str(port), timeout=20)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip() == (
            f"kadtalk: cannot serve the web GUI on 127.0.0.1:{port}: address already in use; "
            "another program (another `kadtalk web` or `kadtalk daemon --web`?) uses that port: "
            "choose another with --port N (0 = any free port)")
        daemon = run("daemon", "--config-dir", str(tmp_path / "d"), "--socket",
                     str(tmp_path / "d.sock"), "--host", "127.0.0.1", "--port", "0",
                     "--capture", "none", "--playback", "none", "--web", "--web-port", str(port),
                     timeout=30)
        assert daemon.returncode == 1
        assert "Traceback" not in daemon.stderr and "Errno" not in daemon.stderr
        assert (f"kadtalk: cannot serve the web GUI on 127.0.0.1:{port}: address already in use"
                in daemon.stderr)
        assert "choose another with --web-port N or [web] port in config.toml" in daemon.stderr
        assert not (tmp_path / "d.sock").exists()  # the daemon cleaned up
