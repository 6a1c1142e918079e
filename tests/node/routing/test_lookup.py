"""The iterative lookup as a bare state machine over handles (no layer, no registry)."""

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.lookup import ANSWERED, FAILED, IN_FLIGHT, LOST_ROUNDS, NEW, Lookup, Mode

MASK = 3


def state(lookup, handle):
    return lookup._status[handle] & MASK


def count_state(lookup, wanted):
    return sum(1 for v in lookup._status.values() if v & MASK == wanted)


def new_lookup(mode=Mode.FIND_CLOSEST, k=4, alpha=3, target=0):
    return Lookup(7, target, mode, 1.5, k, alpha)


def test_initial_state():
    lookup = new_lookup()
    assert (lookup.lookup_id, lookup.target, lookup.started) == (7, 0, 1.5)
    assert (lookup.in_flight, lookup.rpcs, lookup.timeouts, lookup.found, lookup.done) == (0, 0, 0, -1, False)


def test_empty_shortlist_ends_at_once():
    for mode in Mode:
        lookup = new_lookup(mode)
        assert lookup.next_requests() == []
        assert lookup.done
        assert lookup.found == -1
        assert lookup.closest_answered() == []


def test_alpha_in_flight_never_more_and_closest_first():
    lookup = new_lookup(k=20, alpha=3)
    for handle in range(10):
        lookup.add(handle, distance=100 + (9 - handle), hop=1)  # handle 9 is closest
    assert lookup.next_requests() == [9, 8, 7]
    assert lookup.in_flight == 3 and lookup.rpcs == 3
    assert lookup.next_requests() == []
    assert lookup.in_flight == 3
    assert lookup.is_waiting_for(8) and not lookup.is_waiting_for(6)
    lookup.answered(8)
    assert lookup.in_flight == 2
    assert lookup.next_requests() == [6]
    assert lookup.in_flight == 3 and lookup.rpcs == 4
    assert lookup.next_requests() == []


def test_each_timeout_frees_a_slot():
    lookup = new_lookup(k=20, alpha=2)
    for handle in range(6):
        lookup.add(handle, distance=handle + 1, hop=1)
    assert lookup.next_requests() == [0, 1]
    lookup.failed(0)
    assert (lookup.in_flight, lookup.timeouts) == (1, 1)
    assert state(lookup, 0) == FAILED
    assert lookup.next_requests() == [2]
    lookup.failed(1)
    lookup.failed(2)
    assert (lookup.in_flight, lookup.timeouts) == (0, 3)
    assert lookup.next_requests() == [3, 4]
    assert lookup.rpcs == 5


def test_failing_a_contact_not_in_flight_counts_no_timeout():
    lookup = new_lookup(k=20, alpha=1)
    lookup.add(1, 1, 1)
    lookup.add(2, 2, 1)
    assert lookup.next_requests() == [1]
    lookup.failed(2)  # never asked
    assert (lookup.in_flight, lookup.timeouts) == (1, 0)
    assert state(lookup, 2) == FAILED


def test_add_ignores_known_handles():
    lookup = new_lookup(k=20)
    lookup.add(1, 10, 1)
    lookup.add(1, 10, 5)
    assert lookup.hop_of(1) == 1
    assert lookup.handles() == [1]


def test_find_peer_stops_as_soon_as_target_is_added():
    lookup = new_lookup(Mode.FIND_PEER, k=20, alpha=3)
    for handle in range(1, 6):
        lookup.add(handle, handle, 1)
    assert lookup.next_requests() == [1, 2, 3]
    hop = lookup.answered(1)
    assert hop == 2
    lookup.add(42, 0, hop)
    assert lookup.done
    assert lookup.found == 42
    assert lookup.hops == 1
    assert lookup.next_requests() == []
    assert lookup.rpcs == 3


def test_find_peer_with_target_in_own_table_needs_no_rpc():
    lookup = new_lookup(Mode.FIND_PEER)
    lookup.add(5, 0, 1)
    assert lookup.done and lookup.found == 5 and lookup.hops == 0
    assert lookup.next_requests() == [] and lookup.rpcs == 0


def test_find_closest_does_not_stop_on_the_target():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=2)
    lookup.add(5, 0, 1)
    assert not lookup.done
    assert lookup.found == -1
    assert lookup.next_requests() == [5]


