"""The reachability check (docs/protocol.md §20, "Reachability check"): PROBE_REQ to a helper,
PROBE_FWD to another of its contacts, PROBE back to where the request came from. Each NAT kind
of transport/memory.py, the abuse (a request or a forward naming a victim sends the victim
nothing), meters, counted drops, hypothesis over the parser, the §20 hex example and
docs/vectors/probe.json, explicit time throughout."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.stack import Node
from kadtalk.node.traversal import (
    PROBE,
    PROBE_ACK,
    PROBE_FWD,
    PROBE_REQ,
    SIZES,
    TRAVERSAL,
    Reachability,
)
from kadtalk.transport.memory import FilteringNat, MemoryNet, SymmetricNat, direct

R_PUBLIC, R_PRIVATE = ("203.0.113.5", 5004), ("10.0.0.5", 5004)
P, Q, OTHER = ("198.51.100.1", 5004), ("198.51.100.2", 5004), ("198.51.100.3", 5004)
VICTIM = ("192.0.2.66", 80)
VECTORS = Path(__file__).parents[2] / "docs" / "vectors" / "probe.json"


def node() -> Node:
    ident = Identity.generate()
    return Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=ident, traversal=True)


def world(kind: str, remember: bool = True) -> tuple[MemoryNet, Node, Any, Any]:
    """r behind `kind` (open: a public address; filtering; symmetric), helper p and prober q
    public. r knows p only; p knows r (at the address it sees r at) and q; q knows p. Returns
    the world, r, r's address in the world and where p sees it."""
    nat: Any = direct
    r_at = seen = R_PUBLIC
    if kind == "filtering":
        nat = FilteringNat()
        nat.add(R_PUBLIC)
    elif kind == "symmetric":
        nat = SymmetricNat()
        nat.add(R_PRIVATE, R_PUBLIC[0])
        r_at = R_PRIVATE
    net = MemoryNet(nat)
    r, p, q = node(), node(), node()
    if remember:
        r.traversal.remember_sent()
    for addr, n in ((r_at, r), (P, p), (Q, q)):
        net.attach(addr, n)
    r.add_contact(p.node_id, P, 0.0)
    r.probe_address([P], 0.0)  # r talks to p: p sees where r's datagrams come from
    net.service(r_at)
    net.run_until(0.5)
    seen = r.traversal.public
    p.add_contact(r.node_id, seen, 0.5)
    p.add_contact(q.node_id, Q, 0.5)
    q.add_contact(p.node_id, P, 0.5)
    return net, r, r_at, seen


def check(net: MemoryNet, r: Node, r_at: Any, helpers: list, until: float = 3.0) -> Reachability:
    r.traversal.check_reachability(helpers, net.now)
    net.service(r_at)
    net.run_until(until)
    return r.traversal.reachability()


def test_open_a_stranger_s_probe_gets_in_and_proves_endpoint_independent_filtering():
    net, r, r_at, _ = world("open")
    assert not r.traversal.independent
    found = check(net, r, r_at, [P])
    assert found == Reachability(asked=1, forwarded=1, strangers=1, known=0, unclear=0,
                                 started=0.5)
    assert r.traversal.independent  # the keep-alive plan follows (two peers)
    assert net.nodes[Q].traversal.stats["probe_sent"] == 1


def test_filtering_the_probe_is_forwarded_but_filtered_at_the_nat():
    net, r, r_at, _ = world("filtering")
    found = check(net, r, r_at, [P])
    assert (found.forwarded, found.arrived) == (1, 0)
    assert net.route.filtered == 1 and not r.traversal.independent


def test_symmetric_the_probe_goes_to_the_port_mapped_for_the_helper_and_is_filtered():
    net, r, r_at, seen = world("symmetric")
    assert seen[0] == R_PUBLIC[0] and seen[1] != R_PUBLIC[1]  # the NAT's port towards p
    r.add_contact(net.nodes[Q].node_id, Q, 0.5)
    r.probe_address([P, Q], net.now)  # two peers see two ports
    found = check(net, r, r_at, [P])
    assert (found.forwarded, found.arrived) == (1, 0) and r.traversal.symmetric


def test_a_probe_from_a_host_we_sent_to_proves_nothing_even_after_watching_ended():
    net, r, r_at, _ = world("filtering")
    r.traversal._stop_watching()  # as past `watch_limit`: `remember_sent` goes on
    assert not r.traversal.watching
    r.receive_datagram(bytes((TRAVERSAL, PROBE_ACK)) + bytes(8), P, 0.6)  # no check: unsolicited
    r.traversal.datagrams_to_send(0.6)
    r.traversal.probe([Q], net.now)  # r sends to q (its filter now admits q)
    net.service(r_at)
    found = check(net, r, r_at, [P])
    assert (found.known, found.strangers) == (1, 0)
    assert r.drop_counts()["probe_unsolicited"] == 1


