"""Routing-table poisoning with forged IDs (issue 17, attack 1), played against one node sans-I/O.

A ROUTE_REQ's origin ID is unauthenticated and its source address may be forged: requests alone
must never put a contact in the table or a replacement cache, nor may an answer a third party can
forge blind (review M1). Only an answer to our bare, stateless address probe (target: a keyed hash
of address and claimed ID), from that address, by that ID, echoing that hash, does; probes are
metered and counted. The review's proofs of concept (/tmp/poc/p*.py) are played here sans-I/O."""

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


def probe_target(node: Node, addr, node_id: int, now: float = 0.0) -> int:
    routing = node.routing
    return routing._probe_target(routing._probe_secrets(now)[0], addr, node_id)


def held(node: Node) -> set[tuple[int, tuple]]:
    registry = node.routing.registry
    return {(registry.ids[h], registry.addrs[h]) for h in node.routing.table.handles()}


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
    assert [p.target for p in probes] == [probe_target(node, SILENT, forged[0])]  # one a second
    assert node.routing.probes_skipped == 79 and node.drop_counts() == {}
    node.handle_timer(1.1)  # the probe goes unanswered
    assert table_ids(node) == set() and not node.routing._pending  # nothing kept per probe
    # a second later the attacker may draw one more probe, and again nothing enters
    node.receive_datagram(request(forged[1]), SILENT, 1.2)
    assert [m.target for m, _ in sent(node, 1.2) if type(m) is RouteRequest] == [
        probe_target(node, SILENT, forged[1], 1.2)]
    node.handle_timer(2.3)
    assert table_ids(node) == set()


def test_forged_ids_from_many_silent_addresses_are_probed_up_to_the_cap_and_never_enter():
    node = victim(RoutingSettings(refresh_on_join=False, probe_rate=1.0, probe_burst=16))
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
    assert type(res) is RouteResponse and dst == honest
    assert probe == RouteRequest(OWN_ID, probe_target(node, honest, honest_id))
    assert table_ids(node) == set()
    answer(node, probe, honest_id, honest, 0.05)
    assert node.routing.table.find(honest_id) >= 0
    assert node.routing.is_validated(honest)  # and the answer validated its address
    # heard from again: no new probe
    node.receive_datagram(request(honest_id, padding=146), honest, 0.1)
    assert [type(m) for m, _ in sent(node, 0.1)] == [RouteResponse]


def test_an_answer_by_another_id_at_the_address_does_not_admit_the_claimed_one():
    node = victim()
    fake, honest_id, shared = in_bucket(0, 1), in_bucket(0, 2), ("10.0.0.9", 5004)
    node.receive_datagram(request(fake), shared, 0.0)  # forged claim from a real node's address
    [probe] = [m for m, _ in sent(node, 0.0) if type(m) is RouteRequest]
    answer(node, probe, honest_id, shared, 0.05)  # the real node answers with its own ID
    assert node.drop_counts() == {"unsolicited": 1}  # the hash binds the probe to the fake ID
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


