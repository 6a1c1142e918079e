"""Run `kadtalk swarm --nodes N --bucket-bits B` until ready; report its line and the host's UDP
counters (/proc/net/snmp) from the start to "ready".
Usage: python docs/measurements/bucket-bits-2026-12-07-swarm.py N PORT_BASE B [B ...]
(run from /tmp with PYTHONPATH at an export)."""
import json
import os
import subprocess
import sys
import time


def snmp():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:])}


def load():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


nodes, base = int(sys.argv[1]), int(sys.argv[2])
for bits in sys.argv[3:]:
    command = ["nice", "-n", "10", sys.executable, "-m", "kadtalk", "swarm", "--nodes", str(nodes),
               "--port-base", str(base), "--host", "127.0.0.1", "--list", f"/tmp/h4-swarm-{bits}.txt",
               "--bucket-bits", bits]
    load_before, before, started = load(), snmp(), time.perf_counter()
    swarm = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    report = ""
    try:
        for line in swarm.stderr:
            if "swarm: " in line and "joined in" in line:
                report = line.strip()
            if "ready" in line:
                break
        after, wall = snmp(), time.perf_counter() - started
    finally:
        swarm.terminate()
        swarm.wait(timeout=30)
    delta = {k: after[k] - before[k] for k in ("InDatagrams", "OutDatagrams", "RcvbufErrors", "InErrors")}
    print(json.dumps({"bucket_bits": int(bits), "nodes": nodes, "command": " ".join(command[3:]),
                      "report": report, "wall_s": round(wall, 1), "load_before": load_before,
                      "load_after": load(), "host_udp": delta}), flush=True)
    time.sleep(2)  # let the ports go (a fresh run binds them again)
