"""`RoutingTable.closest` with b bits a hop (`_closest_split`) for targets next to our own ID:
in a deep prefix group (c >= 160 - (b - 1)) fewer than b - 1 bits follow bit c, so a
sub-bucket index is those bits zero-padded on the right, our target's (`mine`) too. Its
buckets are walked nearest first from `mine` and the walk stops once more than `count` entries
are taken: a `mine` padded otherwise starts the walk in the wrong bucket and misses the nearest
entry (review R1, session 14: that mutation survived every other test)."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.table import RoutingTable, TableSettings

from .test_table import ID_MAX, Reg

NEAR = 1 << 8  # IDs and targets within the owner's last 8 bits: prefix groups c >= 152


def table_with(own: int, b: int, lows: list[int], far: list[int]) -> tuple[Reg, RoutingTable]:
    """A table of b bits a hop (k = 20: every deep sub-bucket holds all its IDs) holding
    own ^ low for each low (sharing >= 152 bits with `own`) and the IDs in `far`."""
    reg = Reg()
    table = RoutingTable(own, reg.ids, TableSettings(20, 0, 2, b))
    for node_id in [own ^ low for low in lows] + far:
        table.observe(reg.add(node_id), 0.0)
    return reg, table


def brute(reg: Reg, table: RoutingTable, target: int) -> list[int]:
    return sorted((h for h in table.handles() if h in table), key=lambda h: reg.ids[h] ^ target)


@pytest.mark.parametrize("b", range(4, 9))
def test_closest_to_a_target_sharing_155_to_159_bits_is_the_brute_force_sort(b):
    """Every target within the owner's last 8 bits (its own ID too), for tables holding all or
    a random half of the IDs there, plus far ones: the `count` nearest, and with the nearest
    excluded (the requester), exactly the XOR order."""
    rng = Random(b)
    for trial in range(4):
        own = rng.getrandbits(160)
        lows = [low for low in range(1, NEAR) if trial == 0 or rng.random() < 0.5]
        far = [rng.getrandbits(160) for _ in range(30)]
        reg, table = table_with(own, b, lows, far)
        for y in range(NEAR):
            target = own ^ y
            nearest = brute(reg, table, target)
            for count in (1, 2, 3, 5):
                assert table.closest(target, count) == nearest[:count], (b, trial, y, count)
                assert table.closest(target, count, nearest[0]) == nearest[1:count + 1]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, ID_MAX), st.integers(4, 8), st.integers(155, 159), st.data())
def test_closest_to_a_target_in_a_deep_prefix_group_with_few_entries(own, b, c, data):
    """A target sharing c = 155-159 bits with the owner, any of the 2^(159-c) IDs of that
    prefix group (the walk's own group) and a few others near the owner."""
    top = 1 << (159 - c)  # own ^ (top | r), r < top: the IDs sharing exactly c bits
    group = data.draw(st.sets(st.integers(0, top - 1), min_size=1))
    others = data.draw(st.sets(st.integers(1, NEAR - 1), max_size=8))
    reg, table = table_with(own, b, sorted({top | r for r in group} | others), [])
    target = own ^ top ^ data.draw(st.integers(0, top - 1))
    count = data.draw(st.integers(1, 5))
    assert table.closest(target, count) == brute(reg, table, target)[:count]