def test_blind_probe_answers_admit_nothing_and_validate_nothing():
    """Review M1 (/tmp/poc/p4): a forged request from V claiming X, then a forged answer from V
    by X echoing X (all an off-path forger knows) put (X, V) in the table and made V a validated
    address (13.7x reflection at V); 80 such pairs filled bucket 0; a failing entry moved to any
    address. The probe's target is a keyed hash now: a blind answer is unsolicited."""
    node = victim()
    for i in range(30):
        node.add_contact(OWN_ID ^ ((i + 1) << 120) ^ i, ("10.1.%d.1" % i, 4000), 0.0)
    node.datagrams_to_send(0.0)
    v, x = ("203.0.113.50", 53), in_bucket(0, 0xBAD)
    node.receive_datagram(request(x), v, 1.0)
    [probe] = [m for m, dst in sent(node, 1.0) if type(m) is RouteRequest and dst == v]
    assert probe.target != x and probe.size == REQUEST_SIZE
    node.receive_datagram(encode_response(RouteResponse(x, x, ()), ipv4_to_wire), v, 1.01)
    assert x not in table_ids(node) and not node.routing.is_validated(v)
    assert node.drop_counts() == {"unsolicited": 1}
    sent_bytes = got = 0
    for i in range(50):
        data = request(OWN_ID ^ (7 << 100) ^ i, 999 + i)
        node.receive_datagram(data, v, 2.0 + i * 0.05)
        sent_bytes += len(data)
        got += sum(len(d) for d, dst in node.datagrams_to_send(2.0 + i * 0.05) if dst == v)
    assert got <= 3 * sent_bytes  # was 13.7x

    many = victim()
    for i in range(80):  # 80 (ID, silent address) pairs, 2 blind datagrams each
        xi, vi = in_bucket(0, i), ("203.0.113.%d" % (i + 1), 9999)
        many.receive_datagram(request(xi), vi, i * 0.01)
        many.receive_datagram(encode_response(RouteResponse(xi, xi, ()), ipv4_to_wire), vi,
                              i * 0.01 + 0.001)
        many.datagrams_to_send(i * 0.01)
    assert table_ids(many) == set() and many.best_peers(100) == []

    moved = victim()
    x3, old, v3 = in_bucket(3, 42), ("10.7.7.7", 4000), ("203.0.113.200", 9)
    moved.add_contact(x3, old, 0.0)
    moved.routing.table.failed(moved.routing.registry.intern(x3, old))  # one lost datagram
    moved.receive_datagram(request(x3), v3, 1.0)
    assert any(dst == v3 and type(m) is RouteRequest for m, dst in sent(moved, 1.0))  # probed
    moved.receive_datagram(encode_response(RouteResponse(x3, x3, ()), ipv4_to_wire), v3, 1.001)
    assert held(moved) == {(x3, old)}  # not moved to the silent address


def test_a_malicious_contact_cannot_plant_silent_addresses_through_a_lookup():
    """Review M1, second vector (/tmp/poc/p10): a contact answers a lookup with (Xi, Vi) for
    silent addresses and forges each Vi's answer, knowing the lookup's target. The lookup still
    uses them; the table takes none and no Vi is validated (it would need Vi's probe answer)."""
    node = victim()
    m_id, m = OWN_ID ^ (1 << 159) ^ 5, ("198.51.100.9", 4000)
    node.add_contact(m_id, m, 0.0)
    node.datagrams_to_send(0.0)
    target = OWN_ID ^ (1 << 158) ^ 12345
    node.find_closest(target, 1.0)
    forged = [(target ^ (i + 1), ("203.0.113.%d" % (i + 1), 9)) for i in range(8)]
    claimed = {addr: x for x, addr in forged}
    now, asked = 1.0, set()
    for _ in range(4):
        for msg, dst in sent(node, now):
            if type(msg) is not RouteRequest:
                continue
            if dst == m:
                node.receive_datagram(encode_response(RouteResponse(m_id, msg.target, forged),
                                                      ipv4_to_wire), m, now)
            elif dst in claimed:  # the forger knows the lookup's target, not our probe's
                asked.add(dst)
                node.receive_datagram(encode_response(RouteResponse(claimed[dst], target, forged),
                                                      ipv4_to_wire), dst, now)
        now += 0.01
    assert asked  # the lookup did ask the planted addresses (the lookup is unchanged)
    assert held(node) == {(m_id, m)}
    assert not any(node.routing.is_validated(addr) for _, addr in forged)


