"""Attack studies in the simulator: Sybil / eclipse against one ID, and a region going dark.

Honest peers are the real `Node` class on the SimPy driver; attackers are the peers of
kadtalk.sim.adversary speaking the same wire format. Results are tidy tables: one row per lookup,
plus one summary row per study (docs/security.md §4). One module per concept:

- sybil.py: `SybilStudy`, `run_sybil_study`: Sybil / eclipse with its defences (uptime,
  disjoint paths, verification, the /24 limit), and `keygen_rate`: what an ID costs here.
- subnet_limit.py: `SubnetLimit`, the per-/24 limit applied to converged tables.
- partition.py: `PartitionStudy`, `run_partition_study`: a region goes dark and returns;
  `success_series`, `recovery_time`.
- poisoning.py: `PoisoningStudy`, `run_poisoning`: routing-table poisoning with forged IDs
  (issue 17, attack 1) replayed against one node.
- sweeps.py: `sybil_sweep`, `keygen_sweep`: the standard sweeps, one summary row per run.
- plots.py: `figures` (the standard tables and PNGs), `draw_against_share`, `draw_partition`.
- results.py: `AttackResult`, and writing rows and summaries out.
- cli.py: ``kadtalk sim attack {sybil,partition,figures}``.
"""

from .cli import add_parser, run_cli
from .partition import PartitionStudy, recovery_time, run_partition_study, success_series
from .plots import STYLES, draw_against_share, draw_partition, figures
from .results import AttackResult, study_parameters
from .subnet_limit import SubnetLimit
from .sweeps import keygen_sweep, sybil_sweep
from .sybil import DEFENCES, SHARES, TABLES, TARGETS, SybilStudy, keygen_rate, run_sybil_study

__all__ = [
    "DEFENCES", "SHARES", "STYLES", "TABLES", "TARGETS", "AttackResult", "PartitionStudy",
    "SubnetLimit", "SybilStudy", "add_parser", "draw_against_share", "draw_partition", "figures",
    "keygen_rate", "keygen_sweep", "recovery_time", "run_cli", "run_partition_study",
    "run_sybil_study", "study_parameters", "success_series", "sybil_sweep",
]
