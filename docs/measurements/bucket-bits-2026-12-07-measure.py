"""One lookup study by protocol join with bucket_bits B; prints the summary plus the join
phase's datagrams (network.sent when the lookups start) and table sizes then.
usage: measure.py NODES LOOKUPS B [SEED [NAME=VALUE ...]] (more RoutingSettings fields)"""
import ast, json, statistics, sys, time
from kadtalk.experiments import lookup as L

nodes, lookups, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
more = tuple((n, ast.literal_eval(v)) for n, v in (a.split("=", 1) for a in sys.argv[5:]))
joined = {}
converge = L.SimWorld.converge


def patched(self, *args, **kwargs):
    start = converge(self, *args, **kwargs)

    def record():
        tables = [n.routing.table for n in self.driver.nodes]
        joined["join_datagrams"] = self.network.sent
        joined["table_entries_mean"] = statistics.fmean(len(t) for t in tables)
        joined["table_buckets_mean"] = statistics.fmean(t.bucket_count() for t in tables)
        joined["at"] = self.env.now
    self.at(start - 1e-6, record)
    return start


L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=lookups, seed=seed, bootstrap="protocol",
                      routing=(("bucket_bits", b),) + more)
summary = L.run_lookup_study(study).summary
keep = ("nodes", "lookups", "success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean",
        "hops_mean", "timeouts_mean", "datagrams")
print(json.dumps({"bucket_bits": b, "seed": seed, "more": dict(more)} | {k: summary[k] for k in keep} | joined
                 | {"cpu_s": round(time.process_time(), 1)}))
