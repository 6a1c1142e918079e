"""Per bucket index: mean entries after protocol joins vs the fast bootstrap (same IDs)."""
import sys, statistics
from dataclasses import replace
from kadtalk.experiments.lookup import LookupStudy, SimWorld
from kadtalk.sim.bootstrap import ConvergedTables
n = int(sys.argv[1]); bb = int(sys.argv[2])
study = LookupStudy(nodes=n, lookups=0, seed=4, bootstrap="protocol", routing=(("bucket_bits", bb),))
world = SimWorld(study)
world.settings = replace(world.settings, bucket_bits=bb)
world.attach(lambda a, e: None)
start = world.converge()
world.env.run(until=start)
fast = ConvergedTables(world.ids, 20, spread=3, seed=1, bucket_bits=bb)
width = 0
prot, fst = {}, {}
for i in range(n):
    t = world.driver.nodes[i].routing.table
    for idx, size in enumerate(t._sizes):
        prot[idx] = prot.get(idx, 0) + size
    for idx, size in enumerate(fast.sizes(i)):
        fst[idx] = fst.get(idx, 0) + size
tot_p = sum(prot.values()) / n; tot_f = sum(fst.values()) / n
print(f"n={n} bucket_bits={bb}: entries per table protocol {tot_p:.1f} fast {tot_f:.1f}")
for idx in sorted(set(prot) | set(fst)):
    p, f = prot.get(idx, 0) / n, fst.get(idx, 0) / n
    if p > 0.05 or f > 0.05:
        print(f"  index {idx:4d} (c={idx >> (bb-1)}, s={idx & ((1 << (bb-1)) - 1)}): protocol {p:5.2f} fast {f:5.2f}")
