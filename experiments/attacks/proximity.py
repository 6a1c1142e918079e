"""What proximity neighbour selection costs against an attacker (issue 15 item 3's defaults).

`RoutingSettings.proximity` lets a measured-faster newcomer displace a full bucket's entry
(beyond its `proximity_keep` oldest), which the uptime rule alone never allows: an attacker
whose nodes answer a node's lookups faster than its entries can take their places. This runs
the Sybil study (sybil.py, the real `Node` for every honest peer) with each routing variant on
the same network and the same lookups, in two settings:

- "eclipse": the standard study (every lookup for one victim ID, the attacker's IDs next to it),
  with the defence sets of the standard figures (sybil.DEFENCES);
- "takeover": the attacker's nodes sit next to the victim in the latency model (1 ms one way)
  with random IDs; the victim runs `refreshes` find-closest lookups of random IDs (what its
  bucket refreshes do), then find-peer lookups for random honest peers. What its table holds
  afterwards, and how many of its lookups the attacker answers with a fake entry.

    python -m kadtalk.experiments.attacks.proximity [--nodes 1000] [--seeds 1,2,3] \
        [--settings eclipse,takeover] [--victim-near M] [--variants NAME,NAME]

prints one JSON line per study. Figures: docs/results.md, "Lookup latency: proximity
neighbour selection", robustness.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from kadtalk.node.routing.layer import RoutingSettings

from .sybil import DEFENCES, SybilStudy, run_sybil_study

CHOICE = (("rtt_choice_bits", 2), ("contact_slow", True))
# the routing variants compared: today's defaults, the candidate defaults, and what they hold
VARIANTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "today": (),
    "choice (no PNS)": CHOICE,
    "PNS keep 0 + choice": (("proximity", True),) + CHOICE,
    "PNS keep 10 + choice (candidates)": (("proximity", True), ("proximity_keep", 10)) + CHOICE,
    "PNS keep 10 alone": (("proximity", True), ("proximity_keep", 10)),
    "PNS keep 15 + choice": (("proximity", True), ("proximity_keep", 15)) + CHOICE,
    # session 9: a floor under which round trips count as equal (the incumbent stays)
    "PNS keep 10 floor 80 ms + choice": (("proximity", True), ("proximity_keep", 10),
                                         ("rtt_floor", 0.08)) + CHOICE,
    "PNS keep 10 floor 100 ms + choice": (("proximity", True), ("proximity_keep", 10),
                                          ("rtt_floor", 0.1)) + CHOICE,
    "PNS keep 10 floor 120 ms + choice": (("proximity", True), ("proximity_keep", 10),
                                          ("rtt_floor", 0.12)) + CHOICE,
    "PNS keep 10 floor 80 ms alone": (("proximity", True), ("proximity_keep", 10),
                                      ("rtt_floor", 0.08)),
    "PNS keep 15 floor 80 ms + choice": (("proximity", True), ("proximity_keep", 15),
                                         ("rtt_floor", 0.08)) + CHOICE,
    # session 10: only entries the node measured may be displaced (the young table's hole)
    "PNS keep 10 floor 80 ms measured + choice": (("proximity", True), ("proximity_keep", 10),
                                                  ("rtt_floor", 0.08),
                                                  ("proximity_measured", True)) + CHOICE,
    "PNS keep 15 floor 80 ms measured + choice": (("proximity", True), ("proximity_keep", 15),
                                                  ("rtt_floor", 0.08),
                                                  ("proximity_measured", True)) + CHOICE,
    "PNS keep 10 floor 100 ms measured + choice": (("proximity", True), ("proximity_keep", 10),
                                                   ("rtt_floor", 0.1),
                                                   ("proximity_measured", True)) + CHOICE,
    "PNS keep 10 measured + choice": (("proximity", True), ("proximity_keep", 10),
                                      ("proximity_measured", True)) + CHOICE,
    # fewer displaceable entries, and without the choice (which asks a within-floor entry first)
    "PNS keep 15 floor 80 ms alone": (("proximity", True), ("proximity_keep", 15),
                                      ("rtt_floor", 0.08)),
    "PNS keep 17 floor 80 ms + choice": (("proximity", True), ("proximity_keep", 17),
                                         ("rtt_floor", 0.08)) + CHOICE,
    "PNS keep 17 floor 80 ms alone": (("proximity", True), ("proximity_keep", 17),
                                      ("rtt_floor", 0.08)),
}

# PNS acts on the newcomers of a full bucket the node probes, and it probes them only while that
# bucket's replacement cache holds fewer than `cache_probes`: the PNS variants probe every one
# (the default of sessions 7-10), so they measure the same rule whatever that default becomes.
PROBE_ALL = (("cache_probes", RoutingSettings().replacement_cache),)
VARIANTS = {name: routing + PROBE_ALL if ("proximity", True) in routing else routing
            for name, routing in VARIANTS.items()}

FIELDS = ("reached_rate", "intercepted_rate", "success_rate", "rpcs_mean", "median_ms",
          "attacker_requests", "tables_with_attacker_after", "attacker_entries_after",
          "attacker_entries_near_victim_after", "attacker_entries_of_victim_after")


def studies(nodes: int, seeds: list[int], refreshes: int = 200, lookups: int = 200,
            settings: tuple[str, ...] = ("eclipse", "takeover"), victim_near: int = 0,
            variants: tuple[str, ...] = tuple(VARIANTS)) -> Iterator[tuple[str, str, SybilStudy]]:
    """(setting, variant, study) for every study of the comparison; `victim_near`: the
    takeover's victim has met that many honest members of each full bucket's range first
    (SybilStudy.victim_near: a node that has lived a while)."""
    chosen = {name: VARIANTS[name] for name in variants}
    for seed in seeds:
        for share in (0.1, 0.2) if "eclipse" in settings else ():
            for defence, overrides in DEFENCES.items():
                for variant, routing in chosen.items():
                    yield (f"eclipse, share {share}, {defence}", variant,
                           SybilStudy(nodes=nodes, share=share, seed=seed, lookups=lookups,
                                      routing=routing, **overrides))
        for verify in (False, True) if "takeover" in settings else ():
            for near, limit in ((True, 0), (False, 0), (True, 2)):
                for variant, routing in chosen.items():
                    place = "next to the victim" if near else "random places"
                    limited = f", /24 limit {limit}" if limit else ""
                    aged = f", victim met {victim_near} a range first" if victim_near else ""
                    yield (f"takeover, share 0.1, attacker at {place}{limited}, verify {verify}"
                           f"{aged}",
                           variant,
                           SybilStudy(nodes=nodes, share=0.1, seed=seed, ids="random",
                                      target="random", sources="victim", near_victim=near,
                                      refreshes=refreshes, lookups=lookups, verify=verify,
                                      subnet_limit=limit, routing=routing,
                                      victim_near=victim_near))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kadtalk.experiments.attacks.proximity",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=1000, help="honest nodes")
    parser.add_argument("--seeds", default="1", help="comma-separated")
    parser.add_argument("--refreshes", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--settings", default="eclipse,takeover", help="comma-separated")
    parser.add_argument("--victim-near", type=int, default=0, metavar="M",
                        help="takeover: the victim first met M honest members of each range")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated names of VARIANTS")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    for setting, variant, study in studies(args.nodes, seeds, args.refreshes, args.lookups,
                                           tuple(args.settings.split(",")), args.victim_near,
                                           tuple(args.variants.split(","))):
        started = time.process_time()
        summary = run_sybil_study(study).summary
        print(json.dumps({"setting": setting, "variant": variant, "seed": study.seed}
                         | {f: summary[f] for f in FIELDS}
                         | {"cpu_s": round(time.process_time() - started, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
