"""Validation probes (protocol.md section 5.4; issue 15 item 1, session 11), sans-I/O with
explicit `now`.

Since `cache_probes=2` a server whose bucket is full and whose replacement cache holds two
contacts no longer probes an unknown requester for the table, so that requester's address was
never validated and its bare 41-byte requests got 3-contact answers for ever (the nanotalk case
of issue 15; udp_routing's default-limits row: 4.3-4.8 contacts an answer). Now such a
requester's second cut answer comes with a validation probe: its echo validates the address and
admits nobody. What the rule must keep: a probe and a cut answer within 3x the request, no probe
for a padded request or a one-off request, one probe an address a `validation_retry`, at most
`validation_rate` a second toward forged sources, and a table and cache untouched by it."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire, ipv4_to_wire
from kadtalk.node.routing.layer import FULL_ANSWER_PADDING, VALIDATED_LIMIT, RoutingSettings
from kadtalk.node.routing.messages import (
    CONTACT_SIZE,
    REQUEST_SIZE,
    RESPONSE_HEADER,
    ROUTE_REQ,
    ROUTE_RES,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False)  # the defaults: cache_probes=2, limits on
OWN_ID = 0x5 << 156
PEER = ("192.0.2.7", 4000)  # a nanotalk peer: bare requests only
FULL = RESPONSE_HEADER + 20 * CONTACT_SIZE  # 561


def far_id(low: int) -> int:
    """An ID in bucket 0 (the far half), which `server` fills, cache included."""
    return OWN_ID ^ (1 << 159) ^ (low & ((1 << 159) - 1))


def server(settings: RoutingSettings = SETTINGS) -> Node:
    """A node whose bucket 0 is full and whose cache holds more than `cache_probes` contacts:
    an unknown requester there draws no probe for the table."""
    node = Node(OWN_ID, ContactRegistry(), Random(1), settings, 0.0)
    rng = Random(2)
    for i in range(60):
        node.add_contact(far_id(rng.getrandbits(159)), ("10.1.0.%d" % (i + 1), 5004), 0.0)
    for i in range(40):  # and some nearer buckets
        node.add_contact(OWN_ID ^ rng.getrandbits(150), ("10.2.0.%d" % (i + 1), 5004), 0.0)
    node.datagrams_to_send(0.0)
    table = node.routing.table
    assert len(table.bucket(0)) == 20 and len(table.replacements(0)) >= settings.cache_probes
    return node


def bare(origin: int, target: int = 1234, padding: int = 0) -> bytes:
    return encode_request(RouteRequest(origin, target), padding)


def exchange(node: Node, data: bytes, addr, now: float) -> tuple[bytes, list[RouteRequest]]:
    """The answer to `data` from `addr` and the probes sent with it (bare requests, to `addr`)."""
    node.receive_datagram(data, addr, now)
    out = node.datagrams_to_send(now)
    assert all(dst == addr for _, dst in out)
    [reply] = [d for d, _ in out if d[0] == ROUTE_RES]
    probes = [d for d, _ in out if d[0] == ROUTE_REQ]
    assert len(probes) <= 1 and all(len(p) == REQUEST_SIZE for p in probes)
    return reply, [decode(p, ipv4_from_wire)[0] for p in probes]


def echo(node: Node, probe: RouteRequest, responder: int, addr, now: float) -> None:
    reply = encode_response(RouteResponse(responder, probe.target, ()), ipv4_to_wire)
    node.receive_datagram(reply, addr, now)


def contacts(reply: bytes) -> int:
    return (len(reply) - RESPONSE_HEADER) // CONTACT_SIZE


def table_state(node: Node) -> tuple:
    table = node.routing.table
    return tuple((tuple(table.bucket(i)), tuple(table.replacements(i)))
                 for i in range(table.bucket_count()))


def test_a_peer_that_keeps_asking_is_validated_and_then_gets_full_answers():
    """Issue 15's nanotalk case: before, every answer had 3 contacts."""
    node, peer_id = server(), far_id(77)
    before = table_state(node)
    reply, probes = exchange(node, bare(peer_id, 1), PEER, 1.0)
    assert contacts(reply) == 3 and probes == []  # a first request: no probe of any kind
    reply, [probe] = exchange(node, bare(peer_id, 2), PEER, 2.0)
    assert contacts(reply) == 1 and len(reply) + REQUEST_SIZE <= 3 * REQUEST_SIZE  # 108 <= 123
    assert probe.origin == OWN_ID and not node.routing.is_validated(PEER)
    echo(node, probe, peer_id, PEER, 2.05)
    assert node.routing.is_validated(PEER)
    reply, probes = exchange(node, bare(peer_id, 3), PEER, 3.0)
    assert len(reply) == FULL and probes == []
    assert table_state(node) == before  # validated, admitted nowhere: the cache as it was
    assert node.drop_counts() == {}


