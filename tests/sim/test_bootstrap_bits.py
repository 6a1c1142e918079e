"""Fast bootstrap with b bits a hop (RoutingSettings.bucket_bits, Kademlia section 4.2): every
prefix bucket c split into 2^B sub-buckets (B = b - 1) by the B ID bits after bit c; bucket index
(c << B) | s. Checked against the spec's index formula, computed here independently."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from random import Random

import pytest
from hypothesis import given, settings, strategies as st

from kadtalk.experiments.harness.world import SimWorld
from kadtalk.experiments.lookup import LookupStudy, run_lookup_study
from kadtalk.node.routing.table import RoutingTable, TableSettings
from kadtalk.sim.bootstrap import ConvergedTables

ID_BITS = 160


def bucket_index(own: int, other: int, bits: int) -> int:
    """docs/s14 spec: c the common-prefix length, s the `bits` bits after bit c, zero-padded
    on the right when fewer remain."""
    c = ID_BITS - (own ^ other).bit_length()
    rest = ID_BITS - 1 - c
    low = other & ((1 << rest) - 1)
    s = low >> (rest - bits) if rest >= bits else low << (bits - rest)
    return (c << bits) | s


def fits_window(ids: list[int], bits: int) -> bool:
    """No two IDs share 64 - bits bits below the prefix common to all (random 160-bit IDs: a
    chance of about n**2 / 2**(65 - bits)); the fast bootstrap refuses such sets."""
    ordered = sorted(ids)
    common = ID_BITS - (ordered[0] ^ ordered[-1]).bit_length()
    if ID_BITS - common <= 64:
        return True  # the window reaches the IDs' last bit
    return all(ID_BITS - (a ^ b).bit_length() < common + 64 - bits
               for a, b in zip(ordered, ordered[1:]))


def id_sets(max_size: int = 50):
    """Random 160-bit IDs, small integers (the zero-padded sub-buckets at the last bits),
    clusters (a long common prefix)."""
    full = st.integers(0, (1 << ID_BITS) - 1)
    small = st.integers(0, 1 << 10)
    clustered = st.integers(0, (1 << 30) - 1).map(lambda low: (0xABC << 148) | low)
    return st.one_of(
        st.lists(full, min_size=1, max_size=max_size, unique=True),
        st.lists(small, min_size=1, max_size=max_size, unique=True),
        st.lists(clustered, min_size=1, max_size=max_size, unique=True),
    )


def by_index(ids: list[int], own: int, bits: int) -> dict[int, list[int]]:
    """Handles of every other node, by their bucket index in `own`'s table, in ID order."""
    members: dict[int, list[int]] = {}
    for handle in sorted(range(len(ids)), key=ids.__getitem__):
        if ids[handle] != own:
            members.setdefault(bucket_index(own, ids[handle], bits), []).append(handle)
    return members


@settings(max_examples=120, deadline=None)
@given(ids=id_sets(), k=st.sampled_from([1, 2, 3, 5, 20]), bits=st.integers(0, 3),
       spread=st.integers(0, 3), seed=st.integers(0, 2**32 - 1), aged=st.booleans(),
       rule=st.sampled_from(["join", "uptime"]))
