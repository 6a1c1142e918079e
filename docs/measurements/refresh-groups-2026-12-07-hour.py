"""A protocol-joined lookup study with routing overrides and a settle time (seed 1); prints the
summary, the datagrams sent by the end of the joins ("joined"), 10 s later ("settled": the
last joins' refreshes done), at the first lookup ("lookups"), the mean table size at each, and
the datagrams a node sent from "settled" to the first lookup ("between_per_node": with settle
3,700 s, one hour of refreshes, as bucket-bits-2026-12-07-refresh.py counts them).
usage: python docs/measurements/refresh-groups-2026-12-07-hour.py NODES LOOKUPS SETTLE
    name=value ...      (RoutingSettings fields, e.g. bucket_bits=3 refresh_groups=True)"""
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
    if settle > 10:
        self.at(start - settle + 10.0, lambda: record("settled"))
    self.at(start - 1e-6, lambda: record("lookups"))
    return start


L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=lookups, seed=1, bootstrap="protocol",
                      routing=routing, settle=settle)
summary = L.run_lookup_study(study).summary
keep = ("success_rate", "median_ms", "p90_ms", "p99_ms", "rpcs_mean", "hops_mean", "datagrams")
between = {}
if "settled_datagrams" in seen:
    between["between_per_node"] = round(
        (seen["lookups_datagrams"] - seen["settled_datagrams"]) / nodes, 1)
print(json.dumps({"nodes": nodes, "lookups": lookups, "routing": dict(routing), "settle": settle}
                 | {k: summary[k] for k in keep} | seen | between
                 | {"cpu_s": round(time.process_time(), 1)}))
