"""Maintenance datagrams of a protocol-joined network with bucket_bits B: the study with
`settle` = 3,700 s (lookups after one refresh interval), datagrams sent from 10 s after the
last join (the join's own refreshes done) to the first lookup, i.e. one hour of refreshes.
usage: refresh.py NODES B"""
import json, statistics, sys, time
from kadtalk.experiments import lookup as L

nodes, b = int(sys.argv[1]), int(sys.argv[2])
marks = {}
converge = L.SimWorld.converge


def patched(self, *args, **kwargs):
    start = converge(self, *args, **kwargs)

    def mark(name):
        def record():
            marks[name] = self.network.sent
            marks[name + "_entries"] = statistics.fmean(len(n.routing.table) for n in self.driver.nodes)
            marks[name + "_buckets"] = statistics.fmean(n.routing.table.bucket_count() for n in self.driver.nodes)
        return record
    self.at(start - 3690.0, mark("joined"))
    self.at(start - 1e-6, mark("hour"))
    return start


L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=50, seed=1, bootstrap="protocol", settle=3700.0,
                      routing=(("bucket_bits", b),))
summary = L.run_lookup_study(study).summary
print(json.dumps({"bucket_bits": b, "nodes": nodes, "success_rate": summary["success_rate"],
                  "median_ms": summary["median_ms"], "rpcs_mean": summary["rpcs_mean"]} | marks
                 | {"refresh_datagrams_per_node_hour": (marks["hour"] - marks["joined"]) / nodes,
                    "cpu_s": round(time.process_time(), 1)}))
