"""Admission by a keyed answer (`keyed_requests`, issue 15 items 1 and 2): a join's and a
refresh's lookup requests carry a target whose last 64 bits are keyed by (address, asked ID,
target), so an answer echoing it proves what a probe's answer proves, and admits its sender
without a probe. The attack the probe stops today (a contact that knows the lookup's target
forges answers from addresses it names) is played against it.
docs/design-decisions.md "Admission by a keyed answer"."""

from random import Random

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import KEYED_BITS, RoutingSettings
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    RouteRequest,
    RouteResponse,
    decode,
    encode_response,
)
from kadtalk.node.stack import Node

TO_WIRE, FROM_WIRE = ContactRegistry.addr_to_wire, ContactRegistry.addr_from_wire
A_ID = 0xA000000000000000000000000000000000000001
M_ID, M = A_ID ^ (1 << 159) ^ 5, ("198.51.100.9", 4000)  # a contact we hold (bucket 0)
KEYED = RoutingSettings(keyed_requests=True, refresh_on_join=False)
PAPER = RoutingSettings(keyed_requests=False, refresh_on_join=False)


def node(settings):
    a = Node(A_ID, ContactRegistry(), Random(3), settings, 0.0)
    a.add_contact(M_ID, M, 0.0)
    a.datagrams_to_send(0.0)
    return a


def sent(a, now):
    return [(decode(data, FROM_WIRE)[0], dst) for data, dst in a.datagrams_to_send(now)]


def answer(a, responder, target, contacts, addr, now):
    a.receive_datagram(encode_response(RouteResponse(responder, target, contacts), TO_WIRE),
                       addr, now)


def join_via_m(settings, named):
    """A joins from its table (M only); M answers naming `named`. Returns A, the request A sent
    M, and A's datagrams after M's answer."""
    a = node(settings)
    a.join([], 1.0)
    (to_m, dst), = sent(a, 1.0)
    assert dst == M and type(to_m) is RouteRequest
    answer(a, M_ID, to_m.target, named, M, 1.05)
    return a, to_m, sent(a, 1.05)


def test_a_joins_requests_are_keyed_and_a_users_are_not():
    a = node(KEYED)
    a.join([], 1.0)
    (join_request, _), = sent(a, 1.0)
    assert join_request.target != A_ID
    assert join_request.target >> KEYED_BITS == A_ID >> KEYED_BITS  # the same 96 leading bits
    a.find_peer(A_ID ^ 99, 2.0)
    (user_request, _), = sent(a, 2.0)
    assert user_request.target == A_ID ^ 99  # a user's lookup: the exact target
    paper = node(PAPER)
    paper.join([], 1.0)
    assert sent(paper, 1.0)[0][0].target == A_ID


def test_keyed_targets_differ_per_address_and_per_id():
    c_id = A_ID ^ (1 << 100) ^ 7
    named = ((c_id, ("10.0.0.3", 5004)), (c_id ^ 1, ("10.0.0.4", 5004)),
             (c_id ^ 2, ("10.0.0.3", 5005)))
    a, to_m, after = join_via_m(KEYED, named)
    targets = {m.target for m, _ in after if type(m) is RouteRequest}
    assert len(targets | {to_m.target}) == 4
    assert all(t >> KEYED_BITS == A_ID >> KEYED_BITS for t in targets)


def test_an_echo_of_a_keyed_target_admits_its_sender_without_a_probe():
    c_id, c = A_ID ^ (1 << 100) ^ 7, ("10.0.0.3", 5004)
    a, _, after = join_via_m(KEYED, ((c_id, c),))
    (to_c, dst), = after
    assert dst == c and to_c.size > REQUEST_SIZE  # a lookup request, not a probe
    assert not a.routing.is_validated(c)
    answer(a, c_id, to_c.target, (), c, 1.1)
    assert a.routing.table.find(c_id) >= 0  # in the table at once
    assert a.routing.is_validated(c)  # and its address validated (issue 15 item 1)
    assert not [m for m, dst in sent(a, 1.1) if dst == c]  # no probe


def test_the_papers_rule_probes_the_same_answerer():
    c_id, c = A_ID ^ (1 << 100) ^ 7, ("10.0.0.3", 5004)
    a, _, after = join_via_m(PAPER, ((c_id, c),))
    (to_c, _), = after
    answer(a, c_id, to_c.target, (), c, 1.1)
    assert a.routing.table.find(c_id) < 0 and not a.routing.is_validated(c)
    probes = [m for m, dst in sent(a, 1.1) if dst == c]
    assert len(probes) == 1 and probes[0].size == REQUEST_SIZE  # the probe admits it later


def test_a_contact_that_knows_the_target_cannot_forge_an_answer_from_a_named_address():
    """The attack the probe stops, played against keyed requests: M names V (no kadtalk
    there, deep in A's table) and forges V's answer with everything it knows: the lookup's
    target (A's own ID), the keyed target of its own request, and guesses in the last bits.
    Nothing matches A's request to V: V is neither admitted nor validated, and A's request to
    V stays pending (it times out as an unanswered request does)."""
    v_id, v = A_ID ^ (1 << 100) ^ 77, ("203.0.113.80", 80)
    a, to_m, after = join_via_m(KEYED, ((v_id, v),))
    (to_v, _), = after
    rng = Random(5)
    guesses = [A_ID, to_m.target, to_m.target ^ (v_id & ((1 << KEYED_BITS) - 1))]
    guesses += [A_ID ^ rng.getrandbits(KEYED_BITS) for _ in range(200)]
    assert to_v.target not in guesses
    for guess in guesses:
        answer(a, v_id, guess, (), v, 1.1)
    assert a.routing.table.find(v_id) < 0
    assert not a.routing.is_validated(v)
    assert a.routing.stats["unsolicited"] == len(guesses)
    assert a.routing.awaits(v, to_v.target, v_id)  # still waiting for V itself


def test_another_id_echoing_a_keyed_target_admits_nobody():
    """The hash binds the asked ID: someone else at that address (a restart with a new key,
    an address reused) echoing the target is not the contact asked, as without keys."""
    c_id, c = A_ID ^ (1 << 100) ^ 7, ("10.0.0.3", 5004)
    a, _, after = join_via_m(KEYED, ((c_id, c),))
    (to_c, _), = after
    other = c_id ^ (1 << 90)
    answer(a, other, to_c.target, (), c, 1.1)
    assert a.routing.table.find(other) < 0 and a.routing.table.find(c_id) < 0
    assert a.routing.stats["wrong_responder"] == 1