def test_without_validation_probes_the_peer_keeps_getting_three_contacts():
    """`validation_rate=0`: the rule before session 11 (what the test above fixes)."""
    node, peer_id = server(RoutingSettings(refresh_on_join=False, validation_rate=0)), far_id(77)
    for i in range(30):
        reply, probes = exchange(node, bare(peer_id, i), PEER, 1.0 + i)
        assert contacts(reply) == 3 and probes == []
    assert not node.routing.is_validated(PEER)


def test_a_table_entry_never_validated_is_validated_by_its_requests():
    """protocol.md 5.4 listed it as not covered: an entry added by add_contact (never probed)
    kept getting 3 contacts for its bare requests; its second one now draws the probe."""
    node = server()
    entry = node.routing.table.bucket(0)[0]
    entry_id, addr = node.routing.registry.ids[entry], node.routing.registry.addrs[entry]
    assert contacts(exchange(node, bare(entry_id, 1), addr, 1.0)[0]) == 3
    reply, [probe] = exchange(node, bare(entry_id, 2), addr, 1.5)
    echo(node, probe, entry_id, addr, 1.6)
    assert len(exchange(node, bare(entry_id, 3), addr, 2.0)[0]) == FULL


def test_padded_requests_draw_no_validation_probe():
    """kadtalk's own requests (187 bytes; ROUTE6's 288) get a full answer without one."""
    node = server()
    for i in range(5):
        reply, probes = exchange(node, bare(far_id(5), i, FULL_ANSWER_PADDING), PEER, 1.0 + i)
        assert len(reply) == FULL and probes == []
    assert node.routing.limited_answers == 0


def test_only_the_echo_validates_and_it_admits_nobody():
    node, peer_id = server(), far_id(78)
    exchange(node, bare(peer_id, 1), PEER, 1.0)
    _, [probe] = exchange(node, bare(peer_id, 2), PEER, 2.0)
    routing = node.routing
    # not a table probe's target: its echo cannot be taken for one (which would admit)
    assert probe.target != routing._probe_target(routing._probe_secrets(2.0)[0], PEER, peer_id)
    before = table_state(node)
    for target in (probe.target ^ 1, probe.target ^ (1 << 159), 0):  # guesses
        echo(node, RouteRequest(OWN_ID, target), peer_id, PEER, 2.1)
    echo(node, probe, peer_id, ("192.0.2.8", 4000), 2.1)  # the echo from another address
    assert not routing.is_validated(PEER) and not routing.is_validated(("192.0.2.8", 4000))
    assert node.drop_counts() == {"unsolicited": 4}
    echo(node, probe, peer_id ^ 1, PEER, 2.2)  # the address answered: whatever ID it says
    assert routing.is_validated(PEER) and table_state(node) == before
    assert routing.table.find(peer_id) < 0 and routing.table.find(peer_id ^ 1) < 0


