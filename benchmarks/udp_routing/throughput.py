"""Part (a): find-node answers per second of one server node per system, each in its own process
with `--contacts` contacts, driven in turn by the load generator (the systems interleaved)."""

from __future__ import annotations

import random
import socket
from typing import Any, Callable

from benchmarks.udp_routing.config import HOST, SYSTEMS, Plan
from benchmarks.udp_routing.load import drive, open_socket, probe
from benchmarks.udp_routing.processes import Child
from benchmarks.udp_routing.system import adapter


def run_throughput(plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Per system: {"reps": [drive's result], "table_at_start", "contacts_per_answer",
    "server_at_end"}."""
    rng = random.Random(plan.seed)
    contact_ids = [rng.getrandbits(160) for _ in range(plan.contacts)]
    origins = [rng.getrandbits(160) for _ in range(plan.origins)]
    specs = {system: adapter(system).load_spec(random.Random(plan.seed + 1 + i), origins)
             for i, system in enumerate(SYSTEMS)}
    children: dict[str, Child] = {}
    sockets: dict[str, socket.socket] = {}
    out: dict[str, Any] = {s: {"reps": []} for s in SYSTEMS}
    try:
        for system in SYSTEMS:
            ports = plan.contact_ports(system)
            contacts = [(cid, (HOST, port)) for cid, port in zip(contact_ids, ports)]
            children[system] = Child(system, "server", plan.server_port(system), contacts)
        for system in SYSTEMS:
            info = children[system].ready()
            out[system]["table_at_start"] = info["table"]
            sockets[system] = open_socket(plan.server_port(system))
            out[system]["contacts_per_answer"] = probe(sockets[system], specs[system])
        cursors = {s: [0] for s in SYSTEMS}
        for system in SYSTEMS:  # warm up: the tables fill with the fake senders
            drive(sockets[system], specs[system], plan.window, 0.0, plan.warmup,
                  cursor=cursors[system])
        for rep in range(plan.repeat):
            order = SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]
            for system in order:
                result = drive(sockets[system], specs[system], plan.window, plan.lead_in,
                               plan.duration, children[system].pid, cursors[system])
                out[system]["reps"].append(result)
            say(f"(a) repetition {rep + 1}/{plan.repeat}: " + ", ".join(
                f"{s} {out[s]['reps'][-1]['answers_per_s']:,.0f}/s" for s in SYSTEMS))
    finally:
        for sock in sockets.values():
            sock.close()
        for system, child in children.items():
            out[system]["server_at_end"] = child.stop()
    return out
