"""RoutingSettings.bucket_bits (Kademlia section 4.2, b bits a hop): every prefix bucket split
into 2^(b-1) buckets by the b-1 ID bits after the first bit differing from ours, each of at
most k entries, kept by the same rules as the paper's table (which b = 1 is, unchanged)."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.table import RoutingTable, TableSettings, bucket_of

from .test_table import ID_MAX, Reg, in_bucket

BITS = st.integers(1, 4)
# most contacts in the first few prefix groups (where a real table is full), some deep ones
depth = st.one_of(st.integers(0, 4), st.integers(0, 12), st.integers(0, 159))


def spec_index(own: int, node_id: int, b: int) -> int:
    """The spec's formula, from the IDs as bit strings."""
    mine, theirs = f"{own:0160b}", f"{node_id:0160b}"
    c = next(i for i in range(160) if mine[i] != theirs[i])
    s = (theirs[c + 1:c + b] + "0" * b)[:b - 1]
    return (c << (b - 1)) | (int(s, 2) if s else 0)


@given(st.integers(0, ID_MAX), st.integers(0, ID_MAX), st.integers(1, 8),
       st.one_of(depth, st.integers(150, 159)))  # deep: fewer than b - 1 bits after bit c
def test_the_index_is_the_spec_formula(own, low, b, c):
    node_id = in_bucket(own, c, low)
    assert bucket_of(own, node_id, b - 1) == spec_index(own, node_id, b)
    if b == 1:
        assert bucket_of(own, node_id) == c
    assert bucket_of(own, own, b - 1) == 160 << (b - 1)


def test_the_setting_is_checked():
    for bad in (0, 9, -1):
        with pytest.raises(ValueError, match="bucket_bits"):
            RoutingSettings(bucket_bits=bad)
        with pytest.raises(ValueError, match="bucket_bits"):
            RoutingTable(0, [], TableSettings(bucket_bits=bad))
    assert RoutingSettings(bucket_bits=8).bucket_bits == 8


@pytest.mark.parametrize("bad", [2.0, 1.0, "2", None, 1.5])
def test_a_bucket_bits_not_an_integer_is_refused_at_once(bad):
    """Not a TypeError deep in `bucket_of` at the first contact (`--set bucket_bits=2.0`)."""
    with pytest.raises(ValueError, match="bucket_bits"):
        RoutingSettings(bucket_bits=bad)
    with pytest.raises(ValueError, match="bucket_bits"):
        RoutingTable(0, [], TableSettings(bucket_bits=bad))
    assert RoutingSettings(bucket_bits=True).bucket_bits == 1  # bool is an int: b = 1


class Model:
    """The paper's table rules (uptime, replacement cache, failures), bucket by `index`."""

    def __init__(self, index, k: int, cache: int, max_failures: int):
        self.index, self.k, self.cache_limit, self.max_failures = index, k, cache, max_failures
        self.buckets: dict[int, list[int]] = {}
        self.cache: dict[int, list[int]] = {}
        self.failures: dict[int, int] = {}

    def observe(self, h: int, answered: bool) -> None:
        i = self.index(h)
        bucket, cache = self.buckets.setdefault(i, []), self.cache.setdefault(i, [])
        if h in bucket:
            if answered:
                self.failures.pop(h, None)
        elif len(bucket) < self.k:
            bucket.append(h)
            if h in cache:
                cache.remove(h)
        elif self.cache_limit:
            if h in cache:
                cache.remove(h)
            cache.append(h)
            del cache[:-self.cache_limit]

    def failed(self, h: int) -> None:
        i = self.index(h)
        bucket, cache = self.buckets.setdefault(i, []), self.cache.setdefault(i, [])
        if h not in bucket:
            if h in cache:
                cache.remove(h)
            return
        count = self.failures.get(h, 0) + 1
        if cache:
            bucket.remove(h)
            bucket.append(cache.pop())
            self.failures.pop(h, None)
        elif count >= self.max_failures:
            bucket.remove(h)
            self.failures.pop(h, None)
        else:
            self.failures[h] = count


