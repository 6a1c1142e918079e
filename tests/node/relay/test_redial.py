"""A redial soon after a relayed call (the namespace testbed, session 7: at 0 % loss 3 of 7
quick redials ended `unreachable`, alternating): the caller offers the same allocation again,
and the callee took the new call's offer within `KNOCK_AGAIN` for a copy of the last one and
did not knock. A repeat is a new call once a call the knocked path carried has ended
(`CallPaths.heard`); one call's copies still draw one knock. Whole nodes, explicit time."""

from __future__ import annotations

from kadtalk.node.relay import RELAY, RelayPath, wire
from kadtalk.node.relay.paths import KNOCK_AGAIN, CallPaths

from .dht import A, B, Call
from .test_setup import symmetric_pair

B_PUBLIC = "203.0.113.2"


class Log:
    def __init__(self, route):
        self.route, self.log = route, []

    def __call__(self, packet, now):
        self.log.append((now, packet))
        return self.route(packet, now)


def bare_knocks(log: Log, since: float) -> int:
    return sum(1 for t, p in log.log if t >= since and p.src[0] == B_PUBLIC
               and p.payload[:2] == bytes((RELAY, wire.KNOCK))
               and p.payload[10:16] == wire.NO_COOKIE)


def test_two_calls_half_a_second_apart_through_the_same_allocation_both_knock_and_set_up():
    net, nat = symmetric_pair()
    log = nat.route = Log(nat.route)
    first = Call(net)
    start = first.placed
    assert first.connect() == "talking" and type(first.path(A)) is RelayPath
    knocked = first.path(A)
    assert bare_knocks(log, start) >= 1
    net.nodes[A].hang_up(net.now, first.sid_a)
    net.service(A)
    net.run_until(start + 0.5)
    assert net.now - start < KNOCK_AGAIN
    since = net.now
    second = Call(net)
    assert second.connect() == "talking"
    assert second.path(A) == second.path(B) == knocked  # the same allocation, knocked again
    assert bare_knocks(log, since) >= 1
    to_b, to_a = second.media(0.4)
    assert len(to_b) == len(to_a) == 20


def test_copies_of_one_offer_draw_one_knock_while_its_call_lives_or_before_it_came():
    paths, path = CallPaths(), RelayPath(("198.51.100.1", 5004), bytes(8))
    ended: set[int] = set()

    def live(sid):
        return sid not in ended

    caller, addr = 7, ("203.0.113.1", 5004)
    assert paths.heard(path, caller, addr, 10.0, live=live)
    # every rendezvous's copy within KNOCK_AGAIN: no knock, before the call came ...
    assert not any(paths.heard(path, caller, addr, 10.0 + i / 100, live=live) for i in range(50))
    paths.carried(path, 1)
    # ... nor while the call it carried lives
    assert not any(paths.heard(path, caller, addr, 10.5 + i / 100, live=live) for i in range(40))
    ended.add(1)  # the call ended: the same offer within KNOCK_AGAIN is a new call
    assert paths.heard(path, caller, addr, 10.95, live=live)
    # and that new call's copies draw no more knocks
    assert not any(paths.heard(path, caller, addr, 10.96 + i / 1000, live=live)
                   for i in range(30))
    assert paths.heard(path, caller, addr, 10.95 + KNOCK_AGAIN, live=live)  # as before
