"""Sybil / eclipse robustness of bucket_bits: one study at b = 1 and b = 3 (session 14).

    python docs/measurements/bucket-bits-2026-12-07-sybil.py uptime   # or mixed

2,000 honest nodes, 300 lookups, seed 1; the attacker's share 0.1 and 0.3 of all nodes, its
IDs random or ground by key generation near the victim (`keygen`), lookups all for the
victim (`one`) or for random honest targets; tables by the uptime rule with the attacker
arrived last (`uptime`) or each attacker node as old as a random honest one (`mixed`).
One JSON line per run (the study's summary).
"""
import json
import sys

from kadtalk.experiments.attacks.sybil import SybilStudy, run_sybil_study

tables = sys.argv[1] if len(sys.argv) > 1 else "mixed"
for ids in ("random", "keygen"):
    for share in (0.1, 0.3):
        for target in ("one", "random"):
            for bits in (1, 3):
                study = SybilStudy(nodes=2000, share=share, ids=ids, target=target, lookups=300,
                                   seed=1, tables=tables, routing=(("bucket_bits", bits),))
                summary = run_sybil_study(study).summary
                flat = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
                print(json.dumps({"ids": ids, "share": share, "target": target,
                                  "bucket_bits": bits, "tables": tables, **flat}), flush=True)
