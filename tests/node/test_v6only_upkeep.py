"""A node whose contacts are all IPv6 (an IPv6-only host) with its upkeep on: traversal has
nobody to keep alive (it speaks IPv4 only to ADDR_REQ), and its timer must not come due again
at once. Found by the simulator's IPv6 hosts (experiments/harness/dualstack.py): the node's
pump restarted the keep-alives whenever their timer was idle and the table non-empty, so an
IPv6-only node's timer stayed at `now` for ever (a daemon on such a host would spin)."""

from __future__ import annotations

import random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.stack import Node

V6_PEERS = [(f"2001:db8:{i:x}::1", 5004) for i in range(1, 25)]


def test_an_ipv6_only_node_with_upkeep_on_does_not_wake_at_once_for_ever():
    ident = Identity.generate()
    n = Node(int.from_bytes(ident.node_id, "big"), ContactRegistry(), random.Random(1),
             RoutingSettings(ipv6=True), identity=ident, traversal=True)
    for i, addr in enumerate(V6_PEERS):
        n.add_contact(random.Random(i).getrandbits(160), addr, 0.0)
    assert n.storage is not None  # value storage made (a caller's node has it): its pump too
    n.keep_joined([], 0.0)
    now = 1.0
    n.handle_timer(now)
    n.datagrams_to_send(now)
    due = n.get_timer()
    assert due is not None and due > now  # before the fix: due == now, after every handle_timer
    assert n.traversal.keepalive_peers() == []  # nobody traversal can keep: all IPv6
