"""The routing table with a plain list of IDs as the registry (handle = index in the list)."""

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kadtalk.node.routing.table import RoutingTable, TableSettings

ID_MAX = (1 << 160) - 1
OWN = 0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A


def in_bucket(own: int, c: int, low: int = 0) -> int:
    """An ID sharing exactly `c` leading bits with `own` (low bits from `low`)."""
    bits = 159 - c
    return own ^ (1 << bits) ^ (low & ((1 << bits) - 1))


class Reg:
    """A list of IDs; `add` returns the handle."""

    def __init__(self):
        self.ids: list[int] = []

    def add(self, node_id: int) -> int:
        self.ids.append(node_id)
        return len(self.ids) - 1


def make(k=4, cache=3, max_failures=3, own=OWN):
    reg = Reg()
    return reg, RoutingTable(own, reg.ids, TableSettings(k, cache, max_failures))


def test_bucket_index():
    _, table = make()
    assert table.bucket_index(OWN) == 160
    assert table.bucket_index(OWN ^ (1 << 159)) == 0
    assert table.bucket_index(OWN ^ 1) == 159
    for c in (0, 1, 7, 80, 158, 159):
        assert table.bucket_index(in_bucket(OWN, c, 0x1234567)) == c


def test_settings_validation():
    with pytest.raises(ValueError):
        RoutingTable(0, [], TableSettings(k=256))
    with pytest.raises(ValueError):
        RoutingTable(0, [], TableSettings(k=-1))


def test_observe_fills_bucket_oldest_first_then_caches_newcomers():
    reg, table = make(k=4, cache=3)
    first = [reg.add(in_bucket(OWN, 2, i)) for i in range(4)]
    for h in first:
        assert table.observe(h, 0.0) is True
    assert table.bucket(2) == first
    assert len(table) == 4
    late = [reg.add(in_bucket(OWN, 2, 100 + i)) for i in range(5)]
    for h in late:
        assert table.observe(h, 1.0) is False
    # no displacement of the long-lived entries
    assert table.bucket(2) == first
    # bounded cache, most recent last
    assert table.replacements(2) == late[-3:]
    # re-observing a cached newcomer moves it to the end
    table.observe(late[2], 2.0)
    assert table.replacements(2) == [late[3], late[4], late[2]]
    # re-observing an entry does not reorder the bucket
    table.observe(first[0], 3.0)
    assert table.bucket(2) == first
    # other buckets are unaffected
    assert table.bucket(0) == table.bucket(1) == table.bucket(3) == []
    assert table.bucket(100) == []


def test_zero_replacement_cache_keeps_nothing():
    reg, table = make(k=1, cache=0)
    a, b = reg.add(in_bucket(OWN, 0, 1)), reg.add(in_bucket(OWN, 0, 2))
    table.observe(a, 0)
    assert table.observe(b, 0) is False
    assert table.replacements(0) == []
    assert set(table.handles()) == {a}


def test_failed_replaces_with_most_recent_replacement_at_end_of_bucket():
    reg, table = make(k=3, cache=3)
    entries = [reg.add(in_bucket(OWN, 5, i)) for i in range(3)]
    cached = [reg.add(in_bucket(OWN, 5, 10 + i)) for i in range(2)]
    for h in entries + cached:
        table.observe(h, 0)
    other = reg.add(in_bucket(OWN, 1, 3))
    table.observe(other, 0)
    table.failed(entries[0])
    assert table.bucket(5) == [entries[1], entries[2], cached[1]]
    assert table.replacements(5) == [cached[0]]
    assert entries[0] not in table
    assert table.failures(entries[0]) == 0
    table.failed(entries[2])
    assert table.bucket(5) == [entries[1], cached[1], cached[0]]
    assert table.replacements(5) == []
    assert table.bucket(1) == [other]
    assert len(table) == 4