def test_an_unanswered_address_is_probed_once_a_retry_period():
    """A silent (forged) address that keeps asking: one probe a `validation_retry` (10 s)."""
    node, peer_id = server(), far_id(79)
    retry = SETTINGS.validation_retry
    probes_at = []
    for i in range(1300):  # 10 requests a second for 130 s
        now = 1.0 + i * 0.1
        reply, probes = exchange(node, bare(peer_id, i), PEER, now)
        assert len(reply) + sum(len(encode_request(p)) for p in probes) <= 3 * REQUEST_SIZE
        probes_at += [now] * len(probes)
    assert probes_at[0] == 1.1  # the second request's
    assert all(retry <= b - a <= retry + 0.1 for a, b in zip(probes_at, probes_at[1:]))
    assert len(probes_at) == 1 + int((130.0 - 0.1) // retry)
    assert not node.routing.is_validated(PEER)


def test_a_forged_source_flood_draws_a_bounded_number_of_probes():
    """A flood of requests forged from many addresses (nobody answers there): sources seen
    once draw no probe at all; sources repeated draw at most one each per retry period and at
    most `validation_rate` a second (plus as many saved up) in all; memory stays bounded."""
    settings = RoutingSettings(refresh_on_join=False)
    node = server(settings)
    rng = Random(3)
    sent = probes = 0
    per_source: dict = {}
    seconds = 10.0
    for i in range(5000):  # 500 a second from 5,000 addresses, each once
        now = 1.0 + i * seconds / 5000
        addr = ("198.51.%d.%d" % (i // 250, i % 250 + 1), 1024 + i)
        _, out = exchange(node, bare(far_id(rng.getrandbits(159)), i), addr, now)
        probes += len(out)
    assert probes == 0
    start = 20.0
    for i in range(20000):  # then 500 a second from 2,000 addresses, each 10 times
        now = start + i * 40.0 / 20000
        addr = ("203.0.%d.%d" % (i % 2000 // 250, i % 250 + 1), 2000 + i % 2000)
        data = bare(far_id(rng.getrandbits(159)), i)
        reply, out = exchange(node, data, addr, now)
        sent += 1
        assert len(reply) + REQUEST_SIZE * len(out) <= 3 * len(data)
        for _ in out:
            per_source[addr] = per_source.get(addr, 0) + 1
            probes += 1
    assert max(per_source.values()) <= 40.0 // settings.validation_retry  # one a retry
    assert probes <= settings.validation_rate * (1 + 40.0)  # the saved-up second and 40 s more
    assert probes >= 1000  # and the honest-looking repeats are probed
    assert len(node.routing._unvalidated) <= VALIDATED_LIMIT
    assert node.drop_counts().get("validation_limit", 0) > 0


class ValidationMachine(RuleBasedStateMachine):
    """Requests of any size from a few addresses at increasing times, answered or not: what
    goes to an address not validated before a request stays within 3x that request, a
    validation probe's echo validates without touching the table, and no other echo does."""

    ADDRS = [("192.0.2.%d" % i, 4000 + i) for i in range(1, 5)]

    def __init__(self):
        super().__init__()
        self.node = server()
        self.now = 1.0
        self.pending: dict = {}  # addr -> last probe sent there (table or validation)
        self.state = table_state(self.node)

    @rule(who=st.integers(0, 3), padding=st.sampled_from([0, 0, 0, 40, FULL_ANSWER_PADDING]),
          low=st.integers(0, 3), wait=st.floats(0.0, 30.0))
    def request(self, who, padding, low, wait):
        self.now += wait
        addr = self.ADDRS[who]
        validated = self.node.routing.is_validated(addr)
        data = bare(far_id(low * 1000 + who), int(self.now * 1000), padding)
        reply, probes = exchange(self.node, data, addr, self.now)
        if not validated:
            assert len(reply) + REQUEST_SIZE * len(probes) <= 3 * len(data)
        if probes:
            self.pending[addr] = (probes[0], far_id(low * 1000 + who))

    @rule(who=st.integers(0, 3), right=st.booleans())
    def answer(self, who, right):
        addr = self.ADDRS[who]
        if addr not in self.pending:
            return
        probe, claimed = self.pending.pop(addr)
        validated = self.node.routing.is_validated(addr)
        target = probe.target if right else probe.target ^ 7
        state = table_state(self.node)
        echo(self.node, RouteRequest(OWN_ID, target), claimed, addr, self.now)
        if not right:
            assert self.node.routing.is_validated(addr) == validated
            assert table_state(self.node) == state
        else:
            assert self.node.routing.is_validated(addr)

    @invariant()
    def table_and_caches_unchanged(self):
        # every requester's bucket (0) is full and its cache holds two: only validation probes
        # go out, and their echoes admit nobody
        assert table_state(self.node) == self.state


TestValidationMachine = ValidationMachine.TestCase
TestValidationMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@settings(max_examples=100, deadline=None)
@given(padding=st.integers(0, 200), gap=st.floats(0.0, 120.0))
def test_any_request_pair_stays_within_three_times(padding, gap):
    node = server()
    peer_id = far_id(9)
    for i, now in enumerate((1.0, 1.0 + gap)):
        data = bare(peer_id, i, padding)
        reply, probes = exchange(node, data, PEER, now)
        assert len(reply) + REQUEST_SIZE * len(probes) <= 3 * len(data)
