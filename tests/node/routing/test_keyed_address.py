"""The keyed target depends on the address it was sent to (review R1, session 10): a contact that
reads the keyed target sent to an address of its own, for an ID it names, cannot forge that
ID's answer from another address it named (neither admitted nor validated there)."""
from tests.node.routing.test_keyed_requests import (
    A_ID, KEYED, RouteRequest, answer, join_via_m)


def test_a_keyed_target_seen_at_one_address_does_not_admit_the_same_id_at_another():
    y = A_ID ^ (1 << 100) ^ 7
    m2, v = ("198.51.100.10", 4000), ("203.0.113.80", 80)  # M's second host; a victim
    a, _, after = join_via_m(KEYED, ((y, m2), (y, v)))
    requests = {dst: m.target for m, dst in after if type(m) is RouteRequest}
    assert m2 in requests  # M's own host was asked: M reads the keyed target it got
    answer(a, y, requests[m2], (), v, 1.1)  # and forges the victim's answer with it
    assert not a.routing.is_validated(v)
    found = a.routing.table.find(y)
    assert found < 0 or a.routing.registry.addrs[found] != v
    assert a.routing._keyed_target(m2, y, A_ID, 1.0) != a.routing._keyed_target(v, y, A_ID, 1.0)
