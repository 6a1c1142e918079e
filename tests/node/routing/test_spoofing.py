"""Address spoofing played against one node, sans-I/O: requests that claim a table entry's ID from
another address never move the entry while its address answers. The claimed address gets a bare,
unguessable address probe of its own; only an answer to it there can move the entry: at once if
the entry's address has failed a request, else after the old address's check (one per entry
every ADDRESS_CHECK_INTERVAL: address_check_probes probes address_check_spacing apart) goes
unanswered to the request timeout of its last probe (a node restarted on another port). Requests (forgeable) never clear a failure; only answers do."""

from __future__ import annotations

from dataclasses import replace
from random import Random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.table import ADDRESS_CHECK_INTERVAL
from kadtalk.node.routing.messages import (
    REQUEST_SIZE,
    ROUTE_REQ,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.routing.contacts import ipv4_from_wire, ipv4_to_wire
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False, max_failures=1000, request_timeout=1.0,
                           refresh_interval=1e9)
SERVER_ID = 0x5 << 156
VICTIM_ID = 0xA << 156
VICTIM = ("10.0.0.2", 5004)
MOVED = ("10.0.0.3", 5004)
ATTACKER = ("203.0.113.9", 6666)


def server() -> Node:
    node = Node(SERVER_ID, ContactRegistry(), Random(1), SETTINGS, 0.0)
    assert node.add_contact(VICTIM_ID, VICTIM, 0.0)
    return node


def entry(node: Node) -> tuple | None:
    """The address the server's table holds for the victim's ID."""
    handle = node.routing.table.find(VICTIM_ID)
    return None if handle < 0 else node.routing.registry.addrs[handle]


def claim(node: Node, addr, now: float) -> list[tuple[bytes, tuple]]:
    """A padded ROUTE_REQ claiming the victim's ID from `addr`; what the server sends back."""
    node.receive_datagram(encode_request(RouteRequest(VICTIM_ID, 1234), 146), addr, now)
    return node.datagrams_to_send(now)


def requests(out, addr) -> list[RouteRequest]:
    found = []
    for data, dst in out:
        if dst == addr and data[0] == ROUTE_REQ:
            found.append(decode(data, ipv4_from_wire)[0])
    return found


def answer_as_victim(node: Node, out, addr, now: float) -> int:
    """Answer every ROUTE_REQ in `out` sent to `addr` as the victim would; return how many."""
    reqs = requests(out, addr)
    for req in reqs:
        reply = encode_response(RouteResponse(VICTIM_ID, req.target, ()), ipv4_to_wire)
        node.receive_datagram(reply, addr, now)
    return len(reqs)


def fail_old_address(node: Node, now: float) -> float:
    """A lookup asks the victim's old address, which no longer answers; return the time after."""
    node.find_closest(VICTIM_ID, now)
    assert requests(node.datagrams_to_send(now), VICTIM)
    now += SETTINGS.request_timeout + 0.01
    node.handle_timer(now)
    node.datagrams_to_send(now)
    return now


def test_claims_from_a_silent_forged_source_change_nothing_and_check_nothing():
    node = server()
    for step in range(50):
        out = claim(node, ATTACKER, float(step))
        assert {dst for _, dst in out} == {ATTACKER}  # the answer and a probe, nothing to VICTIM
        assert all(r.size == REQUEST_SIZE for r in requests(out, ATTACKER))  # bare probes
    assert entry(node) == VICTIM
    assert node.routing.table.failures(node.routing.table.find(VICTIM_ID)) == 0
    assert node.routing.table.address_checks == 0  # the forged source never answered its probe


def test_restart_on_another_port_the_new_address_holds_within_the_check_window():
    """H2's defect: the victim restarted at MOVED (same ID), its old address is silent and
    nothing else asks it. Its first request from MOVED draws a probe; its answer starts the old
    address's check: address_check_probes probes, address_check_spacing apart; none answered
    within the request timeout of the last, MOVED takes the place (a bounded time)."""
    node = server()
    now = 5.0
    out = claim(node, MOVED, now)
    assert answer_as_victim(node, out, MOVED, now + 0.05) == 1  # the new address answers
    at = now + 0.05
    spacing, probes = SETTINGS.address_check_spacing, SETTINGS.address_check_probes
    assert probes >= 2
    for sent in range(probes):
        [check] = requests(node.datagrams_to_send(at), VICTIM)  # the old one is checked
        assert check.size == REQUEST_SIZE and entry(node) == VICTIM
        wait = node.get_timer() - at
        if sent < probes - 1:  # a spacing drawn between 0.5x and 1.5x
            assert 0.5 * spacing <= wait <= 1.5 * spacing
        else:
            assert wait == SETTINGS.request_timeout
        node.handle_timer(at + wait - 0.01)
        assert entry(node) == VICTIM and not requests(node.datagrams_to_send(at + wait - 0.01),
                                                      VICTIM)
        at += wait
        node.handle_timer(at)  # silent: it restarted elsewhere
    assert at <= now + 0.05 + (probes - 1) * 1.5 * spacing + SETTINGS.request_timeout + 1e-9
    assert entry(node) == MOVED
    assert node.routing.table.failures(node.routing.table.find(VICTIM_ID)) == 0
    assert node.routing.table.address_checks == 1


