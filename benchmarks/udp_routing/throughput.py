"""Part (a): find-node answers per second of one server node per system, each in its own process
with `--contacts` contacts, in three rows (the systems interleaved in each):

- "lifted": kadtalk's flood and amplification limits lifted (RoutingSettings(limits=False)),
  closed-loop load from one source address with one sender ID (`drive`): what the engine does;
  the same load also drives FLOOR (floor_adapter: kadtalk's UDP driver around a stand-in node
  that answers with prebuilt bytes), what the driver, the event loop and the kernel cost alone;
- "many_ids": the same server, load from another address claiming `--origins` sender IDs: what
  the one-ID-per-address check costs when one address claims many IDs;
- "limits": kadtalk's default limits, open-loop load at `--offered` requests a second from
  `--sources` source addresses in 127.0.0.0/8, each a peer with one ID that answers the server's
  address probes (`drive_open`): what the protection lets through. kademlia has no limits; its
  server runs the same load for comparison. Its warm-up goes on until every source gets full
  answers (k contacts: kadtalk has validated its address), at most config.SETTLE s longer, so the
  repetitions measure the steady state, not the first second of a new peer.
"""

from __future__ import annotations

import random
import socket
from typing import Any, Callable

from benchmarks.udp_routing.config import HOST, K, SETTLE, SYSTEMS, Plan
from benchmarks.udp_routing.load import drive, drive_open, open_socket, open_sources, probe
from benchmarks.udp_routing.processes import Child
from benchmarks.udp_routing.system import adapter

ROWS = ("lifted", "many_ids", "limits")
SERVERS = {"lifted": False, "limits": True}  # server rows and their `limits`; many_ids: lifted's
FLOOR = "floor"  # the floor's server (floor_adapter), in the lifted row only


def run_throughput(plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Per row and system: {"reps": [drive's result], "table_at_start", "contacts_per_answer"
    (lifted: the probe's), "server_at_end"}, the lifted row also for FLOOR; per row "limits":
    {"allow": {system: answers/s the limits allow}}, and per system its "warmup" (drive_open's
    result: "sources_full", "full_after_s")."""
    rng = random.Random(plan.seed)
    contact_ids = [rng.getrandbits(160) for _ in range(plan.contacts)]
    origins = [rng.getrandbits(160) for _ in range(plan.origins)]
    peers = [rng.getrandbits(160) for _ in range(plan.sources)]  # one ID per source address
    specs = {
        "lifted": {system: adapter(system).load_spec(random.Random(plan.seed + 1 + i),
                                                     origins[:1])
                   for i, system in enumerate(SYSTEMS)},
        "many_ids": {system: adapter(system).load_spec(random.Random(plan.seed + 5 + i), origins)
                     for i, system in enumerate(SYSTEMS)},
        "limits": {system: adapter(system).load_spec(random.Random(plan.seed + 3 + i), peers)
                   for i, system in enumerate(SYSTEMS)},
    }
    children: dict[tuple[str, str], Child] = {}
    sockets: dict[tuple[str, str], list[socket.socket]] = {}
    specs["lifted"][FLOOR] = specs["lifted"]["kadtalk"]  # the floor answers in kadtalk's format
    out: dict[str, Any] = {row: {s: {"reps": []} for s in SYSTEMS} for row in ROWS}
    out["lifted"][FLOOR] = {"reps": []}
    lifted_servers = (*SYSTEMS, FLOOR)
    out["limits"]["allow"] = {s: adapter(s).limits_allow(plan.sources) for s in SYSTEMS}
    try:
        for system in SYSTEMS:
            ports = plan.contact_ports(system)
            contacts = [(cid, (HOST, port)) for cid, port in zip(contact_ids, ports)]
            for row, limits in SERVERS.items():
                children[row, system] = Child(system, "server", plan.server_port(system, limits),
                                              contacts, limits)
            if system == SYSTEMS[0]:  # the floor answers with this system's contacts
                children["lifted", FLOOR] = Child(FLOOR, "server", plan.floor_port(), contacts,
                                                  False)
        out["lifted"][FLOOR]["table_at_start"] = children["lifted", FLOOR].ready()["table"]
        sockets["lifted", FLOOR] = [open_socket(plan.floor_port())]
        out["lifted"][FLOOR]["contacts_per_answer"] = probe(sockets["lifted", FLOOR][0],
                                                            specs["lifted"][FLOOR])
        for system in SYSTEMS:
            for row in SERVERS:
                out[row][system]["table_at_start"] = children[row, system].ready()["table"]
            port = plan.server_port(system)
            for row in ("lifted", "many_ids"):
                sockets[row, system] = [open_socket(port)]
                out[row][system]["contacts_per_answer"] = probe(sockets[row, system][0],
                                                                specs[row][system])
            sockets["limits", system] = open_sources(plan.server_port(system, True), plan.sources)
        cursors = {(row, system): [0] for row in ROWS for system in SYSTEMS}
        cursors["lifted", FLOOR] = [0]

        def run(row: str, system: str, warm_up: bool = False) -> dict[str, Any]:
            key = (row, system)
            pid = None if warm_up else children[row if row in SERVERS else "lifted", system].pid
            lead_in, seconds = (0.0, plan.warmup) if warm_up else (plan.lead_in, plan.duration)
            if row != "limits":
                return drive(sockets[key][0], specs[row][system], plan.window, lead_in, seconds,
                             pid, cursors[key])
            if warm_up:  # until every source's answers are full: validated addresses
                return drive_open(sockets[key], specs[row][system], plan.offered, lead_in,
                                  seconds, pid, cursors[key], settle=(K, SETTLE))
            # a lead-in long enough to spend the node's saved-up burst: the steady state counts
            return drive_open(sockets[key], specs[row][system], plan.offered,
                              max(lead_in, plan.drain), seconds, pid, cursors[key])

        for system in SYSTEMS:  # warm up: tables fill, bursts drain, sources answer probes
            for row in ROWS:
                warm = run(row, system, warm_up=True)
                if row == "limits":
                    out[row][system]["warmup"] = warm
        run("lifted", FLOOR, warm_up=True)
        for rep in range(plan.repeat):
            order = SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]
            for row in ROWS:
                for system in order:
                    out[row][system]["reps"].append(run(row, system))
                if row == "lifted":  # after both systems: their order alternates, not the floor's
                    out[row][FLOOR]["reps"].append(run(row, FLOOR))
            say(f"(a) repetition {rep + 1}/{plan.repeat}: " + "; ".join(
                f"{row}: " + ", ".join(
                    f"{s} {out[row][s]['reps'][-1]['answers_per_s']:,.0f}/s"
                    for s in (lifted_servers if row == "lifted" else SYSTEMS))
                for row in ROWS))
    finally:
        for socks in sockets.values():
            for sock in socks:
                sock.close()
        for (row, system), child in children.items():
            out[row][system]["server_at_end"] = child.stop()
    return out