@st.composite
def tables(draw, b=None, k=None):
    """A table with bucket_bits `b` (drawn 1..4) fed random observations, and the IDs met."""
    b = draw(BITS) if b is None else b
    k = draw(st.sampled_from([1, 2, 3, 20])) if k is None else k
    own = draw(st.integers(0, ID_MAX))
    reg = Reg()
    table = RoutingTable(own, reg.ids, TableSettings(k, draw(st.integers(0, 3)), 2, b))
    rng = Random(draw(st.integers(0, 2**32)))
    seen = {own}
    for c in draw(st.lists(depth, max_size=150)):
        node_id = in_bucket(own, c, rng.getrandbits(160))
        if node_id not in seen:
            seen.add(node_id)
            table.observe(reg.add(node_id), 0.0)
    return reg, table, b


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_table_keeps_the_papers_rules_per_index(data):
    """Observations, answers and failures leave exactly the entries and caches of the paper's
    rules applied per `bucket_of` index (for b = 1: the paper's table, as before)."""
    b, k, cache, max_failures = data.draw(BITS), data.draw(st.integers(1, 4)), 2, 2
    own = data.draw(st.integers(0, ID_MAX))
    reg = Reg()
    table = RoutingTable(own, reg.ids, TableSettings(k, cache, max_failures, b))
    model = Model(lambda h: spec_index(own, reg.ids[h], b), k, cache, max_failures)
    rng = Random(data.draw(st.integers(0, 2**32)))
    handles: list[int] = []
    steps = data.draw(st.lists(st.tuples(st.sampled_from(["new", "again", "answer", "fail"]),
                                         st.integers(0, 3), st.integers(0, 10**6)), max_size=120))
    for op, c, pick in steps:
        if op == "new" or not handles:
            h = reg.add(in_bucket(own, c, rng.getrandbits(160)))
            handles.append(h)
            table.observe(h, 0.0)
            model.observe(h, False)
        else:
            h = handles[pick % len(handles)]
            if op == "fail":
                table.failed(h)
                model.failed(h)
            else:
                table.observe(h, 1.0, answered=op == "answer")
                model.observe(h, op == "answer")
    for index in range(table.bucket_count()):
        assert table.bucket(index) == model.buckets.get(index, [])
        assert table.replacements(index) == model.cache.get(index, [])
    assert len(table) == sum(len(v) for v in model.buckets.values())
    assert table.bucket_count() % (1 << (b - 1)) == 0  # whole prefix groups
    assert all(table.failures(h) == model.failures.get(h, 0) for h in handles)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_entries_sit_in_their_index_and_no_bucket_exceeds_k(data):
    reg, table, b = data.draw(tables())
    for index in range(table.bucket_count()):
        bucket = table.bucket(index)
        assert len(bucket) <= table.settings.k
        for h in bucket:
            index_of = table.bucket_index(reg.ids[h])
            assert index_of == index == spec_index(table.own_id, reg.ids[h], b)
            assert table.find(reg.ids[h]) == h
            assert table.known(h) and not table.admits(h)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_closest_is_the_brute_force_sort_with_any_requester_excluded(data):
    reg, table, _ = data.draw(tables())
    own = table.own_id
    target = data.draw(st.one_of(
        st.integers(0, ID_MAX), st.just(own),
        st.builds(lambda c, low: in_bucket(own, c, low), depth, st.integers(0, ID_MAX))))
    count = data.draw(st.sampled_from([0, 1, 2, 5, 19, 20, 21, 40, 200]))
    entries = [h for h in table.handles() if h in table]
    brute = sorted(entries, key=lambda h: reg.ids[h] ^ target)
    assert table.closest(target, count) == brute[:count]
    unknown = reg.add(data.draw(st.integers(0, ID_MAX).filter(lambda i: i not in reg.ids)))
    excluded = data.draw(st.sampled_from(sorted(set(table.handles())) + [unknown]))
    assert table.closest(target, count, excluded) == [h for h in brute if h != excluded][:count]


