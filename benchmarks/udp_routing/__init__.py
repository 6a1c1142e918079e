"""kadtalk's routing over real UDP on 127.0.0.1, against bmuller's `kademlia` from PyPI.

Two parts, both run for kadtalk and for `kademlia` (2.2.3, asyncio, over rpcudp), set up the
same way (k = 20, α = 3), in one invocation so that the ratios hold on a noisy, shared machine:

(a) throughput: one server node per system in its own process (multiprocessing, spawn),
    pre-filled with `--contacts` contacts so that every full answer carries 20 of them, in three
    rows, each system's requests in its own wire format (kadtalk: bare 41-byte ROUTE_REQ;
    kademlia: rpcudp's `0x00 + msgid(20) + msgpack(['find_node', [sender_id, key]])`):
      limits lifted   kadtalk's server runs RoutingSettings(limits=False) (no flood limits, no
                      3x amplification limit: a setting for benchmarks only); one plain UDP
                      socket with one sender ID keeps `--window` requests outstanding (closed
                      loop: it measures the server, not the client): the engine; the same
                      load also drives the floor (floor_adapter: kadtalk's UDP driver around a
                      stand-in node answering prebuilt bytes), so that each system's CPU per
                      answer splits into the floor and the work above it;
      many IDs        the same, from another address claiming `--origins` sender IDs: what the
                      one-ID-per-address check costs when one address claims many;
      default limits  kadtalk's defaults; `--offered` requests a second (open loop, above what
                      the limits allow) from `--sources` addresses in 127.42.0.0/16 (Linux binds
                      any 127.x.y.z), one sender ID each, answering kadtalk's address probes as
                      a peer does: the protection, against "what the limits allow" (1,000/s).
    kademlia has no limits; its server runs the same loads. A bare heapq loop's events/s
    (benchmarks.sim_scale's baseline) and the load average are reported to compare machines.

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
    floor_adapter     part (a)'s floor: the driver, the event loop and the kernel without a node
    lookups           part (b): one swarm per system, fresh clients looking up its nodes
    report            figures, the table and the JSON payload
    cli               main(): checks, runs the parts, reports
    node_cost         the node's CPU per answer without sockets (`python -m
                      benchmarks.udp_routing.node_cost`), encoding's share in it
"""

from benchmarks.udp_routing.cli import main

__all__ = ["main"]
