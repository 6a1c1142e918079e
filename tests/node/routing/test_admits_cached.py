"""`RoutingTable.admits(handle, cached)`: one walk of the bucket answers what the routing layer
asked in two before (`admits`, then its own `_cache_enough` walk of the bucket and copy of the
cache): admitted, and not a newcomer whose bucket is full with `cached` or more in its cache."""

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.table import RoutingTable, TableSettings

ID_MAX = (1 << 160) - 1


def in_bucket(own: int, c: int, low: int) -> int:
    """An ID sharing exactly `c` leading bits with `own` (low bits from `low`)."""
    bits = 159 - c
    return own ^ (1 << bits) ^ (low & ((1 << bits) - 1))


def cache_enough(table: RoutingTable, ids: list[int], handle: int, cached: int) -> bool:
    """The routing layer's check before the fold (layer.py `_cache_enough` up to this change):
    the bucket full, its cache holding `cached`, and the ID no entry."""
    node_id = ids[handle]
    index = table.bucket_index(node_id)
    bucket = table.bucket(index)
    if len(bucket) < table.settings.k or len(table.replacements(index)) < cached:
        return False
    return all(ids[h] != node_id for h in bucket)


bucket_choice = st.one_of(st.integers(0, 3), st.integers(0, 159))


@st.composite
def tables(draw):
    own = draw(st.integers(0, ID_MAX))
    ids: list[int] = []
    table = RoutingTable(own, ids, TableSettings(draw(st.integers(0, 5)), draw(st.integers(0, 4)),
                                                 3, draw(st.integers(1, 3))),
                         index=draw(st.booleans()))
    seen = {own}
    for c, low in draw(st.lists(st.tuples(bucket_choice, st.integers(0, ID_MAX)), max_size=50)):
        node_id = in_bucket(own, c, low)
        if node_id not in seen:
            seen.add(node_id)
            ids.append(node_id)
            table.observe(len(ids) - 1, 0.0, answered=True)
    held = list(table.handles())
    for handle in draw(st.lists(st.sampled_from(held), max_size=4)) if held else ():
        table.failed(handle)  # failing entries: a newcomer with their ID may take the place
    return own, ids, table


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_admits_cached_is_admits_and_not_a_full_cache(data):
    own, ids, table = data.draw(tables())
    candidates = []
    for c, low in data.draw(st.lists(st.tuples(bucket_choice, st.integers(0, ID_MAX)),
                                     min_size=1, max_size=6)):
        ids.append(in_bucket(own, c, low))  # a newcomer
        candidates.append(len(ids) - 1)
    if len(ids) > len(candidates):
        for node_id in data.draw(st.lists(st.sampled_from(ids[:-len(candidates)] + [own]),
                                          max_size=4)):
            ids.append(node_id)  # an ID the table may hold, at another handle (address); ours
            candidates.append(len(ids) - 1)
    candidates += list(table.handles())  # entries and cached ones
    for handle in candidates:
        plain = table.admits(handle)
        assert table.admits(handle, None) == plain
        for cached in range(0, 6):
            expected = plain and not cache_enough(table, ids, handle, cached)
            assert table.admits(handle, cached) == expected, (handle, cached)