def test_find_closest_stops_when_k_closest_answered_ignoring_others_in_flight():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=3, alpha=3)
    for handle, distance in ((1, 10), (2, 20), (3, 30), (4, 40)):
        lookup.add(handle, distance, 1)
    assert lookup.next_requests() == [1, 2, 3]  # only the k closest are ever asked
    hop = lookup.answered(1)
    lookup.add(11, 1, hop)
    lookup.add(12, 2, hop)
    assert lookup.next_requests() == [11]  # one free slot
    lookup.answered(11)
    assert lookup.next_requests() == [12]
    assert not lookup.done
    lookup.answered(12)
    assert lookup.next_requests() == []
    assert lookup.done  # 2 and 3 are still in flight, but outside the k closest
    assert lookup.is_waiting_for(2) and lookup.is_waiting_for(3)
    assert lookup.in_flight == 2
    assert lookup.closest_answered() == [11, 12, 1]
    assert lookup.hops == 2
    assert state(lookup, 4) == NEW and lookup.rpcs == 5


def test_find_closest_never_asks_beyond_the_k_closest():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=2, alpha=3)
    for handle in range(1, 6):
        lookup.add(handle, handle, 1)
    assert lookup.next_requests() == [1, 2]
    lookup.answered(1)
    lookup.answered(2)
    assert lookup.next_requests() == []
    assert lookup.done and lookup.rpcs == 2


def test_find_closest_skips_failed_contacts_in_the_k_closest():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=2, alpha=2)
    for handle in range(1, 5):
        lookup.add(handle, handle, 1)
    assert lookup.next_requests() == [1, 2]
    lookup.failed(1)
    assert lookup.next_requests() == [3]
    lookup.answered(2)
    assert not lookup.done
    assert lookup.next_requests() == []  # the closest two non-failed are 2 and 3; 3 in flight
    assert not lookup.done
    lookup.answered(3)
    assert lookup.next_requests() == []
    assert lookup.done
    assert lookup.closest_answered() == [2, 3]
    assert lookup.timeouts == 1


def test_closer_contacts_learned_later_are_asked_next():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=2, alpha=1)
    lookup.add(10, 100, 1)
    lookup.add(11, 110, 1)
    assert lookup.next_requests() == [10]
    hop = lookup.answered(10)
    lookup.add(20, 5, hop)
    lookup.add(21, 6, hop)
    assert lookup.next_requests() == [20]
    lookup.answered(20)
    assert lookup.next_requests() == [21]
    lookup.answered(21)
    assert lookup.next_requests() == []
    assert lookup.done
    assert lookup.closest_answered() == [20, 21]
    assert lookup.hops == 2  # hop at which the closest answering contact was learned
    assert lookup.is_waiting_for(11) is False and state(lookup, 11) == NEW


@pytest.mark.parametrize("mode", list(Mode))
def test_exhausted_shortlist_ends_not_found(mode):
    lookup = new_lookup(mode, k=20, alpha=3)
    for handle in range(1, 5):
        lookup.add(handle, handle, 1)
    asked = lookup.next_requests()
    assert asked == [1, 2, 3]
    for h in asked:
        lookup.failed(h)
    assert lookup.next_requests() == [4]
    assert not lookup.done
    lookup.answered(4)
    assert lookup.next_requests() == []
    assert lookup.done
    assert lookup.found == -1
    assert lookup.timeouts == 3 and lookup.rpcs == 4


def test_probes_occupy_slots_and_their_answers_enter_the_shortlist():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=3, alpha=2)
    lookup.probe_sent()
    lookup.probe_sent()
    assert (lookup.in_flight, lookup.rpcs) == (2, 2)
    assert lookup.next_requests() == []
    assert not lookup.done
    lookup.answered_probe(50, 50)
    assert state(lookup, 50) == ANSWERED and lookup.hop_of(50) == 1
    lookup.add(51, 10, 2)
    assert lookup.next_requests() == [51]
    lookup.probe_failed()
    assert (lookup.in_flight, lookup.timeouts) == (1, 1)
    lookup.answered(51)
    assert lookup.next_requests() == []
    assert lookup.done