def test_failed_without_replacements_drops_only_after_max_failures():
    reg, table = make(k=3, cache=3, max_failures=3)
    entries = [reg.add(in_bucket(OWN, 0, i)) for i in range(2)]
    for h in entries:
        table.observe(h, 0)
    table.failed(entries[0])
    table.failed(entries[0])
    assert table.failures(entries[0]) == 2
    assert table.bucket(0) == entries
    table.failed(entries[0])
    assert table.bucket(0) == [entries[1]]
    assert table.failures(entries[0]) == 0
    assert len(table) == 1


def test_only_an_answer_clears_the_failure_count():
    reg, table = make(k=3, cache=3, max_failures=3)
    h = reg.add(in_bucket(OWN, 0, 1))
    table.observe(h, 0)
    table.failed(h)
    table.failed(h)
    assert table.failures(h) == 2
    assert table.observe(h, 1) is True  # a request (forgeable) keeps the count: review S3
    assert table.failures(h) == 2
    assert table.observe(h, 1, answered=True) is True
    assert table.failures(h) == 0
    table.failed(h)
    table.failed(h)
    assert h in table  # the count restarted


def test_failed_on_cached_handle_removes_it_from_the_cache():
    reg, table = make(k=1, cache=3)
    a, b, c = (reg.add(in_bucket(OWN, 0, i)) for i in range(3))
    for h in (a, b, c):
        table.observe(h, 0)
    table.failed(b)
    assert table.replacements(0) == [c]
    assert table.bucket(0) == [a]
    table.failed(reg.add(in_bucket(OWN, 40, 1)))  # unknown handle in an unused bucket: no effect
    assert table.bucket(0) == [a]


def test_same_id_other_address_does_not_displace_answering_entry():
    reg, table = make(k=3)
    node_id = in_bucket(OWN, 3, 77)
    old = reg.add(node_id)
    spoof = reg.add(node_id)
    table.observe(old, 0)
    assert table.observe(spoof, 1) is False
    assert table.bucket(3) == [old]
    assert table.find(node_id) == old
    assert spoof not in table.handles()


def test_same_id_other_address_replaces_entry_with_failures_once_it_answers():
    reg, table = make(k=3, max_failures=3)
    node_id = in_bucket(OWN, 3, 77)
    neighbour = reg.add(in_bucket(OWN, 3, 1))
    old = reg.add(node_id)
    moved = reg.add(node_id)
    table.observe(neighbour, 0)
    table.observe(old, 0)
    assert not table.moved(moved)  # the old address answers: not worth a request
    assert table.observe(moved, 1, answered=True) is False  # even an answer does not displace it
    table.failed(old)
    assert table.moved(moved) and not table.moved(old) and not table.moved(neighbour)
    assert table.observe(moved, 1) is False  # a claim alone (a request from there) is not enough
    assert table.find(node_id) == old
    assert table.observe(moved, 1, answered=True) is True
    assert table.bucket(3) == [neighbour, moved]  # takes the old entry's place
    assert table.find(node_id) == moved
    assert table.failures(old) == 0


def test_own_id_never_enters():
    reg, table = make()
    me = reg.add(OWN)
    assert table.observe(me, 0) is False
    assert len(table) == 0
    assert table.closest(OWN, 10) == []
    assert table.find(OWN) == -1


def test_find_and_remove():
    reg, table = make()
    hs = [reg.add(in_bucket(OWN, c, low)) for c, low in ((0, 1), (0, 2), (4, 3), (9, 4))]
    for h in hs:
        table.observe(h, 0)
    assert [table.find(reg.ids[h]) for h in hs] == hs
    assert table.find(in_bucket(OWN, 4, 999)) == -1
    assert table.find(in_bucket(OWN, 120, 1)) == -1
    assert table.remove(hs[2]) is True
    assert table.remove(hs[2]) is False
    assert table.find(reg.ids[hs[2]]) == -1
    assert table.bucket(4) == []
    assert len(table) == 3
    assert table.remove(reg.add(in_bucket(OWN, 130, 1))) is False


