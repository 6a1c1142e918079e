"""`RoutingTable.closest` as a node answering requests calls it (issue 15): k = 20, full
buckets, the requester excluded whether it is an entry, a cached newcomer or unknown; the
answer must be the brute-force sort of every entry, and an excluded entry in the target's
bucket must cost one more bucket, not a sort of every deeper one."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from .test_table import ID_MAX, in_bucket, make

# most contacts in the first few buckets (where a real table is full), some deep ones
depth = st.one_of(st.integers(0, 4), st.integers(0, 12), st.integers(0, 159))


@st.composite
def full_tables(draw):
    own = draw(st.integers(0, ID_MAX))
    reg, table = make(k=draw(st.sampled_from([1, 3, 20])), cache=draw(st.integers(0, 5)), own=own)
    rng = Random(draw(st.integers(0, 2**32)))
    seen = {own}
    for c in draw(st.lists(depth, max_size=160)):
        node_id = in_bucket(own, c, rng.getrandbits(160))
        if node_id not in seen:
            seen.add(node_id)
            table.observe(reg.add(node_id), 0.0)
    return reg, table


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_closest_is_the_brute_force_sort_with_any_requester_excluded(data):
    reg, table = data.draw(full_tables())
    own = table.own_id
    target = data.draw(st.one_of(
        st.integers(0, ID_MAX), st.just(own),
        st.builds(lambda c, low: in_bucket(own, c, low), depth, st.integers(0, ID_MAX))))
    count = data.draw(st.sampled_from([0, 1, 5, 19, 20, 21, 40]))
    entries = [h for h in table.handles() if h in table]
    brute = sorted(entries, key=lambda h: reg.ids[h] ^ target)
    assert table.closest(target, count) == brute[:count]
    # the requester: an entry, a cached newcomer, or a contact the table does not hold
    unknown = reg.add(data.draw(st.integers(0, ID_MAX).filter(lambda i: i not in reg.ids)))
    excluded = data.draw(st.sampled_from(sorted(set(table.handles())) + [unknown]))
    assert table.closest(target, count, excluded) == [h for h in brute if h != excluded][:count]


def test_an_excluded_entry_costs_one_more_bucket_not_every_deeper_one():
    reg, table = make(k=20, cache=0)
    rng = Random(7)
    for c in range(8):  # buckets 0-7 full: 140 entries deeper than bucket 0
        for _ in range(20):
            table.observe(reg.add(in_bucket(table.own_id, c, rng.getrandbits(160))), 0.0)
    target = in_bucket(table.own_id, 0, rng.getrandbits(160))
    requester = table.bucket(0)[3]
    keyed = []
    ids = reg.ids

    class Counting(list):  # counts the distances computed (each sort key is one)
        def __getitem__(self, handle):
            keyed.append(handle)
            return list.__getitem__(self, handle)

    table._ids = Counting(ids)
    result = table.closest(target, 20, requester)
    table._ids = ids
    brute = sorted((h for h in table.handles() if h != requester), key=lambda h: ids[h] ^ target)
    assert result == brute[:20]
    assert len(keyed) <= 1 + 20 + 20  # the requester's bucket, bucket 0, one deeper bucket
