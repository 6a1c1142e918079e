"""Routing-table poisoning with forged IDs (issue 17, attack 1), played against one node sans-I/O.

A ROUTE_REQ's origin ID is unauthenticated and its source address may be forged: requests alone
must never put a contact in the table or a replacement cache. Only an answer to our bare address
probe, from that address and by the claimed ID, does; probes are bounded and counted."""

from __future__ import annotations

from random import Random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire, ipv4_to_wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    ROUTE_REQ,
    ROUTE_RES,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=1.0)
OWN_ID = 0x5 << 156
SILENT = ("203.0.113.9", 6666)  # the attacker's forged source: nobody answers there


def in_bucket(c: int, low: int) -> int:
    """An ID sharing exactly `c` leading bits with OWN_ID."""
    bits = 159 - c
    return OWN_ID ^ (1 << bits) ^ (low & ((1 << bits) - 1))


def victim(settings: RoutingSettings = SETTINGS) -> Node:
    return Node(OWN_ID, ContactRegistry(), Random(1), settings, 0.0)


def request(origin: int, target: int = 1234, padding: int = 0) -> bytes:
    return encode_request(RouteRequest(origin, target), padding)


def sent(node: Node, now: float) -> list[tuple[RouteRequest | RouteResponse, tuple]]:
    return [(decode(d, ipv4_from_wire)[0], dst) for d, dst in node.datagrams_to_send(now)]


def answer(node: Node, probe: RouteRequest, responder: int, addr, now: float) -> None:
    reply = encode_response(RouteResponse(responder, probe.target, ()), ipv4_to_wire)
    node.receive_datagram(reply, addr, now)


def table_ids(node: Node) -> set[int]:
    ids = node.routing.registry.ids
    return {ids[h] for h in node.routing.table.handles()}  # entries and replacement caches


def test_eighty_forged_ids_from_a_silent_address_never_enter_the_bucket_nor_its_cache():
    node = victim()
    forged = [in_bucket(0, i) for i in range(80)]  # the attack of issue 17: one bucket, 3.3 KB
    probes = []
    for i, fake in enumerate(forged):
        size_in = len(request(fake))
        node.receive_datagram(request(fake), SILENT, i * 0.001)
        out = node.datagrams_to_send(i * 0.001)
        assert [d[0] for d, _ in out][:1] == [ROUTE_RES]  # answered (within the 3x rule)
        for data, dst in out[1:]:
            assert data[0] == ROUTE_REQ and len(data) == REQUEST_SIZE <= size_in  # no amplifier
            probes.append(decode(data, ipv4_from_wire)[0])
    assert table_ids(node) == set()
    assert [p.target for p in probes] == [forged[0]]  # one probe outstanding per address
    assert node.drop_counts() == {"probe_busy": 79}
    node.handle_timer(1.1)  # the probe goes unanswered
    assert table_ids(node) == set() and node.routing._probing is None
    # after the timeout the attacker may draw one more probe, and again nothing enters
    node.receive_datagram(request(forged[1]), SILENT, 1.2)
    assert [m.target for m, _ in sent(node, 1.2) if type(m) is RouteRequest] == [forged[1]]
    node.handle_timer(2.3)
    assert table_ids(node) == set()


def test_forged_ids_from_many_silent_addresses_are_probed_up_to_the_cap_and_never_enter():
    node = victim(RoutingSettings(refresh_on_join=False, max_probes=16))
    for i in range(100):
        node.receive_datagram(request(in_bucket(i % 3, i)), ("198.51.100.%d" % i, 7), 0.0)
    out = sent(node, 0.0)
    assert sum(type(m) is RouteRequest for m, _ in out) == 16
    assert node.drop_counts() == {"probe_limit": 84}
    node.handle_timer(1.5)
    assert table_ids(node) == set()
    assert node.routing._pending is None or not node.routing._pending


def test_an_honest_requester_that_answers_the_probe_enters_by_its_claimed_id():
    node = victim()
    honest_id, honest = in_bucket(0, 7), ("10.0.0.7", 5004)
    node.receive_datagram(request(honest_id, padding=146), honest, 0.0)
    [(res, _), (probe, dst)] = sent(node, 0.0)
    assert type(res) is RouteResponse and dst == honest and probe == RouteRequest(OWN_ID, honest_id)
    assert table_ids(node) == set()
    answer(node, probe, honest_id, honest, 0.05)
    assert node.routing.table.find(honest_id) >= 0
    assert node.routing._is_validated(honest)  # and the answer validated its address
    # heard from again: no new probe
    node.receive_datagram(request(honest_id, padding=146), honest, 0.1)
    assert [type(m) for m, _ in sent(node, 0.1)] == [RouteResponse]