def test_the_memory_keeps_the_latest_hosts_only():
    n = node()
    n.traversal.remember_sent(limit=2)
    n.traversal._stop_watching()  # watching ends: only the memory tells
    for addr in (Q, ("198.51.100.4", 1), ("198.51.100.4", 2), P):  # Q, then two other hosts
        n.traversal.sent([(b"x", addr)])
    assert set(n.traversal._recent) == {bytes((198, 51, 100, 4)), bytes((198, 51, 100, 1))}
    n.traversal.check_reachability([P], 0.0)
    nonce = next(iter(n.traversal._checks))
    n.receive_datagram(bytes((TRAVERSAL, PROBE)) + nonce, Q, 0.1)  # Q: forgotten, a stranger
    assert n.traversal.reachability().strangers == 1


def test_without_memory_of_where_it_sent_a_node_cannot_tell_and_says_so():
    net, r, r_at, _ = world("open", remember=False)
    r.traversal._stop_watching()  # watching ended and nothing remembered
    found = check(net, r, r_at, [P])
    assert (found.unclear, found.strangers, found.known) == (1, 0, 0)


def test_abuse_a_request_naming_a_victim_sends_the_victim_nothing():
    """The PROBE goes to the source of the PROBE_REQ as the helper sees it, never to an address
    a datagram names: a victim's address in the request's bytes is ignored, a stranger (or a
    forged source not in the helper's table) draws nothing at all, and a PROBE_FWD naming the
    victim is obeyed only from a contact, within the meter."""
    net, r, r_at, seen = world("open")
    p = net.nodes[P]
    sent: list = []
    route = net.route

    def tap(packet, now):
        sent.append(packet)
        return route(packet, now)

    net.route = tap
    wire = bytes(map(int, VICTIM[0].split("."))) + VICTIM[1].to_bytes(2, "big")
    naming = bytes((TRAVERSAL, PROBE_REQ)) + bytes(8) + wire + bytes(4)  # victim in the padding
    p.receive_datagram(naming, seen, 1.0)  # from the real requester: its PROBE goes to it
    p.receive_datagram(naming, VICTIM, 1.0)  # a forged source (the victim's): nothing
    p.receive_datagram(naming, OTHER, 1.0)  # a stranger: nothing
    net.service(P)
    net.run_until(2.0)
    assert all(packet.dst != VICTIM and packet.dst != OTHER for packet in sent)
    probe = bytes((TRAVERSAL, PROBE))  # the first byte too: a routing datagram's second is an ID's
    assert [packet.dst for packet in sent if packet.payload[:2] == probe] == [seen]
    assert p.drop_counts()["probe_unvalidated"] == 2
    q = net.nodes[Q]
    forward = bytes((TRAVERSAL, PROBE_FWD)) + wire + bytes(8)
    q.receive_datagram(forward, OTHER, 2.0)  # a PROBE_FWD from a stranger: nothing
    assert q.datagrams_to_send(2.0) == [] and q.drop_counts()["probe_fwd_stranger"] == 1
    for i in range(100):  # from a contact (or its forged address): metered in all
        q.receive_datagram(forward, P, 3.0 + i / 1000)
    assert len(q.datagrams_to_send(3.1)) <= 20 + 1  # probe_burst, and 10/s over 0.1 s


