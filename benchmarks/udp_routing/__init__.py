"""kadtalk's routing over real UDP on 127.0.0.1, against bmuller's `kademlia` from PyPI.

Two parts, both run for kadtalk and for `kademlia` (2.2.3, asyncio, over rpcudp), set up the
same way (k = 20, α = 3), in one invocation so that the ratios hold on a noisy, shared machine:

(a) throughput: one server node in its own process (multiprocessing, spawn), pre-filled with
    `--contacts` contacts so that every answer carries 20 of them. A load generator in this
    process sends find-node requests from one plain UDP socket, in each system's own wire format
    (kadtalk: 41-byte ROUTE_REQ; kademlia: rpcudp's `0x00 + msgid(20) + msgpack(['find_node',
    [sender_id, key]])`), from `--origins` distinct fake sender IDs, keeping `--window` requests
    outstanding so it measures the server, not the client, and counts answers per second over a
    fixed time after a warm-up.

(b) lookups: a 64-node swarm of each system (each swarm in its own process), then fresh client
    nodes in this process join it and look up every swarm node's ID:
      kadtalk  find_peer     stops as soon as the target's own entry is learned (a call's lookup);
      kadtalk  find_closest  ends when the k closest have answered (like-for-like with kademlia);
      kademlia NodeSpiderCrawl(protocol, node, peers, 20, 3).find(): the library's lookup of a
               node ID, a find-closest crawl with no early stop.
    Reported: median lookup time, mean RPCs (find-node requests sent), success (target found /
    target among the k closest returned).

Every figure is the median over `--repeat` repetitions (the two systems interleaved); the ratio
column is kadtalk / kademlia: above 1 is better for answers/s, below 1 for time and RPCs.

    python -m benchmarks.udp_routing                 # full run (about a minute)
    python -m benchmarks.udp_routing --quick         # smoke run, well under 20 s
    python -m benchmarks.udp_routing --json out.json # also write the figures as JSON

Modules, one concept each:
    config            options, the plan of one invocation (sizes, durations, ports), k, α, host
    system            the interface every compared system's adapter provides
    kadtalk_adapter   kadtalk behind that interface (server, swarm, wire format, lookup client)
    kademlia_adapter  bmuller's kademlia behind it
    processes         the spawned child processes that run servers and swarms
    load              the load generator of part (a): probe, then keep a window of requests out
    throughput        part (a): one server per system, driven by the load generator
    lookups           part (b): one swarm per system, fresh clients looking up its nodes
    report            figures, the table and the JSON payload
    cli               main(): checks, runs the parts, reports
"""

from benchmarks.udp_routing.cli import main

__all__ = ["main"]
