"""Address spoofing played against one node, sans-I/O: requests that claim a table entry's ID from
another address never move the entry while its address answers; once it has failed a request,
the claimed address gets a bare, unguessable address probe of its own, and only an answer to it
there moves the entry. Requests (forgeable) never clear a failure; only answers do."""

from __future__ import annotations

from random import Random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
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

SETTINGS = RoutingSettings(refresh_on_join=False, max_failures=1000, request_timeout=1.0)
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


def test_claim_while_the_victim_answers_changes_nothing_and_sends_no_probe():
    node = server()
    for step in range(50):
        out = claim(node, ATTACKER, float(step))
        assert [dst for _, dst in out] == [ATTACKER]  # the answer, nothing else
        assert requests(out, ATTACKER) == []
    assert entry(node) == VICTIM
    assert node.routing.table.failures(node.routing.table.find(VICTIM_ID)) == 0


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
    assert entry(node) == MOVED
    # and the old address, should anyone claim from it now, is the one that must prove itself
    assert requests(claim(node, VICTIM, now + 1), VICTIM) == []
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
    """Random interleavings of the entry's address answering or failing, and claims from two
    other addresses that do or do not answer; the model says where the entry must be."""

    ADDRS = (VICTIM, MOVED, ATTACKER)

    def __init__(self):
        super().__init__()
        self.node = server()
        self.now = 0.0
        self.current = VICTIM
        self.failing = False  # the current address failed its last request
        self.alive = {VICTIM: True, MOVED: True, ATTACKER: True}

    def settle(self, out, answering) -> None:
        for addr in self.ADDRS:
            if answering.get(addr):
                answer_as_victim(self.node, out, addr, self.now + 0.01)
        self.node.datagrams_to_send(self.now)
        self.now += SETTINGS.request_timeout + 0.02
        self.node.handle_timer(self.now)
        self.node.datagrams_to_send(self.now)

    @rule(alive=st.booleans())
    def lookup_asks_the_entry(self, alive):
        self.node.find_closest(VICTIM_ID, self.now)
        out = self.node.datagrams_to_send(self.now)
        assert requests(out, self.current)
        self.settle(out, {self.current: alive})
        self.failing = not alive

    @rule(addr=st.sampled_from(ADDRS), answers=st.booleans())
    def claim_from_another_address(self, addr, answers):
        out = claim(self.node, addr, self.now)
        probed = bool(requests(out, addr))
        assert probed == (self.failing and addr != self.current)
        self.settle(out, {addr: answers})
        if probed and answers:
            self.current, self.failing = addr, False

    @invariant()
    def entry_is_where_the_model_says(self):
        assert entry(self.node) == self.current


TestSpoofMachine = SpoofMachine.TestCase
TestSpoofMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
