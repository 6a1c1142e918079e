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
