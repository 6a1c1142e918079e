"""The set of held handles an indexed table keeps (`index=True`, a real node's table): after every
change of an entry or a cache it equals the handles actually held, and `known` answers as the
walk of the bucket and its cache does (the unindexed table's answer)."""

from array import array

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kadtalk.node.routing.table import RoutingTable, TableSettings

OWN = 0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A
K, CACHE = 3, 2


def in_bucket(c: int, low: int) -> int:
    bits = 159 - c
    return OWN ^ (1 << bits) ^ (low & ((1 << bits) - 1))


def fill_pool(ids: list[int]) -> list[int]:
    """Twelve contacts in buckets 0, 1 and 3 (full ones and a cache), then five of their IDs
    at other addresses, appended to `ids`; their handles."""
    pool: list[int] = []
    for c in (0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 3, 3):
        ids.append(in_bucket(c, len(pool) * 7919 + 1))
        pool.append(len(ids) - 1)
    for i in (0, 0, 1, 6, 10):  # the same IDs at other addresses
        ids.append(ids[pool[i]])
        pool.append(len(ids) - 1)
    return pool


def scan_known(table: RoutingTable, handle: int) -> bool:
    """`known` without the set: the handle is an entry of its bucket or in that bucket's cache."""
    index = table.bucket_index(table._ids[handle])
    return handle in table.bucket(index) or handle in table.replacements(index)


def held(table: RoutingTable) -> set[int]:
    return set(table.handles())


class HeldMachine(RuleBasedStateMachine):
    """Random answers, requests, failures, removals, displacements, moves and loads on a few
    crowded buckets (k = 3, caches of 2), some IDs at two or three addresses."""

    def __init__(self):
        super().__init__()
        self.ids: list[int] = []
        self.table = RoutingTable(OWN, self.ids, TableSettings(K, CACHE, 2), index=True)
        self.pool = fill_pool(self.ids)
        self.now = 0.0

    handle = st.integers(0, 16)

    @rule(i=handle, answered=st.booleans())
    def observe(self, i, answered):
        self.now += 1
        self.table.observe(self.pool[i], self.now, answered)

    @rule(i=handle)
    def fail(self, i):  # an entry (replaced from the cache, or dropped) or a cached newcomer
        self.table.failed(self.pool[i])

    @rule(i=handle)
    def remove(self, i):
        self.table.remove(self.pool[i])

    @precondition(lambda self: len(self.table) > 0)
    @rule(i=handle, data=st.data())
    def displace(self, i, data):  # a cached newcomer promoted over an entry of its bucket
        slower = data.draw(st.sampled_from(list(self.table._entries)))
        self.table.displace(self.pool[i], slower)

    @rule(i=handle, j=handle)
    def move(self, i, j):  # an address check lost: another address of the ID takes the place
        self.table.move(self.pool[i], self.pool[j])

    @rule(count=st.integers(0, K))
    def load(self, count):  # the simulator's fast bootstrap replaces everything
        chosen = [h for h in self.pool if self.table.bucket_index(self.ids[h]) == 0][:count]
        self.table.load(array("i", chosen), bytearray([len(chosen)]), self.now)

    @invariant()
    def set_is_what_is_held(self):
        assert self.table._held == held(self.table)

    @invariant()
    def known_as_the_walk(self):
        for h in self.pool:
            assert self.table.known(h) == scan_known(self.table, h)


HeldMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestHeldMachine = HeldMachine.TestCase


def test_known_forgets_who_was_pushed_out_of_the_cache_or_replaced():
    ids = [in_bucket(0, i + 1) for i in range(6)]
    table = RoutingTable(OWN, ids, TableSettings(k=2, replacement_cache=2, max_failures=5),
                         index=True)
    for h in range(6):
        table.observe(h, float(h), answered=True)  # 0, 1 entries; 2 pushed out by 4 and 5
    assert [table.known(h) for h in range(6)] == [True, True, False, False, True, True]
    table.failed(0)  # 5 takes its place
    assert [table.known(h) for h in range(6)] == [False, True, False, False, True, True]
    table.failed(4)  # a cached newcomer that did not answer is forgotten
    assert not table.known(4) and table._held == {1, 5}


def test_known_forgets_a_cached_address_passed_over_for_a_replacement():
    """A newcomer cached while its ID was not an entry, then that ID entered at another
    address: the next failure's search for a replacement drops it from the cache."""
    x, y, z = in_bucket(0, 1), in_bucket(0, 2), in_bucket(0, 3)
    ids = [x, y, z, x]
    table = RoutingTable(OWN, ids, TableSettings(k=2, replacement_cache=2, max_failures=5),
                         index=True)
    table.observe(1, 0.0, answered=True)
    table.observe(2, 0.0, answered=True)
    table.observe(3, 1.0, answered=True)  # full: cached
    table.remove(2)
    table.observe(0, 2.0, answered=True)  # x at its other address takes the free place
    assert table.known(3)
    table.failed(1)  # no replacement: 3's ID is an entry
    assert table.replacements(0) == [] and not table.known(3)
    assert table._held == {0, 1}


def test_unindexed_table_keeps_no_set():
    ids = [in_bucket(0, 1)]
    table = RoutingTable(OWN, ids, TableSettings(k=3, replacement_cache=2))
    table.observe(0, 0.0, answered=True)
    assert table._held is None and table.known(0)
