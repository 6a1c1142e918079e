"""The arm64 check (`./setup.sh arm64`, tools/arm64/): what can be tested without building an
emulated root. The check itself is run by hand or in CI; docs/raspberry-pi.md has its result."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools" / "arm64"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, **kwargs)


def quick_tests() -> list[str]:
    lines = (line.split("#")[0].strip() for line in (TOOLS / "quick-tests.txt").read_text().splitlines())
    return [line for line in lines if line]


def test_help_through_setup_sh_names_the_options():
    result = run("./setup.sh", "arm64", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--worktree", "--rebuild", "--cache", "--mirror"):
        assert option in result.stdout
    assert "arm64" in run("./setup.sh", "--help").stdout


def test_armhf_is_the_same_check_with_its_arch():
    assert "armhf" in run("./setup.sh", "--help").stdout
    result = run("./setup.sh", "armhf", "--help")
    assert result.returncode == 0 and "--arch ARCH" in result.stdout
    bad = run("./setup.sh", "armhf", "--bogus")  # the armhf entry reaches check.sh's parser
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--bogus"], 2, "unknown argument '--bogus'"),
        (["--cache"], 1, "--cache needs a directory"),
        (["--mirror"], 1, "--mirror needs a URL"),
        (["--cache", str(REPO / "cache")], 1, "is inside the project"),
        (["--ref", "no-such-commit-anywhere"], 1, "is not a commit of"),
        (["--ref", "HEAD", "--worktree"], 1, "--worktree and --ref exclude each other"),
        (["--arch"], 1, "--arch needs arm64 or armhf"),
        (["--arch", "sparc"], 1, "--arch sparc: arm64 or armhf"),
    ],
)
def test_argument_errors_say_what_is_wrong_before_touching_anything(args, status, message):
    result = run(str(TOOLS / "check.sh"), *args)
    assert result.returncode == status
    assert message in result.stderr
    assert not (REPO / "cache").exists()


def test_without_root_the_error_says_to_use_sudo(tmp_path):
    command = [str(TOOLS / "check.sh"), "--quick", "--cache", str(tmp_path / "c")]
    if os.geteuid() == 0:  # drop to nobody, so the check cannot start building a root
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv (util-linux) is missing")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = run(*command)
    assert result.returncode == 1, result.stderr
    assert "needs root" in result.stderr and "sudo ./setup.sh arm64 --quick" in result.stderr
    assert not (tmp_path / "c").exists()


def test_quick_subset_names_test_files_that_exist_and_covers_the_promised_areas():
    tests = quick_tests()
    assert tests
    for test in tests:
        path = REPO / test.split("::")[0]
        assert path.is_file() and path.name.startswith("test_"), test
    promised = {  # issue 16: identity, routing, session vectors, a two-daemon call, the codec
        "tests/node/test_identity.py",
        "tests/node/routing/test_table.py",
        "tests/node/session/test_vectors.py",
        "tests/app/test_call.py",
        "tests/node/media/test_codec.py",
    }
    assert promised <= {t.split("::")[0] for t in tests}


def test_docs_list_the_quick_subset():
    doc = (REPO / "docs" / "raspberry-pi.md").read_text()
    for test in quick_tests():
        assert test in doc, f"docs/raspberry-pi.md does not list {test}"


def test_probe_passes_for_this_machine_and_fails_for_another():
    probe = str(TOOLS / "kadtalk_arm64_probe.py")
    here = platform.machine()
    if here not in ("x86_64", "aarch64"):
        pytest.skip(f"the probe knows no other machine to compare {here} with")
    other = "aarch64" if here == "x86_64" else "x86_64"

    ok = run(sys.executable, probe, here)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    loaded = {line.split()[1] for line in ok.stdout.splitlines() if line.startswith("so ")}
    assert loaded == {"libopus", "libasound", "pyalsaaudio", "cryptography", "numpy"}
    assert "NOT" not in ok.stdout

    wrong = run(sys.executable, probe, other)
    assert wrong.returncode == 1
    assert f"NOT all native code is {other}" in wrong.stdout

    assert run(sys.executable, probe).returncode == 2


def test_emulation_plugin_turns_off_hypothesis_deadlines_only():
    code = (
        "import kadtalk_emulated\n"
        "from hypothesis import settings\n"
        "assert settings.default.deadline is None\n"
        "assert settings.default.max_examples == 100\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TOOLS)}
    result = run(sys.executable, "-c", code, env=env)
    assert result.returncode == 0, result.stderr


def test_an_unreachable_mirror_is_named_with_the_fix(tmp_path):
    ready = (os.geteuid() == 0 and shutil.which("debootstrap") and shutil.which("curl")
             and os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"))
    if not ready:  # otherwise the check would install packages or register binfmt_misc first
        pytest.skip("needs root with debootstrap, curl and qemu-aarch64 in binfmt_misc already")
    mirror = "http://127.0.0.1:9/debian"  # the discard port: nothing listens
    result = run(str(TOOLS / "check.sh"), "--quick", "--cache", str(tmp_path / "c"),
                 "--mirror", mirror)
    assert result.returncode == 1
    assert f"cannot reach the Debian mirror {mirror}" in result.stderr
    assert "--mirror URL" in result.stderr
    assert not (tmp_path / "c").exists()
