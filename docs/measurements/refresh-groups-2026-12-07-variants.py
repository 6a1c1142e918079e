"""RoutingSettings.refresh_groups's choices at bucket_bits B, patched into the committed rule
(f94a469) for this study only: a protocol-joined lookup study, seed 1, refresh_groups=True
(and join_groups=True where RoutingSettings has it: since 9da6e62 the join's half).
usage: python docs/measurements/refresh-groups-2026-12-07-variants.py NODES LOOKUPS B VARIANT
    [SETTLE]
VARIANT: emptiest (the committed rule: the target in the emptiest bucket to refresh, a random
 one of equals) | first (the first of equals) | random (a random ID anywhere in the group) |
 aimbucket (the aim: what the target's bucket lacks, not the group's buckets) | shallowN
 (groups c < N refreshed bucket by bucket, as without refresh_groups; deeper ones by group)"""
import json, statistics, sys, time
from kadtalk.experiments import lookup as L
from kadtalk.node.routing import table as T, layer as Y

nodes, lookups, b, variant = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
settle = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
orig_groups = T.RoutingTable.group_refreshes
if variant == "random":
    orig_rid = T.RoutingTable.random_id_in_bucket
    def group_refreshes(self, buckets, *a):
        return [(-1 - b, g) for b, g in orig_groups(self, buckets, *a)]  # marker: random in group
    def random_id_in_bucket(self, index, rng):
        if index < 0:
            index = -1 - index
            c = index >> self._extra
            rest = T.ID_BITS - 1 - c
            return (self.own_id >> rest ^ 1) << rest | rng.getrandbits(rest)
        return orig_rid(self, index, rng)
    T.RoutingTable.group_refreshes = group_refreshes
    T.RoutingTable.random_id_in_bucket = random_id_in_bucket
    def _refresh_lookup(self, bucket, now, joined=False, group=None):
        settings = self.settings
        if self.lookups_running < settings.max_lookups:
            target = self.table.random_id_in_bucket(bucket, self.rng)
            fill = self.table.bucket_index(target) if settings.refresh_fill else -1
            lookup = self._new_lookup(target, Y.Mode.FIND_CLOSEST, Y.REFRESH, now, fill=fill,
                                      joined=joined, group=group)
            self._advance(lookup, now)
    Y.RoutingLayer._refresh_lookup = _refresh_lookup
elif variant == "aimbucket":
    orig_new = Y.RoutingLayer._new_lookup
    def _new_lookup(self, target, mode, purpose, now, paths=1, verify=None, urgent=False,
                    fill=-1, joined=False, group=None):
        return orig_new(self, target, mode, purpose, now, paths, verify, urgent, fill, joined,
                        None if group is None else [fill])
    Y.RoutingLayer._new_lookup = _new_lookup
elif variant == "first":
    def group_refreshes(self, buckets, *a):
        sizes = self._sizes
        return [(min(g, key=lambda i: sizes[i] if i < len(sizes) else 0), g)
                for _, g in orig_groups(self, buckets, *a)]
    T.RoutingTable.group_refreshes = group_refreshes
elif variant.startswith("shallow"):
    n = int(variant[7:])
    def group_refreshes(self, buckets, *a):
        out = []
        for b, g in orig_groups(self, buckets, *a):
            if b >> self._extra < n:
                out += [(i, None) for i in g]  # each bucket as without refresh_groups
            else:
                out.append((b, g))
        return out
    T.RoutingTable.group_refreshes = group_refreshes
else:
    assert variant == "emptiest"

seen = {}
converge = L.SimWorld.converge
def patched(self, *args, **kwargs):
    start = converge(self, *args, **kwargs)
    def record(tag):
        seen[tag + "_datagrams"] = self.network.sent
        tables = [n.routing.table for n in self.driver.nodes]
        seen[tag + "_entries"] = round(statistics.fmean(len(t) for t in tables), 1)
    self.at(start - settle + 1e-6, lambda: record("joined"))
    if settle > 10:
        self.at(start - settle + 10.0, lambda: record("settled"))
    self.at(start - 1e-6, lambda: record("lookups"))
    return start
L.SimWorld.converge = patched
study = L.LookupStudy(nodes=nodes, lookups=lookups, seed=1, bootstrap="protocol", settle=settle,
                      routing=(("bucket_bits", b), ("refresh_groups", True)) + (
                          (("join_groups", True),) if hasattr(Y.RoutingSettings(), "join_groups")
                          else ()))
s = L.run_lookup_study(study).summary
out = {"nodes": nodes, "b": b, "variant": variant, "settle": settle,
       "median_ms": round(s["median_ms"], 1), "rpcs_mean": s["rpcs_mean"],
       "hops_mean": s["hops_mean"], "success": s["success_rate"]} | seen
if "settled_datagrams" in seen:
    between = seen["lookups_datagrams"] - seen["settled_datagrams"]
    out["between_per_node"] = round(between / nodes, 1)
print(json.dumps(out | {"cpu_s": round(time.process_time(), 1)}))