@pytest.mark.parametrize("seed", range(4))
def test_closest_past_the_targets_group_orders_the_deeper_groups(seed):
    """Small buckets (k = 1-3) over a few prefix groups and a target in one of the first: the
    `count` nearest reach into the deeper groups, taken group by group (`_deeper`)."""
    rng = Random(seed)
    for _ in range(150):
        b, k, own = rng.randint(2, 4), rng.choice([1, 2, 3]), rng.getrandbits(160)
        reg = Reg()
        table = RoutingTable(own, reg.ids, TableSettings(k, 0, 2, b))
        for _ in range(100):
            table.observe(reg.add(in_bucket(own, rng.randint(0, 6), rng.getrandbits(160))), 0.0)
        target = in_bucket(own, rng.randint(0, 3), rng.getrandbits(160))
        brute = sorted((h for h in table.handles()), key=lambda h: reg.ids[h] ^ target)
        excluded = rng.choice(brute)
        for count in (3, 5, 8):
            assert table.closest(target, count) == brute[:count]
            others = [h for h in brute if h != excluded]
            assert table.closest(target, count, excluded) == others[:count]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, ID_MAX), BITS, st.integers(0, 159), st.integers(0, 255),
       st.integers(0, 2**32))
def test_random_id_in_bucket_maps_back_and_range_bits_bound_the_range(own, b, c, s, seed):
    extra = b - 1
    s &= (1 << extra) - 1
    if 159 - c < extra:
        s &= ~((1 << (extra - (159 - c))) - 1)  # too deep for all the bits: zero-padded
    table = RoutingTable(own, [], TableSettings(bucket_bits=b))
    index = (c << extra) | s
    rng = Random(seed)
    one, two = table.random_id_in_bucket(index, rng), table.random_id_in_bucket(index, rng)
    assert bucket_of(own, one, extra) == bucket_of(own, two, extra) == index
    bits = table.range_bits(index)
    assert one ^ two < 1 << bits  # the range: the IDs differing in the last `bits` bits
    if bits < 159 - c:
        assert bucket_of(own, one ^ (1 << bits), extra) != index  # and no more


@pytest.mark.parametrize("b", range(2, 9))
@pytest.mark.parametrize("load", [False, True])
def test_a_bucket_no_id_maps_to_is_never_idle(b, load):
    """Contacts at our ID ^ 1 and ^ 2^159 (anyone may claim an ID): the last prefix groups hold
    buckets of no ID (fewer than b - 1 bits after bit c, a 1 in s's zero padding). A refresh of
    every idle bucket leaves none idle, and the next refresh is an interval on, not in the
    past; the join's refresh never names them either."""
    extra = b - 1
    own = Random(b).getrandbits(160)
    ids = [own ^ 1, own ^ (1 << 159)]
    table = RoutingTable(own, ids, TableSettings(bucket_bits=b))
    for h in range(2):
        table.observe(h, 0.0)
    if load:  # the fast bootstrap's way in, trailing empty buckets left out
        sizes = bytearray(len(table.bucket(i)) for i in range(table.bucket_count()))
        fresh = RoutingTable(own, ids, TableSettings(bucket_bits=b))
        fresh.load(table._entries, sizes.rstrip(b"\0"), 0.0)
        table = fresh
    assert table.bucket_count() == 160 << extra
    reachable = set()  # every index an ID of the last groups maps to, by brute force
    for c in range(160 - extra, 160):
        for low in range(1 << (159 - c)):
            reachable.add(bucket_of(own, (own >> (159 - c) ^ 1) << (159 - c) | low, extra))
    empty = [i for i in range((160 - extra) << extra, 160 << extra) if i not in reachable]
    assert len(empty) == sum((1 << extra) - (1 << (159 - c)) for c in range(160 - extra, 160))
    assert [i for i in range(table.bucket_count()) if table.empty_range(i)] == empty
    rng = Random(1)
    for now in (3600.0, 7200.0, 10800.0):
        idle = table.idle_buckets(now, 3600.0)
        assert idle == [i for i in range(table.bucket_count()) if i not in empty]
        for index in idle:
            table.touch(table.random_id_in_bucket(index, rng), now)  # what a refresh does
        assert table.idle_buckets(now + 3599.0, 3600.0) == []
        assert table.next_refresh(3600.0) == now + 3600.0
    assert table.farther_buckets(own ^ 1) == [i for i in range(159 << extra) if i not in empty]