def test_closest_honours_exclude_and_count():
    reg, table = make(k=20)
    hs = [reg.add(in_bucket(OWN, c % 5, c * 7919)) for c in range(30)]
    for h in hs:
        table.observe(h, 0)
    target = in_bucket(OWN, 2, 5)
    full = sorted(hs, key=lambda h: reg.ids[h] ^ target)
    assert table.closest(target, 5) == full[:5]
    assert table.closest(target, 5, exclude=full[0]) == full[1:6]
    assert table.closest(target, 5, exclude=full[7]) == full[:5]
    assert table.closest(target, 0) == []
    assert table.closest(target, 1000) == full
    assert table.closest(target, 1000, exclude=full[3]) == full[:3] + full[4:]


# -- properties ----------------------------------------------------------------------------------

bucket_choice = st.one_of(st.integers(0, 8), st.integers(0, 159))
contact = st.tuples(bucket_choice, st.integers(0, ID_MAX))


@st.composite
def tables(draw):
    own = draw(st.integers(0, ID_MAX))
    k = draw(st.integers(1, 6))
    reg, table = make(k=k, cache=draw(st.integers(0, 4)), own=own)
    seen = {own}
    for c, low in draw(st.lists(contact, max_size=60)):
        node_id = in_bucket(own, c, low)
        if node_id in seen:
            continue
        seen.add(node_id)
        table.observe(reg.add(node_id), 0.0)
    return reg, table


@st.composite
def targets(draw, reg, table):
    return draw(
        st.one_of(
            st.integers(0, ID_MAX),
            st.just(table.own_id),
            st.builds(lambda c, low: in_bucket(table.own_id, c, low), bucket_choice, st.integers(0, ID_MAX)),
            st.sampled_from(reg.ids) if reg.ids else st.just(0),
        )
    )


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_closest_equals_brute_force(data):
    reg, table = data.draw(tables())
    target = data.draw(targets(reg, table))
    count = data.draw(st.integers(0, 25))
    entries = list(table.handles())
    entries = [h for h in entries if h in table]  # entries only, not the replacement caches
    brute = sorted(entries, key=lambda h: reg.ids[h] ^ target)
    assert table.closest(target, count) == brute[:count]
    if entries:
        exclude = data.draw(st.sampled_from(entries))
        assert table.closest(target, count, exclude) == [h for h in brute if h != exclude][:count]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_table_structure_invariants(data):
    reg, table = data.draw(tables())
    k = table.settings.k
    total = 0
    for index in range(table.bucket_count()):
        bucket = table.bucket(index)
        total += len(bucket)
        assert len(bucket) <= k
        assert all(table.bucket_index(reg.ids[h]) == index for h in bucket)
        cache = table.replacements(index)
        assert len(cache) <= table.settings.replacement_cache
        assert not set(cache) & set(bucket)
        if cache:
            assert len(bucket) == k
    assert total == len(table)
    assert all(reg.ids[h] != table.own_id for h in table.handles())


@given(st.integers(0, ID_MAX), st.integers(0, 159), st.randoms(use_true_random=False))
def test_random_id_in_bucket_lands_in_that_bucket(own, index, rng):
    _, table = make(own=own)
    node_id = table.random_id_in_bucket(index, rng)
    assert 0 <= node_id <= ID_MAX
    assert table.bucket_index(node_id) == index


def test_random_id_in_bucket_is_random_in_wide_buckets():
    _, table = make()
    rng = Random(1)
    assert len({table.random_id_in_bucket(3, rng) for _ in range(50)}) == 50


# -- refresh bookkeeping ---------------------------------------------------------------------------