def test_every_bucket_index_follows_the_join_rule_on_its_range(ids, k, bits, spread, seed, aged,
                                                                rule):
    """Per index: entries in its range, min(k, range) of them, no repeats, oldest first; a
    range of at most k held completely; a larger one (join rule) k - spread consecutive IDs of
    the range and `spread` others, (uptime rule) the k oldest. Rows equal the flat tables."""
    if not fits_window(ids, bits):
        with pytest.raises(ValueError):
            ConvergedTables(ids, k, bucket_bits=bits + 1)
        return
    spread = min(spread, k)
    age = list(range(len(ids)))
    if aged:
        Random(seed).shuffle(age)
    tables = ConvergedTables(ids, k, age_rank=age, rule=rule, spread=spread, seed=seed,
                             bucket_bits=bits + 1)
    for index, entries, sizes in tables.tables():
        members = by_index(ids, ids[index], bits)
        assert not sizes or sizes[-1] > 0
        assert len(sizes) == (max(members) + 1 if members else 0)
        start = 0
        for bucket, size in enumerate(sizes):
            chosen = entries[start:start + size].tolist()
            start += size
            in_range = members.get(bucket, [])
            assert size == min(len(in_range), k)
            assert len(set(chosen)) == size and set(chosen) <= set(in_range)
            assert [age[h] for h in chosen] == sorted(age[h] for h in chosen)  # oldest first
            if len(in_range) > k:
                if rule == "uptime":
                    assert set(chosen) == set(sorted(in_range, key=age.__getitem__)[:k])
                elif k > spread:  # a run of k - spread neighbours in ID order
                    places = sorted(in_range.index(h) for h in chosen)
                    assert any(places[i + k - spread - 1] - places[i] == k - spread - 1
                               for i in range(spread + 1))
        assert start == len(entries)
    if rule == "join":
        rows = ConvergedTables(ids, k, age_rank=age, spread=spread, seed=seed, store="rows",
                               bucket_bits=bits + 1)
        for index in range(len(ids)):
            assert rows.row(index) == (tables.entries(index), tables.sizes(index))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_rows_match_the_flat_tables_of_5000_nodes(bits):
    rng = Random(12 + bits)
    ids = [rng.getrandbits(160) for _ in range(5000)]
    flat = ConvergedTables(ids, 20, seed=3, bucket_bits=bits + 1)
    rows = ConvergedTables(ids, 20, seed=3, store="rows", bucket_bits=bits + 1)
    assert all(rows.row(i) == (flat.entries(i), flat.sizes(i)) for i in range(5000))
    # the sub-buckets hold more of the network: about 2^bits times the full buckets
    assert flat.entries_total > (1 << bits) * 0.6 * ConvergedTables(ids, 20, seed=3).entries_total


def tables_digest(tables: ConvergedTables, n: int, rows: bool = False) -> str:
    h = hashlib.sha256()
    for i in range(n):
        entries, sizes = tables.row(i) if rows else (tables.entries(i), tables.sizes(i))
        h.update(entries.tobytes() + b"|" + bytes(sizes) + b";")
    return h.hexdigest()[:16]


@pytest.mark.parametrize("n, k, seed, aged, expected", [
    (3000, 20, 1, False, "4dbcd3ee4a858818"),
    (2000, 8, 7, True, "c4a7e1318d5b6f13"),
])
def test_one_bit_a_hop_builds_the_tables_of_before(n, k, seed, aged, expected):
    """bucket_bits=1 (the default) gives the tables of 76e3208, before sub-buckets, byte for byte
    (digests computed there), flat and rows."""
    rng = Random(n + seed)
    ids = [rng.getrandbits(160) for _ in range(n)]
    age = None
    if aged:
        age = list(range(n))
        rng.shuffle(age)
    for store in ("flat", "rows"):
        tables = ConvergedTables(ids, k, age_rank=age, spread=3, seed=seed, store=store)
        assert tables_digest(tables, n, rows=store == "rows") == expected
    assert tables_digest(ConvergedTables(ids, k, age_rank=age, spread=3, seed=seed,
                                         bucket_bits=2), n) != expected


def test_rejects_bad_bucket_bits_and_ids_too_close_for_them():
    with pytest.raises(ValueError):
        ConvergedTables([1, 2], 20, bucket_bits=0)
    with pytest.raises(ValueError):
        ConvergedTables([1, 2], 20, bucket_bits=9)
    # not an integer: RoutingTable's ValueError, not a TypeError deep in the build (2.0, "2")
    for bad in (2.0, 1.0, 1.5, "2", None):
        with pytest.raises(ValueError, match=f"bucket_bits must be an integer between 1 and 8 "
                                             f"\\(1: the paper's table\\), not {re.escape(repr(bad))}"):
            ConvergedTables([1, 2, 3], 20, bucket_bits=bad)
    # a bool is an int, b = 1, as RoutingSettings and RoutingTable take it (test_bucket_bits)
    rng = Random(5)
    ids = [rng.getrandbits(160) for _ in range(50)]
    one, true = ConvergedTables(ids, 3), ConvergedTables(ids, 3, bucket_bits=True)
    assert [(true.entries(i), true.sizes(i)) for i in range(50)] == \
        [(one.entries(i), one.sizes(i)) for i in range(50)]
    # the last two share 61 bits below the common prefix (none): their bucket's sub-buckets
    # need the 3 bits after bit 61, of which the 64-bit window (more bits below it) holds 2
    ids = [0, 1 << 159, (1 << 159) | (1 << 98)]
    assert len(ConvergedTables(ids, 20, bucket_bits=3).sizes(1)) == (61 << 2) + 1
    with pytest.raises(ValueError, match="bucket_bits"):
        ConvergedTables(ids, 20, bucket_bits=4)