def test_random_id_in_bucket_with_one_bit_is_the_papers_draw():
    table = RoutingTable(0x5A << 152, [], TableSettings())
    rng, again = Random(3), Random(3)
    for index in (0, 1, 7, 100, 159):
        assert table.random_id_in_bucket(index, rng) == (
            table.own_id ^ (1 << (159 - index)) ^ again.getrandbits(159 - index))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, ID_MAX), BITS, st.integers(0, 12), st.integers(0, ID_MAX),
       st.integers(0, 2**32))
def test_the_join_refreshes_the_buckets_farther_than_the_nearest_neighbour(own, b, c, low, seed):
    extra = b - 1
    table = RoutingTable(own, [], TableSettings(bucket_bits=b))
    nearest = in_bucket(own, c, low)
    farther = table.farther_buckets(nearest)
    if b == 1:
        assert farther == range(c)
    rng = Random(seed)
    for index in range((c + 1) << extra):
        probe = table.random_id_in_bucket(index, rng)
        if index == bucket_of(own, nearest, extra):
            assert index not in farther
        else:  # a bucket's whole range is farther from us than `nearest`, or nearer
            assert (index in farther) == ((probe ^ own) > (nearest ^ own))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_load_takes_the_layout_by_index(data):
    reg, table, b = data.draw(tables())
    loaded = RoutingTable(table.own_id, reg.ids, TableSettings(table.settings.k, 0, 2, b))
    sizes = bytearray(len(table.bucket(i)) for i in range(table.bucket_count()))
    while sizes and not sizes[-1]:
        del sizes[-1]  # trailing empty buckets left out, as the fast bootstrap does
    from array import array
    loaded.load(array("i", table._entries), sizes, 5.0)
    assert loaded.bucket_count() % (1 << (b - 1)) == 0
    for index in range(table.bucket_count()):
        assert loaded.bucket(index) == table.bucket(index)
    target = data.draw(st.integers(0, ID_MAX))
    assert loaded.closest(target, 20) == table.closest(target, 20)
    assert loaded.next_refresh(10.0) == (15.0 if len(sizes) else None)


# -- the routing layer: the join's refreshes, the subnet cap ---------------------------------------


def test_the_join_refreshes_every_sub_bucket_farther_than_the_nearest_neighbour():
    """A joins through B, whose answer names a contact 9 bits from A (test_maintenance's
    world): with b = 2 the join refreshes both halves of buckets 0..8 and the half of prefix
    group 9 the neighbour is not in, each lookup's target in its sub-bucket's range."""
    from .test_maintenance import A_ID, joined_far_neighbour

    a, buckets = joined_far_neighbour(RoutingSettings(bucket_bits=2))
    table = a.routing.table
    neighbour = A_ID ^ (1 << 150)
    assert buckets == sorted(table.farther_buckets(neighbour))
    assert buckets == list(range(18)) + [bucket_of(A_ID, neighbour, 1) ^ 1]
    _, paper = joined_far_neighbour(RoutingSettings())
    assert paper == list(range(9))


def test_the_subnet_cap_holds_per_sub_bucket():
    from kadtalk.node.routing.contacts import ContactRegistry
    from kadtalk.node.stack import Node

    own = 1 << 159
    node = Node(own, ContactRegistry(), Random(1), RoutingSettings(max_per_subnet=1, bucket_bits=2),
                0.0)
    for i, half in enumerate((0, 0, 1, 1)):  # prefix group 0: two in each half, one /24
        node.routing.table.observe(node.routing.registry.intern(
            in_bucket(own, 0, half << 158 | i), ("192.0.2.%d" % (i + 1), 5004)), 0.0)
    table = node.routing.table
    assert [len(table.bucket(i)) for i in (0, 1)] == [2, 2]
    assert node.routing.apply_subnet_limit() == 2  # the younger of each sub-bucket
    assert [len(table.bucket(i)) for i in (0, 1)] == [1, 1]
    assert not node.add_contact(in_bucket(own, 0, 7), ("192.0.2.9", 5004), 1.0)
    assert node.add_contact(in_bucket(own, 0, 8), ("198.51.100.1", 5004), 1.0)  # another /24