def test_a_forged_request_flood_does_not_starve_honest_newcomers():
    """Review S4 (/tmp/poc/p7): 256 probe slots, each held for the request timeout, let ~300
    forged requests a second keep every honest newcomer out. Stateless probes hold nothing; the
    probe meter matches the request meter, so what starves probes starves requests already."""
    node = victim()
    rng = Random(3)
    admitted = newcomers = 0
    for step in range(300):  # 30 s, 900 forged requests a second from random silent addresses
        now = step * 0.1
        for _ in range(90):
            addr = ("203.0.%d.%d" % (rng.randrange(256), rng.randrange(256)), 9)
            node.receive_datagram(request(rng.getrandbits(160), 1), addr, now)
        if step % 10 == 0:  # an honest newcomer each second, who answers its probe
            newcomers += 1
            hid, haddr = rng.getrandbits(160), ("10.9.%d.1" % newcomers, 4000)
            node.receive_datagram(request(hid, hid, 146), haddr, now)
            for msg, dst in sent(node, now):
                if dst == haddr and type(msg) is RouteRequest:
                    answer(node, msg, hid, haddr, now + 0.05)
            admitted += node.routing.table.find(hid) >= 0
        node.datagrams_to_send(now)
        node.handle_timer(now)
    assert newcomers == admitted == 30  # was 1 of 30
    assert "probe_limit" not in node.drop_counts()


def test_one_address_holds_one_id():
    """Review S2 (/tmp/poc/p1 a): 40 IDs claimed from one socket that answers every probe
    filled a bucket. One (IP, port) holds one ID; another ID there goes through the moved rule
    only once the entry there has failed."""
    node = victim()
    addr = ("10.0.0.66", 5004)
    for i in range(40):
        fake = in_bucket(0, i)
        node.receive_datagram(request(fake), addr, i * 2.0)  # one probe a second per address
        for msg, dst in sent(node, i * 2.0):
            if type(msg) is RouteRequest and dst == addr:
                answer(node, msg, fake, addr, i * 2.0 + 0.01)
    assert held(node) == {(in_bucket(0, 0), addr)}
    assert node.drop_counts() == {}  # the others were not even probed: the address is held
    table = node.routing.table
    table.failed(node.routing.registry.intern(in_bucket(0, 0), addr))  # the first ID goes quiet
    node.receive_datagram(request(in_bucket(0, 41)), addr, 100.0)
    [probe] = [m for m, dst in sent(node, 100.0) if type(m) is RouteRequest]
    answer(node, probe, in_bucket(0, 41), addr, 100.01)
    assert held(node) == {(in_bucket(0, 41), addr)}  # the address now answers as another ID


def test_forged_requests_do_not_keep_a_dead_entry_alive():
    """Review S3 (/tmp/poc/p1 b): observe cleared the failure count on a mere request, so
    forged requests from a dead entry's address kept it in the table and blocked the moved
    rule. Only an answer clears it now."""
    node = victim(RoutingSettings(refresh_on_join=False, max_failures=3))
    dead_id, dead = in_bucket(2, 9), ("10.0.0.99", 5004)
    node.add_contact(dead_id, dead, 0.0)
    handle = node.routing.registry.intern(dead_id, dead)
    table = node.routing.table
    for i in range(10):
        table.failed(handle) if handle in table else None
        node.receive_datagram(request(dead_id), dead, 1.0 + i)  # forged from the dead address
        node.datagrams_to_send(1.0 + i)
    assert table.find(dead_id) < 0


