"""An urgent FIND_PEER (a call's) none of whose requests was answered asks the same contacts
again (`LOST_ROUNDS`) before it gives up (session 10: at 30 % loss, a call's lookup through
three contacts ended `unreachable` after 1.0 s in about one dial of three, the testbed's "Loss
and failure through a relay"). Explicit time; datagrams dropped by the test, not by chance."""

from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import FAILED, LOST_ROUNDS, Lookup, Mode

from .test_urgent_lookups import ADDRS, IDS, TARGET, answer, asked, node


def lookup_of(mode: Mode, urgent: bool = True) -> Lookup:
    lookup = Lookup(0, 0b1000, mode, 0.0, k=4, alpha=3, aggressive=urgent)
    for handle, distance in ((1, 0b0001), (2, 0b0010), (3, 0b0100)):
        lookup.add(handle, distance, 1)
    return lookup


def test_a_find_peer_nobody_answered_asks_its_contacts_again_then_gives_up():
    lookup = lookup_of(Mode.FIND_PEER)
    rounds = []
    chosen = lookup.next_requests()
    while chosen:
        rounds.append(sorted(chosen))
        for handle in chosen:
            lookup.failed(handle)
        chosen = lookup.next_requests()
    assert rounds == [[1, 2, 3]] * (1 + LOST_ROUNDS) and LOST_ROUNDS == 2
    assert lookup.done and lookup.found == -1
    assert (lookup.rpcs, lookup.timeouts) == (9, 9)


def test_a_lookup_that_heard_anyone_a_find_closest_or_one_not_urgent_never_asks_again():
    lookup = lookup_of(Mode.FIND_PEER)
    assert sorted(lookup.next_requests()) == [1, 2, 3]
    lookup.failed(1)
    lookup.failed(2)
    lookup.answered(3)  # an answer naming no one nearer: the contacts are what they are
    assert lookup.next_requests() == [] and lookup.done and lookup.rpcs == 3
    for other in (lookup_of(Mode.FIND_CLOSEST), lookup_of(Mode.FIND_PEER, urgent=False)):
        for handle in other.next_requests():
            other.failed(handle)
        assert other.next_requests() == [] and other.done and other.rpcs == 3


def test_an_answer_in_a_later_round_ends_the_asking_again():
    lookup = lookup_of(Mode.FIND_PEER)
    for handle in lookup.next_requests():
        lookup.failed(handle)
    again = lookup.next_requests()
    assert sorted(again) == [1, 2, 3]
    lookup.failed(again[0])
    lookup.answered(again[1])  # heard: no third round
    lookup.failed(again[2])
    assert lookup.next_requests() == [] and lookup.done and lookup.rpcs == 6
    assert lookup._status[again[0]] & 3 == FAILED


def test_a_calls_lookup_whose_first_round_was_lost_finds_the_callee_in_the_next():
    """Whole routing layer, explicit time: the first round's requests all go unanswered (lost);
    at request_timeout the lookup asks the same contacts again (the nearest, alpha at a time),
    and an answer naming the callee ends it. Before: LookupCompleted without the callee at 1.0 s (the call `unreachable`)."""
    n = node(urgent_first=6)
    lookup_id = n.routing.find_peer(TARGET, 0.0, urgent=True)
    first = asked(n, 0.0)
    assert sorted(first) == sorted(IDS)  # every contact, at once (urgent_first)
    timeout = RoutingSettings().request_timeout
    n.handle_timer(timeout)  # every request timed out: nobody answered
    assert sorted(asked(n, timeout)) == [5, 6]  # the same contacts again, the nearest alpha (2)
    assert n.next_event() is None  # not over
    answer(n, 6, timeout + 0.05, [(TARGET, ("10.0.2.1", 5004))])
    event = n.next_event()
    assert event.lookup_id == lookup_id and event.peer == (TARGET, ("10.0.2.1", 5004))
    assert ADDRS  # (the contacts of test_urgent_lookups)
