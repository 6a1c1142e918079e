"""The `Node` stack: demultiplexing, lazy session layer, and calls = lookup + key exchange."""

from __future__ import annotations

import sys
from random import Random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.events import Joined, LookupCompleted
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, encode_request
from kadtalk.node.session import (
    CallEnded,
    CallProgress,
    CallState,
    EndReason,
    IncomingCall,
    MediaReceived,
    SessionSettings,
)
from kadtalk.node.stack import Node
from kadtalk.transport.memory import MemoryNet

QUIET = RoutingSettings(refresh_on_join=False)
WALL = 1_767_225_600.0


def addr(i: int) -> tuple[str, int]:
    return (f"10.0.0.{i}", 5004)


def make(ident: Identity | None, seed: int = 0, **kw) -> Node:
    node_id = int.from_bytes(ident.node_id, "big") if ident else Random(seed).getrandbits(160)
    return Node(node_id, ContactRegistry(), Random(seed), QUIET, 0.0, identity=ident,
                clock_offset=WALL, **kw)


def add(net: MemoryNet, node: Node) -> tuple[str, int]:
    """Attach `node` at the next 10.0.0.i."""
    return net.attach(addr(len(net.nodes) + 1), node)


def test_routing_only_node_stays_three_slots_and_allocates_nothing_more():
    node = make(None)
    assert Node.__slots__ == ("node_id", "routing", "_upper")
    assert not hasattr(node, "__dict__")

    class Three:
        __slots__ = ("a", "b", "c")

    assert sys.getsizeof(node) == sys.getsizeof(Three())
    node.receive_datagram(encode_request(RouteRequest(5, 6)), addr(9), 0.0)
    assert node._upper is None and node.session is None
    assert node.datagrams_to_send(0.0)  # it answered


def test_identity_node_creates_its_session_layer_on_first_need():
    node = make(Identity.generate())
    assert node.session is None
    node.receive_datagram(encode_request(RouteRequest(5, 6)), addr(9), 0.0)
    assert node.session is None
    node.receive_datagram(b"\x04" + bytes(20), addr(9), 0.0)
    assert node.session is not None
    assert node.drop_counts()["no_session"] == 1


def test_demultiplexing_and_drop_counts():
    plain = make(None)
    for data in (b"", b"\x06abc", b"\xff", b"\x02" + bytes(10)):
        plain.receive_datagram(data, addr(9), 0.0)
    assert plain.drop_counts() == {"empty": 1, "unknown_type": 3}  # no identity: no session
    assert plain.stats == {"empty": 1, "unknown_type": 3}
    ident = make(Identity.generate())
    ident.receive_datagram(b"\x02" + bytes(10), addr(9), 0.0)
    ident.receive_datagram(b"\x00" + bytes(3), addr(9), 0.0)
    assert ident.drop_counts() == {"bad_der": 1, "truncated": 1}


def test_identity_must_match_node_id():
    ident = Identity.generate()
    with pytest.raises(ValueError):
        Node(1, ContactRegistry(), Random(0), QUIET, 0.0, identity=ident)


def test_nodes_without_identity_cannot_call():
    with pytest.raises(RuntimeError):
        make(None).call(5, 0.0)
    assert make(None).answer(0.0) is False and make(None).hang_up(0.0) is False


def three_nodes():
    """a and c know only b; b knows both."""
    net = MemoryNet()
    a, b, c = (make(Identity.generate(), seed=i) for i in range(3))
    aa, ba, ca = add(net, a), add(net, b), add(net, c)
    a.join([ba], 0.0)
    c.join([ba], 0.0)
    net.settle(0.0)
    assert net.of(aa, Joined) and net.of(ca, Joined)
    return net, (a, b, c), (aa, ba, ca)


def test_a_call_is_a_lookup_then_the_key_exchange_over_one_socket():
    net, (a, b, c), (aa, ba, ca) = three_nodes()
    mine = a.find_peer(b.node_id, 0.5)  # a user lookup at the same time
    sid = a.call(c.node_id, 0.5)
    net.settle(0.5)
    lookups = net.of(aa, LookupCompleted)
    assert [e.lookup_id for e in lookups] == [mine]  # the call's own lookup is not reported
    assert [e.state for e in net.of(aa, CallProgress)] == [
        CallState.DIALLING, CallState.KEY_EXCHANGE, CallState.RINGING]
    (incoming,) = net.of(ca, IncomingCall)
    assert incoming.peer_id == a.node_id and incoming.addr == aa
    assert c.answer(1.0)
    net.settle(1.0)
    assert net.of(aa, CallProgress)[-1].state is CallState.TALKING
    a.send_media(sid, b"hello", 1.1)
    net.settle(1.1)
    assert net.of(ca, MediaReceived)[0].payload == b"hello"
    # the callee's routing table learned the caller from the authenticated KEY_REQ
    assert c.routing.table.find(a.node_id) >= 0
    a.hang_up(2.0)
    net.settle(2.0)
    assert net.of(ca, CallEnded)[0].reason is EndReason.REMOTE_HUNG_UP


