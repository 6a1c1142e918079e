"""Two nodes behind symmetric NATs cannot reach each other; through a third node's relay they
hold a call (the same Node code as the daemon and the simulator, in the in-memory network)."""

from __future__ import annotations

from kadtalk.node.session.events import MediaReceived

from .calls import A, B, R, place_call, relay_path, world


def test_two_symmetric_nats_cannot_call_directly():
    net, nat = world()
    path, b_seen_by_r = relay_path(net)  # even knowing where R sees B ...
    assert place_call(net, b_seen_by_r, limit=60.0) == ["unreachable"]
    assert nat.filtered > 0  # ... A's datagrams to it come from another mapping: filtered


def test_a_call_through_a_third_nodes_relay_connects_and_carries_media_both_ways():
    net, nat = world()
    path, _ = relay_path(net)
    assert place_call(net, path, limit=30.0) == ["talking"]
    a, b = net.nodes[A], net.nodes[B]
    sid_a = [e.session_id for e in net.events[A] if hasattr(e, "session_id")][0]
    sid_b = [e.session_id for e in net.events[B] if hasattr(e, "session_id")][0]
    now = net.now
    for i in range(5):
        a.send_media(sid_a, b"from alice %d" % i, now)
        b.send_media(sid_b, b"from bob %d" % i, now)
        net.service(A)
        net.service(B)
        now += 0.02
        net.run_until(now)
    assert [e.payload for e in net.of(B, MediaReceived)] == [b"from alice %d" % i
                                                            for i in range(5)]
    assert [e.payload for e in net.of(A, MediaReceived)] == [b"from bob %d" % i
                                                            for i in range(5)]
    relay = net.nodes[R].relay
    assert relay.stats["forwarded"] >= 10 + 4  # media, key exchange and call control
    assert sum(net.nodes[R].drop_counts().values()) == 0
    assert a.drop_counts() == {} and b.drop_counts() == {}
    # A and B never sent to anyone but R: every mapping their NATs made leads to R
    assert {dst for _, dst in nat.out} == {R}
