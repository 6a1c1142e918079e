"""Review R2 finding 2: get_timer (after every datagram) read every address check record
(min() over them: 25.5 us with 494 records against 0.3 us). The check deadlines are a lazy heap
now: get_timer reads O(1) records, and gives the same deadline as the minimum over them."""
from random import Random

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node


class CountingDict(dict):
    reads = 0

    def values(self):
        for v in super().values():
            CountingDict.reads += 1
            yield v

    def items(self):
        for kv in super().items():
            CountingDict.reads += 1
            yield kv


def node_with_checks(n: int) -> Node:
    node = Node(1 << 159, ContactRegistry(), Random(1), RoutingSettings(refresh_on_join=False), 0.0)
    rng = Random(2)
    while len(node.routing.table) < n:
        node.add_contact(rng.getrandbits(160),
                         (f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}", 5004), 0.0)
    table = node.routing.table
    for handle in list(table.handles()):
        table.start_check(handle, handle, rng.uniform(1.0, 50.0), 0.0, rng.randrange(3))
    return node


def test_get_timer_does_not_walk_every_address_check_record():
    node = node_with_checks(300)
    table = node.routing.table
    table._checks = CountingDict(table._checks)
    CountingDict.reads = 0
    for _ in range(100):
        node.routing.get_timer()
    assert CountingDict.reads == 0, f"{CountingDict.reads / 100:.0f} records read a call"


def test_the_heap_gives_the_earliest_deadline_as_records_change():
    node = node_with_checks(200)
    table, rng = node.routing.table, Random(3)
    handles = list(table.handles())
    now = 0.0
    for step in range(300):
        handle = rng.choice(handles)
        if handle in table._checks and rng.random() < 0.3:
            table.observe(handle, now, answered=True)  # answered: the record moves on
        elif handle in table._checks and table._checks[handle][1] >= 0 and rng.random() < 0.3:
            table.continue_check(handle, now + rng.uniform(0.1, 20.0), 1)
        now += rng.uniform(0.0, 1.0)
        expired = table.expired_checks(now)
        for old, _, more in expired:
            if more:
                table.continue_check(old, now + rng.uniform(0.1, 20.0), more - 1)
        records = table._checks or {}
        expected = min((r[0] for r in records.values()), default=float("inf"))
        assert table.next_check() == expected
        assert all(r[0] > now for r in records.values())  # nothing due is left behind