# the digest of `seeded_operations()` on 76e3208's table (before bucket_bits), computed there
PAPERS_TABLE = "cd3d7cc45b79105e544af3c9e70efffafcce64bf2a475fa24d8ccfa4e2cb5af9"


def seeded_operations() -> str:
    """3,000 seeded observations, answers, failures, removals, closest answers and refresh
    draws at the default settings: a digest of every answer and of the final table."""
    import hashlib

    rng = Random(14)
    own = rng.getrandbits(160)
    ids: list[int] = []
    table = RoutingTable(own, ids, TableSettings(k=4, replacement_cache=3, max_failures=2))
    out: list = []
    for step in range(3000):
        op = rng.random()
        if op < 0.5 or not ids:
            c = min(int(rng.expovariate(0.5)), 159)
            ids.append(own ^ (1 << (159 - c)) ^ (rng.getrandbits(160) & ((1 << (159 - c)) - 1)))
            out.append(table.observe(len(ids) - 1, step, answered=rng.random() < 0.5))
        elif op < 0.7:
            table.failed(rng.randrange(len(ids)))
        elif op < 0.8:
            out.append(table.remove(rng.randrange(len(ids))))
        elif op < 0.95:
            target = rng.getrandbits(160)
            out.append(table.closest(target, rng.choice([1, 5, 20]), rng.randrange(len(ids))))
        else:
            index = rng.randrange(max(1, table.bucket_count()))
            out.append(table.random_id_in_bucket(index, rng))
            table.touch(out[-1], step)
            out.append(table.idle_buckets(step, 100.0))
    out.append([table.bucket(i) for i in range(table.bucket_count())])
    out.append([table.replacements(i) for i in range(table.bucket_count())])
    out.append([table.failures(h) for h in range(len(ids))])
    return hashlib.sha256(repr(out).encode()).hexdigest()


def test_the_default_table_answers_as_before_bucket_bits():
    assert seeded_operations() == PAPERS_TABLE


@pytest.mark.parametrize("b", range(1, 9))
def test_range_bits_is_exactly_the_buckets_range_for_every_index(b):
    """Every index, the deepest too: the IDs within `range_bits` of a random ID of the bucket
    are all in it, and flipping the next bit leaves it (for every bucket some ID maps to)."""
    extra = b - 1
    own = Random(b).getrandbits(160)
    table = RoutingTable(own, [], TableSettings(bucket_bits=b))
    rng = Random(b + 100)
    for index in range(160 << extra):
        if table.empty_range(index):
            continue
        bits = table.range_bits(index)
        node_id = table.random_id_in_bucket(index, rng)
        for low in (0, (1 << bits) - 1, rng.getrandbits(bits) if bits else 0):
            assert bucket_of(own, node_id ^ low, extra) == index
        assert bucket_of(own, node_id ^ (1 << bits), extra) != index  # and no more


@pytest.mark.parametrize("b", [2, 3])
def test_a_refresh_lookup_fills_exactly_its_sub_buckets_range(b):
    """refresh_fill's lookups after a join (test_maintenance's world) aim at the sub-bucket's
    range: every ID within the lookup's fill range of its target is in the refreshed
    sub-bucket, and the next bit out is not (not the b = 1 range of the index read as c)."""
    from .test_maintenance import joined_far_neighbour

    a, buckets = joined_far_neighbour(RoutingSettings(bucket_bits=b))
    table, extra = a.routing.table, b - 1
    filling = [lookup for lookup in a.routing._lookups.values() if lookup._fill is not None]
    assert sorted(table.bucket_index(lookup.target) for lookup in filling) == buckets
    assert len(buckets) > 9 << extra  # every sub-bucket of groups 0..8, and some of group 9
    rng = Random(b)
    for lookup in filling:
        index, bits = table.bucket_index(lookup.target), lookup._fill[0]
        for low in (0, (1 << bits) - 1, rng.getrandbits(bits)):
            assert bucket_of(table.own_id, lookup.target ^ low, extra) == index
        assert bucket_of(table.own_id, lookup.target ^ (1 << bits), extra) != index
