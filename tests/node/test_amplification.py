"""Retry cookies through the whole node (issue 17): Node routes COOKIE (0x07) to the session, and
a call whose callee asks for a cookie still sets up through the NAT hole-punching flow."""

from __future__ import annotations

import random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.session.wire import COOKIE, KEY_RES
from kadtalk.node.stack import Node

from .session.conftest import identity
from .test_traversal import filtering_nats, place_call


def node_with(ident: Identity) -> Node:
    return Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
                identity=ident, traversal=True)


def test_a_call_through_hole_punching_to_a_callee_that_asks_for_a_cookie():
    """Both behind filtering NATs, the callee with an RSA-8192 identity (its KEY_RES is over 3x a
    P-256 KEY_REQ): the PUNCH opens the callee's NAT, the retransmitted KEY_REQ draws a cookie,
    the caller echoes it at once and the KEY_RES follows a round trip later."""
    a, r = node_with(Identity.generate()), node_with(Identity.generate())
    b = node_with(identity("rsa8192", "callee"))
    outcome = place_call(filtering_nats(a, b, r))
    assert outcome == ["talking"]
    drops = b.drop_counts()
    assert drops["cookie_sent"] >= 1  # the KEY_RES went out only after the cookie came back
    assert a.drop_counts()["unsolicited_cookie"] == 0


def test_node_routes_cookie_datagrams_to_the_session():
    b = node_with(identity("rsa8192", "callee"))
    a_ident = identity("p256", "caller")
    a = node_with(a_ident)
    b_addr, a_addr = ("10.0.0.2", 1), ("10.0.0.1", 1)
    a.call(b.node_id, 0.0, addr=b_addr)
    ((req, _),) = [x for x in a.datagrams_to_send(0.0) if x[0][0] == 0x02]
    b.receive_datagram(req, a_addr, 0.0)
    ((reply, _),) = b.datagrams_to_send(0.0)
    assert reply[0] == COOKIE and len(reply) == 34 <= len(req)
    a.receive_datagram(reply, b_addr, 0.0)
    ((retry, _),) = a.datagrams_to_send(0.0)
    assert retry[0] == COOKIE and retry[18:] == req
    b.receive_datagram(retry, a_addr, 0.0)
    ((res, _),) = b.datagrams_to_send(0.0)
    assert res[0] == KEY_RES and len(res) > 3 * len(req)  # the address proved itself