def test_special_addresses_and_self_are_refused_and_unsolicited_answers_counted():
    net, r, r_at, seen = world("open")
    q = net.nodes[Q]
    for wire in (bytes(6), b"\xff" * 4 + b"\x13\x8c", bytes((224, 0, 0, 1, 0x13, 0x8c)),
                 bytes((198, 51, 100, 1, 0x13, 0x8c))):  # 0.0.0.0, broadcast, multicast, p
        q.receive_datagram(bytes((TRAVERSAL, PROBE_FWD)) + wire + bytes(8), P, 1.0)
    assert q.datagrams_to_send(1.0) == [] and q.drop_counts()["probe_refused"] == 4
    r.receive_datagram(bytes((TRAVERSAL, PROBE)) + bytes(8), OTHER, 1.0)  # no check running
    assert r.drop_counts()["probe_unsolicited"] == 1
    check(net, r, r_at, [P], until=1.0)
    nonce = next(iter(r.traversal._checks))
    r.receive_datagram(bytes((TRAVERSAL, PROBE_ACK)) + nonce, OTHER, 1.0)  # not the helper
    assert r.drop_counts()["probe_unsolicited"] == 2
    lonely = node()  # a helper with nobody else to ask
    lonely.add_contact(r.node_id, seen, 0.0)
    lonely.receive_datagram(bytes((TRAVERSAL, PROBE_REQ)) + bytes(18), seen, 0.0)
    assert lonely.datagrams_to_send(0.0) == [] and lonely.drop_counts()["probe_no_helper"] == 1
    for size in (19, 21, 15, 9, 11):  # every op has one size
        for op in (PROBE_REQ, PROBE_FWD, PROBE, PROBE_ACK):
            if size != SIZES[op]:
                q.receive_datagram(bytes((TRAVERSAL, op)) + bytes(size - 2), P, 5.0)
    assert q.datagrams_to_send(5.0) == [] and q.drop_counts()["malformed"] == 20


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([PROBE_REQ, PROBE_FWD, PROBE, PROBE_ACK]),
                          st.binary(max_size=24), st.booleans()), max_size=20))
def test_the_probe_parser_never_raises_and_a_stranger_draws_nothing(datagrams):
    """Whatever comes in: no exception; a stranger's datagram sends nothing anywhere; a
    contact's draws no more bytes back to it than it sent; every drop is counted once."""
    n = node()
    n.add_contact(777, P, 0.0)
    n.add_contact(778, Q, 0.0)
    n.traversal.check_reachability([P], 0.0)
    n.datagrams_to_send(0.0)
    for i, (op, body, from_contact) in enumerate(datagrams):
        data = bytes((TRAVERSAL, op)) + body
        src = P if from_contact else OTHER
        now = 0.1 * i
        n.receive_datagram(data, src, now)
        out = n.datagrams_to_send(now)
        if not from_contact:
            assert out == []
        assert sum(len(d) for d, to in out if to == src) <= len(data)
        assert all(len(d) <= SIZES[PROBE_FWD] for d, _ in out)
    assert sum(n.drop_counts().values()) <= len(datagrams)


def example() -> dict:
    """The §20 example, run through the layers: requester 203.0.113.5:5004 asks helper
    198.51.100.1:5004, whose contact 198.51.100.2:5004 probes back; nonce from the rng."""
    r, p, q = node(), node(), node()  # the nonce: random.Random(1)'s
    r.add_contact(p.node_id, P, 0.0)
    p.add_contact(r.node_id, R_PUBLIC, 0.0)
    p.add_contact(q.node_id, Q, 0.0)
    q.add_contact(p.node_id, P, 0.0)
    r.traversal.check_reachability([P], 0.0)
    [(req, to_p)] = r.datagrams_to_send(0.0)
    p.receive_datagram(req, R_PUBLIC, 0.0)
    (fwd, to_q), (ack, to_r) = p.datagrams_to_send(0.0)
    q.receive_datagram(fwd, P, 0.0)
    [(probe, to_r2)] = q.datagrams_to_send(0.0)
    assert (to_p, to_q, to_r, to_r2) == (P, Q, R_PUBLIC, R_PUBLIC)
    return {"description": "docs/protocol.md §20, reachability check: requester "
                           "203.0.113.5:5004, helper 198.51.100.1:5004, prober "
                           "198.51.100.2:5004 (tests/node/test_traversal_probe.py)",
            "messages": [{"name": name, "from": f"{src[0]}:{src[1]}", "to": f"{dst[0]}:{dst[1]}",
                          "hex": data.hex()}
                         for name, src, dst, data in (("PROBE_REQ", R_PUBLIC, P, req),
                                                      ("PROBE_FWD", P, Q, fwd),
                                                      ("PROBE_ACK", P, R_PUBLIC, ack),
                                                      ("PROBE", Q, R_PUBLIC, probe))]}


def test_the_hex_example_and_the_vectors_file():
    made = example()
    assert json.loads(VECTORS.read_text()) == made  # regenerate: python -m tests.node...
    req, fwd, ack, probe = (bytes.fromhex(m["hex"]) for m in made["messages"])
    nonce = req[2:10]
    assert req == bytes((0x06, 0x09)) + nonce + bytes(10) and len(req) == 20
    assert fwd == bytes((0x06, 0x0A)) + bytes.fromhex("cb007105138c") + nonce
    assert ack == bytes((0x06, 0x0C)) + nonce and probe == bytes((0x06, 0x0B)) + nonce


if __name__ == "__main__":  # python -m tests.node.test_traversal_probe > docs/vectors/probe.json
    print(json.dumps(example(), indent=2))
