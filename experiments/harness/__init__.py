"""The experiment harness every simulated study is built from (issue 12, item 4).

- `world`: the simulated world: node IDs, latency model, realism features (churn, NAT,
  traffic), network, driver, and how the routing tables converge (protocol joins or the fast
  bootstrap of sim/bootstrap.py). One random-number order for every study: a seed reproduces.
- `workload`: what happens to the world: lookups or calls between random pairs at Poisson times.
- `recorder`: what comes out: lookup rows, and the summary helpers (percentiles, peak memory,
  the software environment).

The lookup study (experiments/lookup.py), the attack studies, the call set-up study
(experiments/calls.py) and the testbed comparison all build on these.
"""
