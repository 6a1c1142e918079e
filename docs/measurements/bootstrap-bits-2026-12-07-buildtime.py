"""CPU time of ConvergedTables at N nodes: flat and rows build, and row() for 20,000 nodes."""
import sys, time, resource
from random import Random
from kadtalk.sim.bootstrap import ConvergedTables
n = int(sys.argv[1]); store = sys.argv[2]
kw = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[3:]}
rng = Random(1)
ids = [rng.getrandbits(160) for _ in range(n)]
t = time.process_time()
tables = ConvergedTables(ids, 20, seed=5, store=store, **kw)
build = time.process_time() - t
t = time.process_time()
total = 0
for i in range(0, n, max(1, n // 20000)):
    total += len(tables.row(i)[0])
rowt = time.process_time() - t
print(f"n={n} store={store} {kw} build {build:.2f} s CPU, row() x20000 {rowt:.2f} s, entries sampled {total}, "
      f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB")