def test_waits_for_probes_before_giving_up():
    lookup = new_lookup(Mode.FIND_CLOSEST, k=3, alpha=3)
    lookup.probe_sent()
    assert lookup.next_requests() == []
    assert not lookup.done
    lookup.probe_failed()
    assert lookup.next_requests() == []
    assert lookup.done
    assert lookup.closest_answered() == []


# -- urgent lookups: aggressive (libtorrent) and a larger first round ------------------------------


def test_aggressive_asks_every_nearer_contact_an_answer_names_at_once():
    """Paper: an answer frees one slot, so of three nearer contacts one is asked. Aggressive:
    the two requests still in flight are overtaken by the three, so all three are asked."""
    asked_now = {}
    for aggressive in (False, True):
        lookup = Lookup(7, 0, Mode.FIND_PEER, 0.0, 20, 3, aggressive=aggressive)
        for h in (40, 50, 60, 70):
            lookup.add(h, h, 1)
        assert lookup.next_requests() == [40, 50, 60]
        hop = lookup.answered(40)
        for h in (1, 2, 3):
            lookup.add(h, h, hop)
        asked_now[aggressive] = lookup.next_requests()
    assert asked_now == {False: [1], True: [1, 2, 3]}


def test_aggressive_still_keeps_alpha_among_the_nearest():
    """A request not overtaken holds its place: one nearer contact learned, one asked."""
    lookup = Lookup(7, 0, Mode.FIND_PEER, 0.0, 20, 3, aggressive=True)
    for h in (40, 50, 60, 70, 80):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [40, 50, 60]
    lookup.add(1, 1, lookup.answered(40))
    assert lookup.next_requests() == [1]  # 1, then 50 and 60 in flight: three among the nearest
    assert lookup.next_requests() == []
    assert lookup.in_flight == 3


def test_a_larger_first_round_then_alpha():
    lookup = Lookup(7, 0, Mode.FIND_PEER, 0.0, 20, 2, first=5)
    for h in range(10, 20):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [10, 11, 12, 13, 14]
    lookup.answered(10)
    assert lookup.next_requests() == []  # the paper's rule: four in flight, alpha is 2
    lookup.failed(11)
    lookup.failed(12)
    lookup.failed(13)
    assert lookup.next_requests() == [15]
    small = Lookup(7, 0, Mode.FIND_PEER, 0.0, 20, 3, first=2)  # at most alpha: alpha
    for h in range(10, 20):
        small.add(h, h, 1)
    assert small.next_requests() == [10, 11, 12]


# -- randomized driving --------------------------------------------------------------------------