def test_touch_idle_buckets_and_next_refresh():
    reg, table = make()
    assert table.next_refresh(100.0) is None
    table.observe(reg.add(in_bucket(OWN, 2, 1)), 10.0)  # grows buckets 0..2, touched at 10
    assert table.bucket_count() == 3
    assert table.idle_buckets(109.0, 100.0) == []
    assert table.idle_buckets(110.0, 100.0) == [0, 1, 2]
    table.touch(in_bucket(OWN, 1, 5), 50.0)
    table.touch(in_bucket(OWN, 99, 5), 50.0)  # beyond the table: ignored
    assert table.idle_buckets(110.0, 100.0) == [0, 2]
    assert table.next_refresh(100.0) == 110.0
    table.touch(in_bucket(OWN, 0, 5), 60.0)
    table.touch(in_bucket(OWN, 2, 5), 70.0)
    assert table.next_refresh(100.0) == 150.0


# -- a state machine over observe / failed ---------------------------------------------------------


K, CACHE = 2, 2


class TableMachine(RuleBasedStateMachine):
    """Random observe / failed traffic on a few crowded buckets; structural invariants hold."""

    def __init__(self):
        super().__init__()
        self.reg, self.table = make(k=K, cache=CACHE, max_failures=2)
        self.pool = []
        for c in (0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 4, 4):
            self.pool.append(self.reg.add(in_bucket(OWN, c, len(self.pool) * 31337)))
        # the same IDs again at other addresses (moved peers, or spoofers)
        for i in (0, 1, 6, 10):
            self.pool.append(self.reg.add(self.reg.ids[self.pool[i]]))
        self.now = 0.0

    @rule(i=st.integers(0, 15), answered=st.booleans())
    def observe(self, i, answered):
        self.now += 1
        handle = self.pool[i]
        bucket = self.table.bucket(self.table.bucket_index(self.reg.ids[handle]))
        was_full = len(bucket) >= K
        same_id = [h for h in bucket if self.reg.ids[h] == self.reg.ids[handle] and h != handle]
        answering = bool(same_id) and self.table.failures(same_id[0]) == 0
        assert self.table.moved(handle) == (bool(same_id) and not answering)
        accepted = self.table.observe(handle, self.now, answered)
        assert accepted == (handle in self.table)
        if handle in bucket:
            assert accepted
        elif answering or (same_id and not answered):
            # an answering entry keeps its address; a failing one until the new address answers
            assert not accepted
            assert same_id[0] in self.table
        elif same_id:
            assert accepted and same_id[0] not in self.table  # the failing address is replaced
        elif not was_full:
            assert accepted

    @precondition(lambda self: len(self.table) > 0)
    @rule(data=st.data())
    def remove(self, data):
        handle = data.draw(st.sampled_from(sorted(h for h in self.pool if h in self.table)))
        assert self.table.remove(handle) is True
        assert handle not in self.table
        assert self.table.remove(handle) is False

    @precondition(lambda self: len(self.table) > 0)
    @rule(data=st.data())
    def fail(self, data):
        table, ids = self.table, self.reg.ids
        handle = data.draw(st.sampled_from(sorted(set(table.handles()))))
        index = table.bucket_index(ids[handle])
        cache = table.replacements(index)
        bucket = table.bucket(index)
        failures = table.failures(handle)
        # the most recent newcomer whose ID is not in the bucket (the leaving entry's included)
        present = {ids[h] for h in bucket}
        candidates = [h for h in reversed(cache) if ids[h] not in present]
        table.failed(handle)
        if handle not in bucket:
            assert table.replacements(index) == [h for h in cache if h != handle]
            assert table.bucket(index) == bucket
        elif candidates:
            assert table.bucket(index) == [h for h in bucket if h != handle] + [candidates[0]]
            assert table.replacements(index) == cache[: cache.index(candidates[0])]
            assert table.failures(handle) == 0
        elif failures + 1 >= 2:
            assert table.bucket(index) == [h for h in bucket if h != handle]
            assert table.failures(handle) == 0
        else:
            assert table.bucket(index) == bucket
            assert table.failures(handle) == failures + 1

    @precondition(lambda self: any(self.table.replacements(i)
                                   for i in range(self.table.bucket_count())))
    @rule(data=st.data())
    def displace(self, data):
        """Proximity: a cached newcomer takes an entry's place; the entry waits in the cache."""
        table, ids = self.table, self.reg.ids
        index = data.draw(st.sampled_from(
            [i for i in range(table.bucket_count()) if table.replacements(i)]))
        cache, bucket = table.replacements(index), table.bucket(index)
        handle = data.draw(st.sampled_from(cache))
        slower = data.draw(st.sampled_from(sorted(set(bucket) | set(self.pool))))
        failures = table.failures(slower)
        same_id = any(ids[h] == ids[handle] for h in bucket)
        done = table.displace(handle, slower)
        assert done == (slower in bucket and not same_id)
        if done:
            assert table.bucket(index) == [h for h in bucket if h != slower] + [handle]
            assert table.replacements(index)[-1] == slower
            assert handle not in table.replacements(index)
            assert table.failures(slower) == 0
        else:
            assert table.bucket(index) == bucket and table.replacements(index) == cache
            assert table.failures(slower) == failures

    @invariant()
    def structure(self):
        table = self.table
        for index in range(table.bucket_count()):
            bucket = table.bucket(index)
            assert len(bucket) <= K
            assert len(set(bucket)) == len(bucket)
            bucket_ids = [self.reg.ids[h] for h in bucket]
            assert len(set(bucket_ids)) == len(bucket_ids)
            assert all(table.bucket_index(self.reg.ids[h]) == index for h in bucket)
            cache = table.replacements(index)
            assert len(cache) <= CACHE
            assert not set(cache) & set(bucket)
            assert len(set(cache)) == len(cache)
        for h in self.pool:
            assert table.failures(h) < 2
            if table.failures(h):
                assert h in table


