"""`RoutingTable.heard` (a contact's request or answer offered to the table, issue 15 item 2)
is `observe(handle, now, answered)` when `known(handle)`, else None, and changes the table
exactly as that pair does: two tables, indexed or not, driven by the same random answers,
requests, failures and removals on a few crowded buckets (k = 3, caches of 2, some IDs at
several addresses), one hearing contacts through `heard`, the other through `known` and
`observe`."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kadtalk.node.routing.table import RoutingTable, TableSettings

from .test_table_held import OWN, fill_pool, in_bucket

K, CACHE = 3, 2


def state(table: RoutingTable) -> tuple:
    return (list(table._entries), bytes(table._sizes), list(table._touched),
            {i: list(c) for i, c in (table._cache or {}).items() if c},
            dict(table._failures or {}), table._held)


class HeardMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ids: list[int] = []
        self.pool = fill_pool(self.ids)
        self.ids.append(OWN)  # our own ID: never held
        self.pool.append(len(self.ids) - 1)
        self.now = 0.0

    @initialize(index=st.booleans())
    def tables(self, index):
        self.tested, self.reference = (
            RoutingTable(OWN, self.ids, TableSettings(K, CACHE, 2), index=index)
            for _ in range(2))

    handle = st.integers(0, 17)

    @rule(i=handle, answered=st.booleans())
    def heard(self, i, answered):  # a request (or, `answered`, an answer) from it
        self.now += 1
        h, reference = self.pool[i], self.reference
        expected = reference.observe(h, self.now, answered) if reference.known(h) else None
        assert self.tested.heard(h, self.now, answered) == expected

    @rule(i=handle, answered=st.booleans())
    def observe(self, i, answered):
        self.now += 1
        for table in (self.tested, self.reference):
            table.observe(self.pool[i], self.now, answered)

    @rule(i=handle)
    def fail(self, i):
        for table in (self.tested, self.reference):
            table.failed(self.pool[i])

    @rule(i=handle)
    def remove(self, i):
        for table in (self.tested, self.reference):
            table.remove(self.pool[i])

    @invariant()
    def the_same_table(self):
        if hasattr(self, "tested"):
            assert state(self.tested) == state(self.reference)


HeardMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60,
                                          deadline=None)
TestHeardMachine = HeardMachine.TestCase


def test_an_entrys_failure_is_cleared_by_its_answer_not_by_its_request():
    ids = [in_bucket(3, i + 1) for i in range(2)] + [in_bucket(0, 9)]
    tables = [RoutingTable(OWN, ids, TableSettings(K, CACHE, 2), index=index)
              for index in (False, True)]
    for table in tables:
        for h in range(2):
            table.observe(h, 0.0, answered=True)
        table.failed(0)  # no replacement cached: it stays, one failure
        assert table.heard(0, 1.0) is True and table.failures(0) == 1  # a request proves nothing
        assert table.heard(0, 2.0, answered=True) is True and table.failures(0) == 0
        assert table.heard(1, 3.0, answered=True) is True
        assert table.heard(2, 4.0) is None and not table.known(2)  # never heard of