def test_an_answer_by_another_id_at_the_address_does_not_admit_the_claimed_one():
    node = victim()
    fake, honest_id, shared = in_bucket(0, 1), in_bucket(0, 2), ("10.0.0.9", 5004)
    node.receive_datagram(request(fake), shared, 0.0)  # forged claim from a real node's address
    [probe] = [m for m, _ in sent(node, 0.0) if type(m) is RouteRequest]
    answer(node, probe, honest_id, shared, 0.05)  # the real node answers with its own ID
    assert node.drop_counts() == {"wrong_responder": 1}
    node.handle_timer(1.1)
    assert table_ids(node) == set()


def test_a_full_bucket_caches_a_prober_only_once_it_answers():
    node = victim()
    for i in range(20):
        assert node.add_contact(in_bucket(0, 100 + i), ("10.1.0.%d" % (i + 1), 5004), 0.0)
    newcomer, addr = in_bucket(0, 5), ("10.2.0.1", 5004)
    node.receive_datagram(request(newcomer), SILENT, 0.0)  # forged: probed, never cached
    node.receive_datagram(request(newcomer), addr, 0.0)  # honest: probed, answers
    probes = [(m, dst) for m, dst in sent(node, 0.0) if type(m) is RouteRequest]
    assert [dst for _, dst in probes] == [SILENT, addr]
    answer(node, probes[1][0], newcomer, addr, 0.1)
    node.handle_timer(1.1)
    table = node.routing.table
    [cached] = table.replacements(0)
    assert node.routing.registry.addrs[cached] == addr  # the answering one only, in the cache
    assert len(table.bucket(0)) == 20  # the uptime rule: live entries stay


def test_no_probe_when_the_table_would_not_take_the_contact():
    node = victim(RoutingSettings(refresh_on_join=False, replacement_cache=0))
    for i in range(20):
        node.add_contact(in_bucket(0, 100 + i), ("10.1.0.%d" % (i + 1), 5004), 0.0)
    node.receive_datagram(request(in_bucket(0, 5)), ("10.2.0.1", 5004), 0.0)
    assert [type(m) for m, _ in sent(node, 0.0)] == [RouteResponse]  # full bucket, no cache


class PoisonMachine(RuleBasedStateMachine):
    """Requests claiming IDs from answering and silent addresses, probe answers (by the claimed
    ID or another), timeouts: the table and caches hold only (ID, address) pairs that answered
    a probe by that ID from that address; probes stay one per address and under the cap."""

    HONEST = [("10.0.0.%d" % i, 5004) for i in range(1, 4)]
    SILENT = [("203.0.113.%d" % i, 6666) for i in range(1, 4)]

    def __init__(self):
        super().__init__()
        self.node = victim(RoutingSettings(refresh_on_join=False, k=3, replacement_cache=2,
                                           max_probes=4))
        self.now = 0.0
        self.outstanding: list[tuple[RouteRequest, tuple]] = []
        self.answered: set[tuple[int, tuple]] = set()

    def collect(self) -> None:
        for msg, dst in sent(self.node, self.now):
            if type(msg) is RouteRequest:
                assert msg.size == REQUEST_SIZE
                self.outstanding.append((msg, dst))

    @rule(low=st.integers(0, 11), bucket=st.integers(0, 2), honest=st.booleans(),
          which=st.integers(0, 2), padding=st.sampled_from((0, 146)))
    def request(self, low, bucket, honest, which, padding):
        addr = (self.HONEST if honest else self.SILENT)[which]
        self.node.receive_datagram(request(in_bucket(bucket, low), padding=padding), addr, self.now)
        self.collect()

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data(), by_claimed_id=st.booleans())
    def answer_a_probe(self, data, by_claimed_id):
        honest = [(m, a) for m, a in self.outstanding if a in self.HONEST]
        if not honest:
            return
        probe, addr = data.draw(st.sampled_from(honest))
        responder = probe.target if by_claimed_id else probe.target ^ 1
        self.now += 0.01
        answer(self.node, probe, responder, addr, self.now)
        if by_claimed_id:
            self.outstanding.remove((probe, addr))
            self.answered.add((responder, addr))
        self.collect()

    @rule()
    def time_passes(self):
        self.now += SETTINGS.request_timeout + 0.01
        self.node.handle_timer(self.now)
        self.outstanding.clear()
        self.collect()

    @invariant()
    def only_answered_pairs_are_held(self):
        registry = self.node.routing.registry
        held = {(registry.ids[h], registry.addrs[h]) for h in self.node.routing.table.handles()}
        assert held <= self.answered
        assert all(addr in self.HONEST for _, addr in held)

    @invariant()
    def probes_are_bounded(self):
        probing = self.node.routing._probing or {}
        assert len(probing) <= 4
        by_addr = [a for _, a in self.outstanding]
        assert len(by_addr) == len(set(by_addr))  # one outstanding per address


TestPoisonMachine = PoisonMachine.TestCase
TestPoisonMachine.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
