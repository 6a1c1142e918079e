"""The peer-reflexive bound (node/relay/paths.py `CallPaths.reflexive_copy`), for any sequence of
PUNCHes: whatever forged PUNCHes come, a call sends KEY_REQ copies to at most
`REFLEXIVE_PER_SESSION` addresses, `REFLEXIVE_COPIES` each, `PROBE_INTERVAL` apart, and the
tables stay bounded (hypothesis)."""

from __future__ import annotations

import collections

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.relay.paths import (
    MAX_ENTRIES,
    PER_SESSION,
    PROBE_INTERVAL,
    REFLEXIVE_COPIES,
    REFLEXIVE_PER_SESSION,
    CallPaths,
)

EVENTS = st.lists(st.tuples(st.integers(0, 80),  # session
                            st.integers(0, 300),  # source port
                            st.floats(0.0, 2.0)),  # seconds since the previous PUNCH
                  max_size=400)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_no_sequence_of_punches_outruns_the_bound(events):
    paths = CallPaths()
    now = 0.0
    sent: dict[tuple[int, int], list[float]] = collections.defaultdict(list)
    for sid, port, gap in events:
        now += gap
        if paths.reflexive_copy(sid, ("203.0.113.2", port), now):
            sent[(sid, port)].append(now)
        assert len(paths.reflexive) <= MAX_ENTRIES
        assert len(paths.alternates) <= MAX_ENTRIES * PER_SESSION
    by_session = collections.Counter(sid for sid, _ in sent)
    assert all(count <= REFLEXIVE_PER_SESSION for count in by_session.values())
    for times in sent.values():
        assert len(times) <= REFLEXIVE_COPIES
        assert all(b - a >= PROBE_INTERVAL for a, b in zip(times, times[1:]))


def test_forgotten_with_its_session():
    paths = CallPaths()
    assert paths.reflexive_copy(1, ("203.0.113.2", 40000), 0.0)
    assert paths.session_of(("203.0.113.2", 40000)) == 1  # a KEY_RES from it may move the call
    paths.forget(lambda sid: False)
    assert paths.reflexive == {} and paths.session_of(("203.0.113.2", 40000)) is None


def test_a_full_table_makes_room_only_from_calls_no_longer_keying():
    paths = CallPaths()
    for sid in range(MAX_ENTRIES // 2):
        for port in (1, 2):
            assert paths.reflexive_copy(sid, ("203.0.113.2", port), 0.0)
    assert len(paths.reflexive) == MAX_ENTRIES
    assert not paths.reflexive_copy(999, ("203.0.113.2", 3), 0.0)  # all live: refused
    assert paths.reflexive_copy(999, ("203.0.113.2", 3), 0.0, live=lambda sid: sid != 0)
    assert (0, ("203.0.113.2", 1)) not in paths.reflexive and len(paths.reflexive) == MAX_ENTRIES
