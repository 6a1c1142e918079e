"""PNS that displaces only measured entries (RoutingSettings.proximity_measured), explicit
`now`: an entry the node never measured keeps its place whatever answers faster, so a young
table (the join's entries, none measured) is the uptime rule's until the node's own requests
measured its entries slow (docs/design-decisions.md, "Lookup latency: PNS that displaces only
measured entries")."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.node.routing.test_proximity_floor import bucket_with, entries, meet


def test_an_entry_never_measured_stays_against_a_newcomer_next_to_us():
    for measured_only, displaced in ((False, True), (True, False)):
        n = bucket_with([None, None], rtt_floor=0.08, proximity_measured=measured_only)
        meet(n, 100, 0.001, 10.0)  # 1 ms: an attacker next to us
        assert (100 in entries(n)) is displaced
        assert len(entries(n)) == 2


def test_a_measured_slow_entry_still_goes_and_the_unmeasured_one_stays():
    n = bucket_with([None, 0.3, None], rtt_floor=0.08, proximity_measured=True)
    meet(n, 100, 0.05, 10.0)
    assert entries(n) == [1, 3, 100]  # only the measured 0.3 s entry was displaceable
    meet(n, 101, 0.001, 10.5)  # the rest are unmeasured or within the floor
    assert entries(n) == [1, 3, 100]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0.001, 1.0)), min_size=1, max_size=8),
       st.lists(st.floats(0.0005, 1.0), max_size=30))
def test_whatever_newcomers_answer_every_unmeasured_entry_stays(rtts, newcomers):
    n = bucket_with(rtts, rtt_floor=0.08, proximity_measured=True)
    unmeasured = {i for i, rtt in enumerate(rtts, 1) if rtt is None}
    for j, rtt in enumerate(newcomers):
        meet(n, 100 + j, rtt, 10.0 + j)
    assert unmeasured <= set(entries(n))
    assert len(entries(n)) == len(rtts)