def test_a_check_does_not_move_the_entry_to_an_address_another_answering_id_took_meanwhile():
    """One address holds one ID: if another ID answers a probe at the claimed address while
    the check runs, the entry stays (the check's candidate was never a table entry)."""
    node = Node(SERVER_ID, ContactRegistry(), Random(1), replace(SETTINGS, request_timeout=3.0))
    node.add_contact(VICTIM_ID, VICTIM, 0.0)
    out = claim(node, MOVED, 5.0)
    answer_as_victim(node, out, MOVED, 5.01)
    assert requests(node.datagrams_to_send(5.01), VICTIM)  # the check is running
    other = SERVER_ID ^ (1 << 100)
    node.receive_datagram(encode_request(RouteRequest(other, 1), 146), MOVED, 6.2)
    [probe] = requests(node.datagrams_to_send(6.2), MOVED)  # MOVED's probe meter: 1/s
    node.receive_datagram(encode_response(RouteResponse(other, probe.target, ()), ipv4_to_wire),
                          MOVED, 6.3)
    assert node.routing.table.find(other) >= 0
    for t in range(7, 60):  # the old address stays silent through the whole check
        node.handle_timer(float(t))
        node.datagrams_to_send(float(t))
    assert node.routing.table._checks[node.routing.table.find(VICTIM_ID)][1] == -1  # it ended
    assert entry(node) == VICTIM


def test_a_forger_answering_at_its_own_address_costs_one_check_per_interval_and_wins_nothing():
    """The ID hijack: a forger receives at ATTACKER and answers every probe there as the
    victim, claiming its ID once a second for 20 minutes, while the victim still answers at its
    address. The entry never moves; the victim's address gets one probe per interval."""
    node = server()
    checks = probes = 0
    minutes = 20
    for step in range(minutes * 60):
        now = float(step)
        out = claim(node, ATTACKER, now)
        probes += answer_as_victim(node, out, ATTACKER, now + 0.01)  # the forger answers
        more = node.datagrams_to_send(now + 0.01)
        checks += answer_as_victim(node, more, VICTIM, now + 0.02)  # so does the victim
        node.handle_timer(now + 0.5)
        node.datagrams_to_send(now + 0.5)
        assert entry(node) == VICTIM
    bound = minutes * 60 / ADDRESS_CHECK_INTERVAL + 1
    assert 1 <= checks <= bound and node.routing.table.address_checks == checks
    assert probes <= bound  # the forger's own address is probed no more often


def test_claim_after_the_old_address_failed_is_believed_only_if_the_claimer_answers():
    node = server()
    now = fail_old_address(node, 0.0)
    out = claim(node, ATTACKER, now)
    [probe] = requests(out, ATTACKER)
    assert probe.size == REQUEST_SIZE  # bare: no amplification
    routing = node.routing  # the target: a keyed hash of address and claimed ID, not the ID
    assert probe.target == routing._probe_target(routing._probe_secrets(now)[0], ATTACKER, VICTIM_ID)
    assert probe.target != VICTIM_ID
    assert entry(node) == VICTIM  # a claim alone moves nothing
    # a second claim within the second does not send a second probe
    assert requests(claim(node, ATTACKER, now + 0.1), ATTACKER) == []
    now += SETTINGS.request_timeout + 0.01
    node.handle_timer(now)  # the probe is not answered (a forged source address, say)
    assert entry(node) == VICTIM


def test_the_victim_at_its_new_address_takes_the_place_once_it_answers():
    node = server()
    now = fail_old_address(node, 0.0)
    out = claim(node, MOVED, now)
    assert entry(node) == VICTIM
    assert answer_as_victim(node, out, MOVED, now + 0.05) == 1
    assert entry(node) == MOVED  # the old address failed already: no check needed
    assert node.routing.table.address_checks == 0
    # and the old address, should anyone claim from it now, is the one that must prove itself:
    # probed, and its answer checks MOVED, which answers: nothing moves
    out = claim(node, VICTIM, now + 1)
    assert answer_as_victim(node, out, VICTIM, now + 1.01) == 1
    assert answer_as_victim(node, node.datagrams_to_send(now + 1.01), MOVED, now + 1.02) == 1
    node.handle_timer(now + 3)
    assert entry(node) == MOVED