# -- the tables RoutingTable itself keeps (needs RoutingSettings.bucket_bits) ---------------------


def observed(ids: list[int], k: int, bits: int) -> list[tuple[list[int], bytes]]:
    """What RoutingTable keeps with bucket_bits = bits + 1 when every node hears from every
    other in join order (the uptime rule alone)."""
    result = []
    for own in ids:
        table = RoutingTable(own, ids, TableSettings(k=k, replacement_cache=0,
                                                     bucket_bits=bits + 1))
        for handle in range(len(ids)):
            table.observe(handle, 0.0)
        result.append((table._entries.tolist(), bytes(table._sizes).rstrip(b"\0")))
    return result


@settings(max_examples=40, deadline=None)
@given(ids=id_sets(40), k=st.sampled_from([1, 2, 3, 5, 20]), bits=st.integers(0, 3))
def test_uptime_rule_equals_the_table_hearing_everyone_in_join_order(ids, k, bits):
    if not fits_window(ids, bits):
        return
    tables = ConvergedTables(ids, k, rule="uptime", bucket_bits=bits + 1)
    for index, (entries, sizes) in enumerate(observed(ids, k, bits)):
        assert (tables.entries(index).tolist(), bytes(tables.sizes(index))) == (entries, sizes)


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_loaded_table_answers_like_a_table_built_by_observing(bits):
    rng = Random(9 + bits)
    ids = [rng.getrandbits(160) for _ in range(600)]
    tables = ConvergedTables(ids, 8, rule="uptime", bucket_bits=bits + 1)
    settings = TableSettings(k=8, bucket_bits=bits + 1)
    for own in (17, 301):
        loaded = RoutingTable(ids[own], ids, settings)
        loaded.load(tables.entries(own), tables.sizes(own), 0.0)
        built = RoutingTable(ids[own], ids, settings)
        for handle in range(600):
            built.observe(handle, 0.0)
        assert loaded._entries == built._entries
        for _ in range(50):
            target = rng.getrandbits(160)
            assert loaded.closest(target, 8) == built.closest(target, 8)
        assert all(loaded.bucket(i) == built.bucket(i) for i in range(built.bucket_count()))


# -- the studies load them ------------------------------------------------------------------------


def test_a_study_loads_the_tables_of_its_settings_bucket_bits():
    """`--set bucket_bits=3` reaches the fast bootstrap (harness.world.bucket_bits)."""
    study = LookupStudy(nodes=400, lookups=0, seed=2, bootstrap="fast",
                        routing=(("bucket_bits", 3),))
    world = SimWorld(study)
    world.settings = replace(world.settings, **dict(study.routing))  # as run_lookup_study does
    world.converge()
    expected = ConvergedTables(world.ids, study.k, spread=study.alpha,
                               seed=world.plan.tables_seed, bucket_bits=3)
    for addr in (0, 7, 399):
        table = world.driver.nodes[addr].routing.table
        assert table._entries == expected.entries(addr)
        assert bytes(table._sizes).rstrip(b"\0") == bytes(expected.sizes(addr))
        assert table.bucket_index(world.ids[table._entries[0]]) == next(
            i for i, size in enumerate(expected.sizes(addr)) if size)


def test_lazily_built_nodes_give_the_eager_study_with_sub_buckets(monkeypatch):
    """sim/lazy.py's rows (store="rows") at b = 3: the eager study's lookups exactly."""
    study = LookupStudy(nodes=3000, lookups=150, seed=3, bootstrap="fast",
                        routing=(("bucket_bits", 3),))
    monkeypatch.setattr(SimWorld, "lazy_above", 0)
    lazy = run_lookup_study(study)
    monkeypatch.setattr(SimWorld, "lazy_above", 10**9)
    eager = run_lookup_study(study)
    assert lazy.rows == eager.rows and len(lazy.rows) == 150
    assert lazy.summary["nodes_built"] < eager.summary["nodes_built"] == 3000
