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
from kadtalk.node.traversal import ADDR_REQ, ADDR_RES, TRAVERSAL

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
    # its keep-alives go to its IPv6 contacts (a firewall in front of it), 16 every 20 s
    peers = n.traversal.keepalive_peers()
    assert len(peers) == 16 and set(peers) <= set(V6_PEERS)


def test_an_ipv6_only_node_keeps_its_firewall_open_to_its_nearest_and_reads_their_answers():
    """An IPv6 host behind a stateful firewall (RFC 6092) is reached only by peers it sent to
    lately: its keep-alives (ADDR_REQ) go to the 16 IPv6 contacts nearest its ID every 20 s,
    which then can forward a caller's punch or relay offer to it. Their answers (six zero
    bytes: no IPv4 view) are read, not counted malformed, and give no public address.
    Before session 9 an IPv6-only node kept nobody alive."""
    ident = Identity.generate()
    own = int.from_bytes(ident.node_id, "big")
    n = Node(own, ContactRegistry(), random.Random(1), RoutingSettings(ipv6=True),
             identity=ident, traversal=True)
    rng = random.Random(7)
    for addr in V6_PEERS:
        n.add_contact(own ^ rng.getrandbits(159), addr, 0.0)
    n.keep_joined([], 0.0)
    for now in (0.0, 20.0):
        n.handle_timer(now)
        asked = [(d, to) for d, to in n.datagrams_to_send(now)
                 if d[:2] == bytes((TRAVERSAL, ADDR_REQ))]
        assert len(asked) == 16 and all(to in V6_PEERS for _, to in asked)
    assert len(set(to for _, to in asked)) == 16
    for data, to in asked:
        n.receive_datagram(bytes((TRAVERSAL, ADDR_RES)) + data[2:10] + bytes(6), to, 20.1)
    stats = n.traversal.stats
    assert stats["addr_res_received"] == 16 and stats["malformed"] == 0
    assert n.traversal.public is None and n.traversal.observed == {}
