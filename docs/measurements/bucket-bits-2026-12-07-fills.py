"""How the join's refresh (fill) lookups end with bucket_bits B: count, requests, filled or not.
usage: fills.py NODES B [NAME=VALUE ...]"""
import ast, collections, json, sys, time
from kadtalk.experiments import lookup as L
from kadtalk.node.routing import layer as RL

nodes, b = int(sys.argv[1]), int(sys.argv[2])
more = tuple((n, ast.literal_eval(v)) for n, v in (a.split("=", 1) for a in sys.argv[3:]))
stats = collections.Counter()
complete = RL.RoutingLayer._complete


def counted(self, lookup, now):
    if lookup.purpose == RL.REFRESH and self._lookups and lookup.lookup_id in self._lookups:
        fill = getattr(lookup, "_fill", None)
        stats["refreshes"] += 1
        stats["requests"] += lookup.rpcs
        if fill is not None:
            kind = "filled" if fill[2] >= fill[1] else ("range known" if fill[4] else "range unmet")
            stats[kind] += 1
            stats[kind + " requests"] += lookup.rpcs
            stats["wanted"] += fill[1]
            stats["got"] += fill[2]
    return complete(self, lookup, now)


RL.RoutingLayer._complete = counted
study = L.LookupStudy(nodes=nodes, lookups=0, seed=1, bootstrap="protocol",
                      routing=(("bucket_bits", b),) + more)
L.run_lookup_study(study)
print(json.dumps({"bucket_bits": b, "nodes": nodes, "more": dict(more)} | dict(stats)
                 | {"cpu_s": round(time.process_time(), 1)}))
