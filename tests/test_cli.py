"""The `kadtalk` command as a user runs it: real subprocesses, real sockets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.transport.test_udp import free_port_range

KADTALK = [sys.executable, "-m", "kadtalk"]


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*KADTALK, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_id_creates_the_key_once_in_the_xdg_config_dir(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    first = run("id", env=env)
    second = run("id", env=env)
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"[0-9a-f]{40}\n", first.stdout)
    assert second.stdout == first.stdout
    key = tmp_path / "kadtalk" / "identity.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_id_refuses_a_corrupted_key_and_names_the_file(tmp_path):
    key = tmp_path / "broken.pem"
    key.write_text("not a key")
    result = run("id", "--key", str(key))
    assert result.returncode == 1
    assert str(key) in result.stderr
    assert key.read_text() == "not a key"


def test_help_explains_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("id", "node", "lookup", "swarm", "sim"):
        assert command in result.stdout
    assert "--bootstrap" in run("lookup", "--help").stdout


@pytest.mark.parametrize("args, message", [
    (["lookup", "xyz", "--bootstrap", "127.0.0.1:5004"], "not a node ID"),
    (["lookup", "0" * 40, "--bootstrap", "127.0.0.1"], "expected HOST:PORT"),
    (["sim", "lookup", "--nodes", "0"], "at least 1"),
    (["sim", "lookup", "--loss", "1.5"], "[0, 1)"),
    (["swarm", "--bucket-bits", "0"], "--bucket-bits: must be from 1 to 8"),
    (["swarm", "--bucket-bits", "9"], "--bucket-bits: must be from 1 to 8"),
])
def test_bad_arguments_get_a_clear_error(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_swarm_builds_its_nodes_with_the_bucket_bits_given(monkeypatch):
    """`kadtalk swarm --bucket-bits B [--refresh-groups]` reaches the swarm's RoutingSettings,
    next to --k and --alpha (in process: start_swarm stands in, so nothing binds or serves)."""
    import asyncio

    from kadtalk import cli
    from kadtalk.node.routing.layer import RoutingSettings
    from kadtalk.transport import udp

    class Started(Exception):
        pass

    given: list[RoutingSettings] = []

    async def start_swarm(count, port_base, host, settings, *args, **kwargs):
        given.append(settings)
        raise Started

    monkeypatch.setattr(udp, "start_swarm", start_swarm)
    for argv, bits, groups in ((["swarm", "--k", "8"], 1, False),
                               (["swarm", "--bucket-bits", "3", "--k", "8"], 3, False),
                               (["swarm", "--bucket-bits", "3", "--refresh-groups"], 3, True)):
        with pytest.raises(Started):
            asyncio.run(cli.cmd_swarm(cli.build_parser().parse_args(argv)))
        k = 8 if "--k" in argv else 20
        assert given[-1] == RoutingSettings(k=k, bucket_bits=bits, refresh_groups=groups)
    help_text = run("swarm", "--help").stdout
    assert "--bucket-bits B" in help_text and "b bits a hop" in help_text
    assert "--refresh-groups" in help_text and "[routing] refresh_groups" in help_text
    from kadtalk.node.routing.table import MAX_BUCKET_BITS

    assert f"(1 to {MAX_BUCKET_BITS}," in help_text  # the help's range is the node's


def test_swarm_of_64_answers_lookup_with_the_right_address(tmp_path):
    base = free_port_range(64)
    listing = tmp_path / "swarm.txt"
    swarm = subprocess.Popen([*KADTALK, "swarm", "--nodes", "64", "--port-base", str(base),
                              "--list", str(listing)], stderr=subprocess.PIPE, text=True)
    try:
        for line in swarm.stderr:  # wait for the swarm to say it is ready
            if "ready" in line:
                break
        else:
            pytest.fail(f"swarm exited with {swarm.wait()} before it was ready")
        entries = [line.split() for line in listing.read_text().splitlines()]
        assert len(entries) == 64
        for node_id, where in (entries[5], entries[63]):
            result = run("lookup", node_id, "--bootstrap", f"127.0.0.1:{base}", "--json", timeout=60)
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout.splitlines()[-1])
            assert report["found"] and report["address"] == where
            assert report["rpcs"] >= 0 and report["lookup_ms"] >= 0
    finally:
        swarm.terminate()
        swarm.wait(timeout=10)


def test_a_node_started_before_its_bootstrap_keeps_trying_and_joins(tmp_path):
    """`kadtalk node` runs the node's upkeep (Node.keep_joined): a join that finds nobody is
    retried with the join-retry back-off, so the node joins once its bootstrap node starts."""
    late = free_port_range(2)
    early = subprocess.Popen([*KADTALK, "node", "--ephemeral", "--host", "127.0.0.1",
                              "--port", str(late + 1), "--bootstrap", f"127.0.0.1:{late}"],
                             stderr=subprocess.PIPE, text=True)
    bootstrap = None
    watchdog = threading.Timer(60, early.kill)  # a hung read ends the test, never the suite
    watchdog.start()
    try:
        joined = []
        for line in early.stderr:
            found = re.search(r"joined: (\d+) contacts", line)
            if found is None:
                continue
            joined.append(int(found.group(1)))
            if joined == [0]:  # nobody there: now start the bootstrap node
                bootstrap = subprocess.Popen(
                    [*KADTALK, "node", "--ephemeral", "--host", "127.0.0.1", "--port", str(late)],
                    stderr=subprocess.DEVNULL)
            if joined[-1] > 0:
                break
        assert joined[0] == 0 and joined[-1] == 1, joined
    finally:
        watchdog.cancel()
        for proc in (early, bootstrap):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


def test_sim_lookup_json_and_out_dir(tmp_path):
    result = run("sim", "lookup", "--nodes", "300", "--lookups", "60", "--seed", "3", "--json",
                 "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("nodes", "lookups", "success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean",
                "hops_mean", "wall_s", "peak_rss_mb"):
        assert key in summary
    assert summary["nodes"] == 300 and summary["lookups"] == 60 and summary["success_rate"] == 1.0
    out = tmp_path / "run"
    rows = (out / "lookups.csv").read_text().splitlines()
    assert rows[0].startswith("start,source,target,latency_ms") and len(rows) == 61
    params = json.loads((out / "params.json").read_text())
    assert params["study"]["seed"] == 3 and params["summary"] == summary
    assert (out / "latency_cdf.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
