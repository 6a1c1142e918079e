"""The testbed comes up as described and leaves nothing behind, whatever happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kadtalk.experiments.testbed import Testbed, cleanup_stale, list_namespaces

from .conftest import require_testbed, standard_nat_layout


def _ours(tb: Testbed) -> list[str]:
    return [n for n in list_namespaces() if n.startswith(tb.tag + "-")]


def test_up_and_down_leave_nothing_behind():
    require_testbed()
    tb = Testbed()
    standard_nat_layout(tb)
    with tb:
        assert sorted(_ours(tb)) == sorted(
            f"{tb.tag}-{n}" for n in ("core", "pub1", "pub2", "natf", "hf", "natc", "hc"))
        assert tb.host("pub1").address == "198.18.1.2"
        assert tb.host("hf").address == "192.168.1.2"
        assert tb.host("hf").public_address == tb.nats["natf"].address
        routes = tb.run("hf", ["ip", "route"]).stdout
        assert "default via 192.168.1.1" in routes
        agent = tb.agent("pub1")  # a process inside: killed by teardown
    assert _ours(tb) == []
    assert agent.proc.poll() is not None


def test_teardown_after_an_exception():
    require_testbed()
    tb = Testbed()
    tb.public("a")
    tb.public("b")
    with pytest.raises(RuntimeError, match="boom"):
        with tb:
            tb.popen("a", ["sleep", "60"])
            raise RuntimeError("boom")
    assert _ours(tb) == []


def test_teardown_on_sigterm_and_stale_cleanup():
    require_testbed()
    script = textwrap.dedent("""
        import sys
        from kadtalk.experiments.testbed import Testbed
        tb = Testbed()
        tb.public("a"); tb.nat("n", "filtering"); tb.private("b", "n")
        with tb:
            print(tb.tag, flush=True)
            sys.stdin.readline()  # blocks until the test sends SIGTERM
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        tag = proc.stdout.readline().strip()
        assert tag and [n for n in list_namespaces() if n.startswith(tag + "-")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [n for n in list_namespaces() if n.startswith(tag + "-")] == []

    # a run killed with SIGKILL cannot clean up: cleanup_stale does, once its creator is gone
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    tag = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    assert [n for n in list_namespaces() if n.startswith(tag + "-")]
    removed = cleanup_stale()
    assert {n for n in removed if n.startswith(tag + "-")}
    assert [n for n in list_namespaces() if n.startswith(tag + "-")] == []


def test_description_errors():
    tb = Testbed()
    tb.public("a")
    with pytest.raises(ValueError):
        tb.public("a")
    with pytest.raises(ValueError):
        tb.private("x", nat="nope")
    with pytest.raises(ValueError):
        tb.nat("n", kind="port-restricted")  # kinds: filtering, full-cone, symmetric
    tb.nat("c", kind="full-cone")
    tb.private("h1", "c", ports="5000:5999")
    with pytest.raises(ValueError, match="overlap"):
        tb.private("h2", "c", ports=5500)


def test_cli_runs_a_command_in_a_host_and_tears_down(capfd):
    from kadtalk.cli import main

    require_testbed()
    mine = f"ktb-{os.getpid()}-"  # the CLI runs in this process: its namespaces carry our pid
    before = set(list_namespaces(mine))
    assert main(["testbed", "run", "--public", "2", "--nat", "full-cone:2", "--on", "nat1h2", "--",
                 "ip", "-4", "-br", "addr", "show", "wan"]) == 0
    out, err = capfd.readouterr()
    assert "192.168.2.2" in out and "nat1h2 = 192.168.2.2 behind nat1" in err
    assert main(["testbed", "run", "--public", "1", "--", "sh", "-c", "exit 3"]) == 3
    assert set(list_namespaces(mine)) == before
