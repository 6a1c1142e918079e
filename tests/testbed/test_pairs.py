"""A few representative cells of the pairs table (kadtalk.experiments.testbed.pairs; the whole
table is the study command, docs/testbed.md "Who can call whom"): the same network layout and
the same per-cell call, on four host kinds instead of seven, so CI stays short."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from kadtalk.experiments.testbed import pairs

pytestmark = pytest.mark.timeout(400)

KINDS = ("public-v4", "symmetric", "v6-only", "dual-stack")
CELLS = [
    ("v6-only", "dual-stack"),  # IPv6 only, both ends
    ("symmetric", "symmetric"),  # only a relay joins them
    ("public-v4", "symmetric"),  # peer-reflexive: the callee's PUNCH shows its port
    ("public-v4", "v6-only"),  # no common family: only a dual-stack relay joins them
    ("v6-only", "symmetric"),  # ... the other way, into a symmetric NAT
]


def test_representative_cells_of_the_pairs_table(make_testbed):
    tb = make_testbed(build=lambda tb: [pairs.add_host(tb, name, kind)
                                        for name, kind in pairs.hosts_of(KINDS)])
    root = Path(tempfile.mkdtemp(prefix="ktbp"))
    try:
        result = asyncio.run(asyncio.wait_for(
            pairs.study(tb, root, KINDS, CELLS, attempts=2, log=lambda m: None), 360))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cells = {(c["caller"], c["callee"]): c for c in result["cells"]}
    for key in CELLS[:3]:
        cell = cells[key]
        assert cell["connected"] and cell["audio"], json.dumps(cell)  # audio both ways: FFT peaks
    assert not cells[("v6-only", "dual-stack")]["relayed"]
    assert cells[("symmetric", "symmetric")]["relayed"]
    for key in CELLS[3:]:  # no common family: through a dual-stack relay (§20-21, "Across
        apart = cells[key]  # address families"), with audio both ways
        assert apart["expected_no_path"] and "IPv4 and IPv6" in apart["expected_no_path"]
        assert apart["connected"] and apart["relayed"] and apart["audio"], json.dumps(apart)
    table = pairs.markdown(result["cells"], KINDS)
    assert "yes, relayed" in table and "| v6-only |" in table


def test_every_host_starts_after_the_hosts_it_bootstraps_through():
    """No testbed needed: the start order. A host started with a host it bootstraps through can
    send its join before that one listens (ds2 and pub1 did, session 11)."""
    kinds = pairs.KINDS + pairs.EXTRA_KINDS
    groups = pairs.start_groups(kinds)
    place = {host: n for n, group in enumerate(groups) for host in group}
    assert sorted(place) == sorted(h for h, _ in pairs.hosts_of(kinds))  # each host once
    assert groups[0] == ["ds1"] and set(groups[-1]) == {h for h, _ in pairs.hosts_of(kinds)[4:]}
    for host, kind in pairs.hosts_of(kinds):
        for seed, family in pairs.bootstrap_seeds(host, kind):
            assert family in pairs.FAMILIES[kind]
            assert seed == host or place[seed] < place[host], (host, seed)


def test_a_start_order_that_cannot_be_met_is_an_error_not_a_hang(monkeypatch):
    """Review R1 (session 11): an infrastructure host whose seeds never all come up left
    `start_groups` looping on empty groups. An IPv6-only host bootstraps through ds1 and ds2;
    with no ds2 among the infrastructure it can never start, and the error names it."""
    monkeypatch.setattr(pairs, "INFRA", (("ds1", "dual-stack"), ("vx", "v6-only")))
    with pytest.raises(ValueError, match=r"no start order: \['vx'\]"):
        pairs.start_groups(())
