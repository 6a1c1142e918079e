"""Real kadtalk routing nodes in different namespaces, two of them behind NATs, find each other.

The table learns a sender's address from where its packets come from, so a node behind a NAT is
known by its NAT's outside address (and, MASQUERADE keeping the port, its own port).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from .conftest import standard_nat_layout

PORT = 5004
NODE = [sys.executable, "-m", "kadtalk", "node", "--ephemeral", "--port", str(PORT)]


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 20.0) -> re.Match:
    """Read the process's stderr until a line matches (no sleeping: blocking reads with a deadline)."""
    import select

    deadline = time.monotonic() + timeout
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stderr], [], [], left)
        if not ready:
            break
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got: {''.join(seen)}")


def test_nodes_behind_both_nat_kinds_join_and_find_each_other(make_testbed):
    tb = make_testbed(delay=0.005, build=standard_nat_layout)
    seed = f"{tb.host('pub1').address}:{PORT}"
    ids = {}
    procs = {}
    for name in ("pub1", "pub2", "hf", "hc"):
        argv = NODE + ([] if name == "pub1" else ["--bootstrap", seed])
        procs[name] = tb.popen(name, argv, stderr=subprocess.PIPE, text=True)
        ids[name] = wait_for_line(procs[name], r"node ([0-9a-f]{40}) listening").group(1)
    for name in ("pub2", "hf", "hc"):
        wait_for_line(procs[name], r"joined: (\d+) contacts")

    expected = {
        "pub1": f"{tb.host('pub1').address}:{PORT}",
        "pub2": f"{tb.host('pub2').address}:{PORT}",
        "hf": f"{tb.nats['natf'].address}:{PORT}",  # the filtering NAT's outside address
        "hc": f"{tb.nats['natc'].address}:{PORT}",  # the full-cone NAT's outside address
    }
    lookups = [("hf", "hc"), ("hc", "hf"), ("pub2", "hf"), ("pub2", "hc"), ("hf", "pub2"),
               ("hc", "pub1")]
    running = [
        (src, dst, tb.popen(src, [sys.executable, "-m", "kadtalk", "lookup", ids[dst],
                                  "--bootstrap", seed, "--json"], stdout=subprocess.PIPE, text=True))
        for src, dst in lookups
    ]
    for src, dst, proc in running:
        out, _ = proc.communicate(timeout=30)
        report = json.loads(out.strip().splitlines()[-1])
        assert report["found"], (src, dst, report)
        assert report["address"] == expected[dst], (src, dst, report)