TestTableMachine = TableMachine.TestCase
TestTableMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- regressions ---------------------------------------------------------------------------------


def test_one_entry_per_id_even_through_the_replacement_cache():
    """Two handles with one ID (two addresses) can both wait in a cache; only one is promoted."""
    reg, table = make(k=2, cache=5)
    a1 = reg.add(in_bucket(OWN, 0, 1))
    a2 = reg.add(in_bucket(OWN, 0, 2))
    x_id = in_bucket(OWN, 0, 3)
    x_at_1 = reg.add(x_id)  # X at one address
    x_at_2 = reg.add(x_id)  # ... and someone claiming X's ID at another address
    for h in (a1, a2, x_at_1, x_at_2):
        table.observe(h, 0)
    table.failed(a1)
    table.failed(a2)
    bucket_ids = [reg.ids[h] for h in table.bucket(0)]
    assert len(bucket_ids) == len(set(bucket_ids)), bucket_ids
    assert x_id in bucket_ids


def test_new_address_of_a_failing_entry_may_replace_it_from_the_cache():
    reg, table = make(k=2, cache=5)
    x_id = in_bucket(OWN, 0, 3)
    x_old = reg.add(x_id)
    other = reg.add(in_bucket(OWN, 0, 4))
    table.observe(x_old, 0)
    table.observe(other, 0)
    newcomer = reg.add(in_bucket(OWN, 0, 5))
    table.observe(newcomer, 0)
    x_new = reg.add(x_id)
    assert table.observe(x_new, 0) is False  # X answers at its old address: not believed
    table.failed(x_old)
    assert table.bucket(0) == [other, newcomer]


def test_handle_promoted_by_observe_leaves_the_replacement_cache():
    reg, table = make(k=2, cache=5)
    a1, a2, c1 = (reg.add(in_bucket(OWN, 0, i)) for i in range(3))
    for h in (a1, a2, c1):
        table.observe(h, 0)
    assert table.replacements(0) == [c1]
    table.remove(a1)
    assert table.observe(c1, 1) is True
    assert table.replacements(0) == []
    table.failed(a2)
    bucket = table.bucket(0)
    assert len(bucket) == len(set(bucket)), bucket