def test_an_answer_from_the_old_address_cancels_the_move_a_request_does_not():
    node = server()
    now = fail_old_address(node, 0.0)
    out = claim(node, MOVED, now)
    # a request "from" the old address proves nothing (forgeable): the entry still counts as
    # failed (review S3)
    node.receive_datagram(encode_request(RouteRequest(VICTIM_ID, 99), 146), VICTIM, now + 0.01)
    node.datagrams_to_send(now + 0.01)
    assert node.routing.table.failures(node.routing.table.find(VICTIM_ID)) == 1
    # the victim answers a lookup at its old address before the new one answers the probe
    node.find_closest(VICTIM_ID, now + 0.02)
    assert answer_as_victim(node, node.datagrams_to_send(now + 0.02), VICTIM, now + 0.03)
    answer_as_victim(node, out, MOVED, now + 0.05)
    assert entry(node) == VICTIM


class SpoofMachine(RuleBasedStateMachine):
    """Random interleavings of the entry's address answering or failing, claims from two other
    addresses that do or do not answer, and time passing; the model says where the entry must
    be and when the claimed address is probed (and the old one checked)."""

    ADDRS = (VICTIM, MOVED, ATTACKER)

    def __init__(self):
        super().__init__()
        self.node = server()
        self.now = 0.0
        self.current = VICTIM
        self.failing = False  # the current address failed its last request
        self.checked_until = -1.0  # no check of the entry before this time
        self.checks = 0

    def settle(self, answering) -> list[tuple]:
        """Answer what the node sends to `answering` addresses until it sends nothing more;
        then the request timeout passes. Return the (destination, request) pairs seen."""
        seen = []
        out = self.node.datagrams_to_send(self.now)
        while out:
            seen += [(addr, r) for addr in self.ADDRS for r in requests(out, addr)]
            for addr in self.ADDRS:
                if answering.get(addr):
                    answer_as_victim(self.node, out, addr, self.now + 0.01)
            out = self.node.datagrams_to_send(self.now + 0.01)
        self.now += SETTINGS.request_timeout + 0.02
        self.node.handle_timer(self.now)
        self.node.datagrams_to_send(self.now)
        return seen

    @rule(alive=st.booleans())
    def lookup_asks_the_entry(self, alive):
        self.node.find_closest(VICTIM_ID, self.now)
        seen = self.settle({self.current: alive})
        assert any(addr == self.current for addr, _ in seen)
        self.failing = not alive

    @rule(addr=st.sampled_from(ADDRS), answers=st.booleans(), old_answers=st.booleans())
    def claim_from_another_address(self, addr, answers, old_answers):
        start = self.now
        claim_out = claim(self.node, addr, self.now)
        probed = bool(requests(claim_out, addr))
        may_check = not self.failing and start >= self.checked_until
        assert probed == (addr != self.current and (self.failing or may_check))
        for a in self.ADDRS:
            if a == addr and answers:
                answer_as_victim(self.node, claim_out, a, self.now + 0.005)
        seen = self.settle({self.current: old_answers})
        checked = [a for a, _ in seen if a == self.current]
        if probed and answers and self.failing:
            assert not checked
            self.current, self.failing = addr, False
        elif probed and answers:
            if not old_answers:  # silent: the check's later probes, spacing apart
                for _ in range(SETTINGS.address_check_probes - 1):
                    self.now += 1.5 * SETTINGS.address_check_spacing
                    self.node.handle_timer(self.now)
                    checked += [a for a, _ in self.settle({}) if a == self.current]
            # one probe of the old address if it answers, else every probe of the check
            assert len(checked) == (1 if old_answers else SETTINGS.address_check_probes)
            self.checks += 1
            self.checked_until = start + ADDRESS_CHECK_INTERVAL
            if not old_answers:
                self.current = addr
        else:
            assert not checked

    @rule()
    def time_passes(self):
        self.now += ADDRESS_CHECK_INTERVAL / 2
        self.node.handle_timer(self.now)
        self.node.datagrams_to_send(self.now)

    @invariant()
    def entry_is_where_the_model_says(self):
        assert entry(self.node) == self.current
        assert self.node.routing.table.address_checks == self.checks


TestSpoofMachine = SpoofMachine.TestCase
TestSpoofMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