def check_invariants(lookup, probes_out, alpha, slow=frozenset()):
    in_flight_entries = count_state(lookup, IN_FLIGHT)
    assert all(state(lookup, h) == IN_FLIGHT for h in slow)
    assert lookup.in_flight == in_flight_entries - len(slow) + probes_out
    if not lookup.aggressive:  # aggressive: also alpha among the nearest, checked where it asks
        assert lookup.in_flight <= max(alpha, lookup.first, probes_out)
    else:  # whatever the answers name
        assert lookup.in_flight <= max(lookup.first + 2 * alpha, probes_out)
    if lookup.max_requests:
        assert lookup.rpcs <= max(lookup.max_requests, probes_out)
    assert lookup.in_flight >= 0


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(list(Mode)),
    k=st.integers(1, 6),
    alpha=st.integers(1, 4),
    nodes=st.integers(1, 40),
    probes=st.integers(0, 3),
    p_fail=st.sampled_from([0.0, 0.2, 0.6, 1.0]),
    p_slow=st.sampled_from([0.0, 0.3]),
    aggressive=st.booleans(),
    first=st.sampled_from([0, 5]),
    adversary=st.booleans(),
    rtt_bits=st.sampled_from([None, 0, 2]),
)
def test_random_order_of_answers_and_timeouts(seed, mode, k, alpha, nodes, probes, p_fail, p_slow,
                                              aggressive, first, adversary, rtt_bits):
    """A random world: each node knows a few others. Answers, timeouts and slow requests (whose
    slots go to others while they may still answer) come in random order; the paper's rule or
    the aggressive one, with or without a larger first round. With `adversary`, one node's
    every answer names a fresh ID of its own nearer than all known (it answers as well) and five
    victims' (which never answer): the caps (in flight, and RoutingSettings' requests in all)
    bound it and end the lookup. With `rtt_bits`, contacts are chosen by a random round trip
    (some unknown) among the equally near ones."""
    rng = Random(seed)
    bits = 16
    ids = rng.sample(range(1, 1 << bits), nodes)
    target = rng.choice([0] + ids) if mode is Mode.FIND_PEER else rng.getrandbits(bits)
    knows = {h: rng.sample(range(nodes), min(nodes, rng.randint(0, 6))) for h in range(nodes)}
    dead = {h for h in range(nodes) if rng.random() < p_fail}
    lookup = Lookup(0, target, mode, 0.0, k, alpha, aggressive=aggressive, first=first)
    if rtt_bits is not None:
        rtts = {h: rng.choice([None, rng.random()]) for h in range(nodes)}
        lookup.prefer_fast(lambda h: rtts.get(h), rtt_bits, rng.choice([0.0, 0.1]))
    evil: set[int] = set()
    if adversary:
        lookup.max_requests = RoutingSettings().lookup_requests
        evil.add(rng.randrange(nodes))
        dead.discard(*evil)
    probes = min(probes, alpha) if mode is Mode.FIND_CLOSEST else 0  # only joins probe
    for _ in range(probes):
        lookup.probe_sent()
    probes_out = probes
    for h in rng.sample(range(nodes), min(nodes, 3)):
        lookup.add(h, ids[h] ^ target, 1)
    in_flight: list[int] = []
    rpcs = probes
    timeouts = 0
    asked = set()
    again: dict[int, int] = {}
    slow: set[int] = set()
    found_expected = next((h for h in lookup.handles() if ids[h] == target), -1)

    def ask():
        nonlocal rpcs
        chosen = lookup.next_requests()
        for h in chosen:
            if h in asked:  # asked again only by an urgent FIND_PEER nobody answered
                assert mode is Mode.FIND_PEER and lookup.answers == 0 and (
                    aggressive or first > alpha)
                again[h] = again.get(h, 0) + 1
                assert again[h] <= LOST_ROUNDS
            asked.add(h)
            assert state(lookup, h) == IN_FLIGHT
        # chosen contacts are among the k closest non-failed (slow ones hold no place), and
        # nothing closer waits unasked
        order = [h for _, h in lookup._order if state(lookup, h) != FAILED and h not in slow]
        distance = {h: d for d, h in lookup._order}
        candidates = [h for h in order[:k] if h in chosen or state(lookup, h) == NEW]
        for h in chosen:
            position = order.index(h)
            assert position < k
            if rtt_bits is not None:  # as useful as the nearest not asked before (a few bits
                # more), or too few of those to fill the slots: then in XOR order
                nearest = distance[candidates[0]].bit_length()
                assert (distance[h].bit_length() <= nearest + rtt_bits
                        or all(o in chosen for o in candidates[:candidates.index(h)]))
                continue
            assert all(state(lookup, other) != NEW for other in order[:position])
            if aggressive:  # fewer than alpha (the first round: `first`) in flight nearer
                width = max(alpha, first) if rpcs == 0 else alpha
                nearer = sum(1 for other in order[:position] if state(lookup, other) == IN_FLIGHT)
                assert nearer < width
        rpcs += len(chosen)
        in_flight.extend(chosen)

    ask()
    steps = 0
    while not lookup.done:
        steps += 1
        assert steps < 10 * (nodes + probes + 5) + 3 * lookup.max_requests, "it never ends"
        check_invariants(lookup, probes_out, alpha, slow)
        options = len(in_flight) + probes_out
        assert options > 0, "not done, but nothing in flight"
        pick = rng.randrange(options)
        if pick < len(in_flight) and in_flight[pick] not in slow and rng.random() < p_slow:
            slow.add(in_flight[pick])
            lookup.slow(in_flight[pick])
            lookup.slow(in_flight[pick])  # twice: no second slot
        elif pick >= len(in_flight):
            probes_out -= 1
            if rng.random() < p_fail:
                lookup.probe_failed()
                timeouts += 1
            else:
                h = rng.randrange(nodes)
                lookup.answered_probe(h, ids[h] ^ target)
                for other in knows[h]:
                    lookup.add(other, ids[other] ^ target, 2)
        else:
            h = in_flight.pop(pick)
            slow.discard(h)
            if h in dead:
                lookup.failed(h)
                timeouts += 1
            else:
                hop = lookup.answered(h)
                for other in knows.get(h, ()):
                    lookup.add(other, ids[other] ^ target, hop)
                nearest = lookup._order[0][0] if lookup._order else 0
                if h in evil and nearest > 6:  # always nearer: itself again, and five victims
                    for distance in range(nearest - 1, nearest - 7, -1):
                        fresh = len(ids)
                        ids.append(target ^ distance)
                        (evil if distance == nearest - 1 else dead).add(fresh)
                        lookup.add(fresh, distance, hop)
        if found_expected < 0 and mode is Mode.FIND_PEER:
            found_expected = next((h for h in lookup.handles() if ids[h] == target), -1)
        if not lookup.done:
            ask()
        assert lookup.rpcs == rpcs
        assert lookup.timeouts == timeouts

    assert lookup.next_requests() == []
    assert lookup.rpcs == rpcs and lookup.timeouts == timeouts
    if lookup.max_requests and rpcs >= lookup.max_requests:
        return  # the cap ended it: with what it had, not by the stop rule
    if mode is Mode.FIND_PEER and found_expected >= 0:
        assert lookup.found == found_expected and ids[lookup.found] == target
    elif mode is Mode.FIND_PEER:
        assert lookup.found == -1
    # the stop rule: the k closest non-failed contacts all answered (or none are left)
    order = [h for _, h in lookup._order if state(lookup, h) != FAILED]
    if lookup.found < 0:
        assert all(state(lookup, h) == ANSWERED for h in order[:k])
        if len(order) < k:
            assert lookup.in_flight == 0
        assert lookup.closest_answered() == order[:k]


