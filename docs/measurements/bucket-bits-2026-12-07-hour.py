"""A protocol-joined lookup study with routing overrides and a settle time; prints the summary
plus datagrams at the end of the joins, at the first lookup, and the tables then.
usage: python docs/measurements/bucket-bits-2026-12-07-hour.py NODES LOOKUPS SETTLE
    name=value ..."""
import ast, json, statistics, sys, time
from kadtalk.experiments import lookup as L

nodes, lookups, settle = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
routing = tuple((kv.split("=")[0], ast.literal_eval(kv.split("=")[1])) for kv in sys.argv[4:])
seen = {}
converge = L.SimWorld.converge


def patched(self, *args, **kwargs):
    start = converge(self, *args, **kwargs)

    def record(tag):
        tables = [n.routing.table for n in self.driver.nodes]
        seen[tag + "_datagrams"] = self.network.sent
        seen[tag + "_entries"] = round(statistics.fmean(len(t) for t in tables), 1)
        seen[tag + "_at"] = round(self.env.now, 1)
    self.at(start - settle + 1e-6, lambda: record("joined"))
    self.at(start - 1e-6, lambda: record("lookups"))
    return start


L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=lookups, seed=1, bootstrap="protocol",
                      routing=routing, settle=settle)
summary = L.run_lookup_study(study).summary
keep = ("success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean", "hops_mean", "datagrams")
print(json.dumps({"routing": dict(routing), "settle": settle} | {k: summary[k] for k in keep}
                 | seen | {"cpu_s": round(time.process_time(), 1)}))