class PoisonMachine(RuleBasedStateMachine):
    """Requests claiming IDs from answering and silent addresses, probe answers (by the claimed
    ID or another), timeouts: the table and caches hold only (ID, address) pairs that answered
    a probe by that ID from that address; probes stay one a second per address and metered."""

    HONEST = [("10.0.0.%d" % i, 5004) for i in range(1, 4)]
    SILENT = [("203.0.113.%d" % i, 6666) for i in range(1, 4)]

    def __init__(self):
        super().__init__()
        self.node = victim(RoutingSettings(refresh_on_join=False, k=3, replacement_cache=2,
                                           probe_rate=0.5, probe_burst=4))
        self.now = 0.0
        self.probes_sent = 0
        self.outstanding: list[tuple[RouteRequest, tuple, int]] = []  # (probe, address, claimed)
        self.answered: set[tuple[int, tuple]] = set()

    def collect(self, claimed: int = -1) -> None:
        registry = self.node.routing.registry
        entries = {registry.addrs[h]: registry.ids[h] for h in self.node.routing.table.handles()}
        for msg, dst in sent(self.node, self.now):
            if type(msg) is RouteRequest:
                # a claim's probe, or an address check's probe of an entry's own address
                probed = claimed if claimed >= 0 else entries[dst]
                assert msg.size == REQUEST_SIZE
                assert msg.target == probe_target(self.node, dst, probed, self.now)
                self.outstanding.append((msg, dst, probed))
                self.probes_sent += 1

    @rule(low=st.integers(0, 11), bucket=st.integers(0, 2), honest=st.booleans(),
          which=st.integers(0, 2), padding=st.sampled_from((0, 146)))
    def request(self, low, bucket, honest, which, padding):
        addr = (self.HONEST if honest else self.SILENT)[which]
        claimed = in_bucket(bucket, low)
        self.node.receive_datagram(request(claimed, padding=padding), addr, self.now)
        self.collect(claimed)

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data(), by_claimed_id=st.booleans())
    def answer_a_probe(self, data, by_claimed_id):
        honest = [o for o in self.outstanding if o[1] in self.HONEST]
        if not honest:
            return
        probe, addr, claimed = data.draw(st.sampled_from(honest))
        responder = claimed if by_claimed_id else claimed ^ 1
        self.now += 0.01
        answer(self.node, probe, responder, addr, self.now)
        if by_claimed_id:
            self.outstanding.remove((probe, addr, claimed))
            self.answered.add((responder, addr))
        self.collect()

    @rule()
    def time_passes(self):
        self.now += SETTINGS.request_timeout + 0.01
        self.node.handle_timer(self.now)
        self.outstanding.clear()  # stale: an answer to one no longer counts as an honest one
        self.collect()

    @invariant()
    def only_answered_pairs_are_held(self):
        registry = self.node.routing.registry
        held = {(registry.ids[h], registry.addrs[h]) for h in self.node.routing.table.handles()}
        assert held <= self.answered
        assert all(addr in self.HONEST for _, addr in held)

    @invariant()
    def probes_are_bounded(self):
        assert self.probes_sent <= 4 + 0.5 * self.now + 1e-9  # the meter
        by_addr = [a for _, a, _ in self.outstanding]
        assert len(by_addr) == len(set(by_addr))  # one a second per address


TestPoisonMachine = PoisonMachine.TestCase
TestPoisonMachine.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


def test_a_flood_of_fresh_ids_from_one_address_walks_its_ids_about_once_a_second(monkeypatch):
    """Issue 15's finding: the one-ID-per-address check walked every ID ever seen at the
    request's address, per request (450 forged requests a second from one address, each with a
    fresh ID, under the per-source limit: 3.9 s of CPU a second after 12 s). While that address
    may not be probed anyway, its requests skip the walk; the answers are unchanged."""
    node = victim()
    walked = []
    holder = type(node.routing)._address_holder

    def counting(self, handle):
        walked.append(len(self.registry.handles_at(self.registry.addrs[handle])))
        return holder(self, handle)

    monkeypatch.setattr(type(node.routing), "_address_holder", counting)
    answers = probes = 0
    for i in range(450 * 12):
        now = i / 450
        node.receive_datagram(request(in_bucket(i % 100, i)), SILENT, now)
        for data, _ in node.datagrams_to_send(now):
            answers += data[0] == ROUTE_RES
            probes += data[0] == ROUTE_REQ
    assert answers == 450 * 12  # every request answered, as before
    assert probes <= 13  # one probe a second at most
    assert len(walked) <= 8 + 2 * 13  # the walks: the first few IDs, then about one a second
    assert sum(walked) < 50_000  # not O(n^2): 5,400 walks of up to 5,400 IDs was 14.6 million
    assert table_ids(node) == set()