# -- RTT-aware choice (prefer_fast) ----------------------------------------------------------------


def rtt_lookup(rtts, bits, cost=0.0, alpha=2, k=20):
    lookup = Lookup(7, 0, Mode.FIND_PEER, 0.0, k, alpha)
    lookup.prefer_fast(rtts.get, bits, cost)
    return lookup


def test_the_fastest_of_the_equally_near_are_asked_first():
    # distances 16..23 share a bit length (5 bits); 8 has one bit fewer
    rtts = {16: 0.20, 17: 0.03, 18: 0.15, 19: 0.01, 8: 0.30}
    lookup = rtt_lookup(rtts, bits=0)
    for h in (16, 17, 18, 19):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [17, 19]  # in XOR order, chosen by round trip
    lookup = rtt_lookup(rtts, bits=0)
    for h in (8, 16, 17, 18, 19):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [8, 16]  # 8 alone is nearest by a bit: XOR order
    lookup = rtt_lookup(rtts, bits=1)
    for h in (8, 16, 17, 18, 19):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [17, 19]


def test_a_bit_farther_must_save_its_cost_and_unknown_round_trips_go_last():
    rtts = {8: 0.10, 16: 0.08, 17: None}
    lookup = rtt_lookup(rtts, bits=1, cost=0.05, alpha=1)
    for h in (8, 16, 17):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [8]  # 16 saves 20 ms, a bit costs 50
    lookup = rtt_lookup(rtts, bits=1, cost=0.01, alpha=1)
    for h in (8, 16, 17):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [16]
    lookup = rtt_lookup({}, bits=3, alpha=2)  # nothing known: XOR order
    for h in (9, 8, 16, 17):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [8, 9]


def test_rtt_choice_keeps_how_many_and_the_stop_rule():
    lookup = Lookup(7, 0, Mode.FIND_CLOSEST, 0.0, 3, 2)
    lookup.prefer_fast({5: 0.01, 6: 0.02, 7: 0.03}.get, 4, 0.0)
    for h in (4, 5, 6, 7):
        lookup.add(h, h, 1)
    assert lookup.next_requests() == [5, 6]  # 7 is beyond the k = 3 nearest: never asked
    assert lookup.next_requests() == []
    lookup.answered(5)
    assert lookup.next_requests() == [4]
    for h in (4, 6):
        lookup.answered(h)
    assert lookup.next_requests() == [] and lookup.done
    assert lookup.closest_answered() == [4, 5, 6]
