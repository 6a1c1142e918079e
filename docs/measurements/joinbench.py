"""CPU seconds of the protocol join phase (benchmarks.sim_scale's join_phase without the heapq
part), for instruction counts: PYTHONHASHSEED=0 valgrind --tool=callgrind --cache-sim=no
python docs/measurements/joinbench.py NODES [bytes|objects]; prints datagrams, events and a
digest of the tables. Self-contained rather than importing benchmarks.sim_scale's `join_phase`
(whose first lines it repeats): instruction counts compare exports of older commits, where
that function times the heapq loop too or is missing."""
import json, sys, time, hashlib
from kadtalk.experiments.harness.world import SimWorld
from kadtalk.experiments.lookup import LookupStudy
nodes = int(sys.argv[1]); wire = sys.argv[2] if len(sys.argv) > 2 else "auto"
study = LookupStudy(nodes=nodes, lookups=0, seed=1, wire=wire)
world = SimWorld(study)
start = world.converge()
env = world.env
cpu = time.process_time()
env.run(until=start)
cpu = time.process_time() - cpu
entries = [list(n.routing.table._entries) for n in world.driver.nodes]
tables = hashlib.sha256(repr(entries).encode()).hexdigest()[:12]
print(json.dumps({"nodes": nodes, "wire": study.wire_mode, "datagrams": world.network.sent,
                  "events": env.processed, "cpu_s": round(cpu, 3),
                  "us_per_datagram": round(cpu * 1e6 / world.network.sent, 2), "tables": tables}))
