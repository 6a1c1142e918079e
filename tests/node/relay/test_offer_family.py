"""A node that holds its relays at IPv6 addresses (a dual-stack relay reached over IPv6, since
session 7) calls and is called: PUNCH_REQ_RELAY names an IPv4 relay only (docs/protocol.md
§21), so such a relay is never offered; the call punches without an offer and proceeds
(before: a TypeError out of `Node.call` and out of `receive_datagram`, found by the namespace
testbed). Whole nodes, explicit time."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.relay import RelayPath
from kadtalk.node.relay.client import Held
from kadtalk.node.traversal import PUNCH_REQ, PUNCH_REQ_RELAY, SIZES, TRAVERSAL

from .dht import B_OPEN, P2, R1, Call, network
from .test_holding import A_OPEN, Hops

V6 = (("2001:db8::1", 3478), ("2001:db8:1::2", 3478))


def hold_only(node, relays, now: float) -> None:
    """Replace what `node` holds by granted allocations at `relays` (as if only those answered)."""
    client = node.relay.client
    client.held.clear()
    for i, relay in enumerate(relays):
        held = Held(relay, bytes(16), now)
        held.state, held.rtt = "granted", 0.01 * (i + 1)
        held.path = RelayPath(relay, bytes((i + 1,)) * 8)
        held.lifetime, held.expires, held.refresh_at = 600, now + 600.0, now + 500.0
        client.held[relay] = held


def natted_pair(relays_a, relays_b):
    hops = Hops()
    net = network(hops, a=A_OPEN, b=B_OPEN, join_for=10.0)
    for addr, relays in ((A_OPEN, relays_a), (B_OPEN, relays_b)):
        net.nodes[addr].set_nat("cone")  # behind a NAT: calls may need a relay
        net.service(addr)
    net.run_until(net.now + 5.0)
    for addr, relays in ((A_OPEN, relays_a), (B_OPEN, relays_b)):
        hold_only(net.nodes[addr], relays, net.now)
    return net, hops


def punch_ops(hops: Hops, src, since: float) -> list[int]:
    return [p.payload[1] for t, p in hops.log if t >= since and p.src == src
            and p.payload[0] == TRAVERSAL and p.payload[1] in (PUNCH_REQ, PUNCH_REQ_RELAY)]


def test_a_caller_holding_only_ipv6_relays_punches_without_an_offer_and_the_call_proceeds():
    net, hops = natted_pair(V6, V6)
    since = net.now
    call = Call(net, a=A_OPEN, b=B_OPEN)  # raised TypeError in `Node.call` before
    assert call.connect() == "talking"
    ops = punch_ops(hops, A_OPEN, since)
    assert ops and set(ops) == {PUNCH_REQ}  # punched, no offer naming a relay it cannot carry
    assert net.nodes[A_OPEN]._upper.paths.stats["relay_offer_ipv6_only"] == 1
    # ... and the other way: the callee is punched, the caller offers nothing either
    net.nodes[A_OPEN].hang_up(net.now, call.sid_a)
    net.service(A_OPEN)
    net.run_until(net.now + 2.0)
    since = net.now
    back = Call(net, a=B_OPEN, b=A_OPEN)
    assert back.connect() == "talking"
    assert set(punch_ops(hops, B_OPEN, since)) == {PUNCH_REQ}


def test_an_ipv4_relay_is_offered_before_a_nearer_ipv6_one():
    net, hops = natted_pair((V6[0], R1), (V6[0], R1))  # the IPv6 one has the lower rtt
    since = net.now
    call = Call(net, a=A_OPEN, b=B_OPEN)
    assert call.connect() == "talking"
    offers = [p.payload for t, p in hops.log if t >= since and p.src == A_OPEN
              and p.payload[:2] == bytes((TRAVERSAL, PUNCH_REQ_RELAY))]
    assert offers and {o[42:48] for o in offers} == {bytes((198, 51, 100, 1, 0x13, 0x8C))}
    assert "relay_offer_ipv6_only" not in net.nodes[A_OPEN]._upper.paths.stats


def test_punch_given_an_ipv6_relay_names_it_in_18_bytes_and_leaves_out_what_it_cannot_carry():
    """The second punch round (`_second_punch`) and a relay recovery hand their offer to
    `Traversal.punch`: an IPv6 relay travels in the 18-byte field (68 bytes, §20 "Across
    address families"), an IPv4 one in 6 (56), and an address of neither form is left out,
    counted, never raised out of the datagram path."""
    net, hops = natted_pair(V6, V6)
    node = net.nodes[A_OPEN]
    traversal = node._upper.traversal
    traversal.punch(7, [P2], net.now, relay=(V6[0], bytes(8)))
    [(data, addr)] = traversal.datagrams_to_send(net.now)
    assert (data[1], len(data), addr) == (PUNCH_REQ_RELAY, 68, P2)
    assert data[42:60] == bytes.fromhex("20010db8000000000000000000000001") + (3478).to_bytes(2, "big")
    traversal.punch(7, [P2], net.now, relay=(R1, bytes(8)))  # an IPv4 one as ever
    [(data, _)] = traversal.datagrams_to_send(net.now)
    assert data[1] == PUNCH_REQ_RELAY and data[42:48] == bytes((198, 51, 100, 1, 0x13, 0x8C))
    traversal.punch(7, [P2], net.now, relay=(("2001:DB8::1", 3478), bytes(8)))  # not canonical
    [(data, _)] = traversal.datagrams_to_send(net.now)
    assert (data[1], len(data)) == (PUNCH_REQ, SIZES[PUNCH_REQ])
    assert traversal.stats["punch_offer_unencodable"] == 1


_NET: dict = {}


def _caller():
    """One network for every example: A holds relays of both families and is mid-call (its
    punch watched, a second round's lookup possibly pending)."""
    if not _NET:
        net, _ = natted_pair((V6[0], R1), (V6[1],))
        hold_only(net.nodes[A_OPEN], (V6[0], V6[1]), net.now)  # then IPv6 only, mid-call
        Call(net, a=A_OPEN, b=B_OPEN)
        _NET["net"], _NET["now"] = net, net.now
    return _NET["net"]


ADDRS = st.sampled_from([P2, R1, B_OPEN, ("203.0.113.77", 5004), V6[0], ("2001:db8::7", 9)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 0x0D), st.binary(max_size=80), ADDRS,
                          st.floats(0, 2.0), st.booleans()), max_size=12))
