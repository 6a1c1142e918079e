"""Routing-table poisoning with forged IDs (issue 17, attack 1) replayed in the simulator with the
same Node code: 80 forged bare ROUTE_REQs (3.3 KB) from a silent address aimed at one bucket of
a victim, a node joining into that bucket later, and a lookup of it through the victim.
Before the fix the forged IDs filled the bucket and its cache, the newcomer reached only the
cache and the lookup failed after 20 timeouts (experiments/attacks/poisoning.py)."""

from __future__ import annotations

import pytest

from kadtalk.experiments.attacks.poisoning import PoisoningStudy, run_poisoning
from kadtalk.node.routing.layer import RoutingSettings


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forged_ids_never_enter_the_victim_table_and_the_newcomer_is_found(seed):
    result = run_poisoning(PoisoningStudy(seed=seed))
    assert result.forged_bytes == 80 * 41
    assert result.forged_in_table == 0  # nothing forged for the daemon to save to peers.json
    assert result.forged_in_cache == 0
    assert result.newcomer_in_table  # it answered the victim's probe: a round trip
    assert result.found and result.timeouts == 0
    # one probe a second per address: the forged IDs drew a single bare request, the rest
    # skipped (not counted as drops: honest traffic repeats probes too)
    assert result.probes_to_forger == 1
    assert result.victim_drops == {}


@pytest.mark.parametrize("bits", [2, 8])
def test_the_attack_aims_at_the_empty_prefix_group_with_b_bits_a_hop(bits):
    """With bucket_bits b the victim's table keeps whole groups of 2^(b-1) buckets: the forged
    IDs go one prefix group past its deepest occupied one (review R1 F1, session 14: the
    bucket count read as a prefix length aimed deeper, and past 160 bits from b = 6)."""
    settings = RoutingSettings(request_timeout=1.0, bucket_bits=bits)
    result = run_poisoning(PoisoningStudy(seed=1, settings=settings))
    assert result.forged_bytes == 80 * 41
    assert result.forged_in_table == 0 and result.forged_in_cache == 0
    assert result.newcomer_in_table
    assert result.found and result.timeouts == 0