def test_a_call_to_an_unknown_id_ends_unreachable():
    net, (a, b, c), (aa, ba, ca) = three_nodes()
    a.call(0x1234, 0.5)
    net.settle(0.5)
    net.run_until(25.0)  # timers fire at their deadlines
    (ended,) = net.of(aa, CallEnded)
    assert ended.reason is EndReason.UNREACHABLE


def test_a_call_with_a_known_address_skips_the_lookup():
    net = MemoryNet()
    a, b = make(Identity.generate(), 1), make(Identity.generate(), 2)
    aa, ba = add(net, a), add(net, b)
    a.call(b.node_id, 0.0, addr=ba)
    net.settle(0.0)
    assert net.of(ba, IncomingCall)
    assert not a.routing.lookups_running


def test_timer_is_the_earliest_of_both_layers():
    node = make(Identity.generate(), session_settings=SessionSettings(dial_timeout=5.0))
    assert node.get_timer() == QUIET.refresh_interval
    node.call(0x1234, 0.0)  # no contacts: the lookup ends at once, the call is unreachable
    assert [type(e) for e in iter(node.next_event, None)] == [CallProgress, CallEnded]
    node.session.call(0x1234, 0.0)  # a dialling session with no lookup behind it
    assert node.get_timer() == 5.0


def test_objects_fast_path_carries_session_datagrams_as_bytes():
    a, b = make(Identity.generate(), 1), make(Identity.generate(), 2)
    a.call(b.node_id, 0.0, addr=addr(2))
    (msg, dst), = a.messages_to_send(0.0)
    assert type(msg) is bytes and dst == addr(2)
    b.receive_message(msg, addr(1), 0.0)
    (reply, _), = b.messages_to_send(0.0)
    a.receive_message(reply, addr(2), 0.0)
    assert a.session.state_of(0) is CallState.RINGING

_CALLER, _CALLEE = Identity.generate(), Identity.generate()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=120), max_size=10))
def test_garbage_of_every_type_never_raises_and_is_counted(datagrams):
    net = MemoryNet()
    a, b = make(_CALLER, 1), make(_CALLEE, 2)
    aa, ba = add(net, a), add(net, b)
    a.call(b.node_id, 0.0, addr=ba)
    net.settle(0.0)
    before = b.session.snapshot()
    for data in datagrams:
        if data[:1] in (b"\x00", b"\x01"):
            continue  # routing input may legitimately change the routing table
        total = sum(b.drop_counts().values())
        b.receive_datagram(data, aa, 0.0)
        assert sum(b.drop_counts().values()) == total + 1
    assert b.session.snapshot() == before


def test_a_find_peer_reports_the_targets_neighbours_it_met_answered_or_only_named():
    """The call's rendezvous come from here (docs/protocol.md §20): x answers a's FIND_PEER
    with t and t's neighbours n1, n2; the lookup stops at once, so n1 and n2 were only named,
    yet they are reported (nearest t first, t itself left out), and so is x, which answered."""
    net = MemoryNet()
    a, x, t, n1, n2 = (make(None, seed) for seed in range(1, 6))
    where = {n: add(net, n) for n in (a, x, t, n1, n2)}
    a.add_contact(x.node_id, where[x], 0.0)
    for n in (t, n1, n2):
        x.add_contact(n.node_id, where[n], 0.0)
    lookup_id = a.find_peer(t.node_id, 0.0)
    net.settle(0.0)
    net.run(limit=5.0)
    done = [e for e in net.events[where[a]] if type(e) is LookupCompleted]
    assert [e.lookup_id for e in done] == [lookup_id] and done[0].peer == (t.node_id, where[t])
    expected = sorted((x, n1, n2), key=lambda n: n.node_id ^ t.node_id)
    assert done[0].closest == tuple((n.node_id, where[n]) for n in expected)