def test_traversal_datagrams_never_raise_while_relays_of_either_family_are_held(steps):
    net = _caller()
    for node in (net.nodes[A_OPEN], net.nodes[B_OPEN]):
        for op, body, addr, later, sized in steps:
            if sized and op in SIZES:
                body = (body + bytes(SIZES[op]))[: SIZES[op] - 2]
            now = _NET["now"] = _NET["now"] + later  # time only goes forward
            node.receive_datagram(bytes((TRAVERSAL, op)) + body, addr, now)
            node.handle_timer(now)
            node.datagrams_to_send(now)


def test_a_natted_node_asks_only_relays_its_offer_can_name():
    """A dual-stack relay met at its IPv6 address (here: one that served us before, asked
    first) is not asked: the offer could never name it, and holding it would take the place
    of an IPv4 relay that the node's calls can use."""
    from .test_holding import hellos

    hops = Hops()
    net = network(hops, a=A_OPEN, b=B_OPEN, join_for=10.0)
    a = net.nodes[A_OPEN]
    a._paths().served_by(V6[0])
    told = net.now
    a.set_nat("cone")
    net.service(A_OPEN)
    net.run_until(told + 2.0)
    asked = {dst for _, dst in hellos(hops, told)}
    assert asked and V6[0] not in asked
    assert {p.relay for p in a.relays_held()} == {R1, ("198.51.100.2", 5004)}
