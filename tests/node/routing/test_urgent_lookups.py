"""Urgent lookups (a call's): more requests for less time, driven by explicit `now`.

`find_peer(urgent=True)` asks `urgent_first` contacts in its first round and keeps `alpha`
requests in flight among the nearest (libtorrent's aggressive lookups); every other lookup, and
an urgent one with `urgent_aggressive=False, urgent_first=0`, keeps the paper's rule.
"""

from random import Random

from kadtalk.node.identity import Identity
from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteResponse, decode, encode_response
from kadtalk.node.stack import Node

TO_WIRE = ContactRegistry.addr_to_wire
FROM_WIRE = ContactRegistry.addr_from_wire
TARGET = 0xF000000000000000000000000000000000000000
# contacts 1..6, nearer the target the higher the number
IDS = {i: TARGET ^ (0x1000 >> i) for i in range(1, 7)}
ADDRS = {i: ("10.0.0.%d" % i, 5004) for i in IDS}


def node(identity: Identity | None = None, **settings) -> Node:
    own = int.from_bytes(identity.node_id, "big") if identity else 0x0F00000000000000000000000000000000000001
    n = Node(own, ContactRegistry(), Random(1),
             RoutingSettings(refresh_on_join=False, alpha=2, **settings), 0.0, identity=identity)
    for i in IDS:
        assert n.add_contact(IDS[i], ADDRS[i], 0.0)
    return n


def asked(n: Node, now: float) -> list[int]:
    out = []
    for data, addr in n.datagrams_to_send(now):
        if data[0] in (0, 1):  # routing
            msg, _ = decode(data, FROM_WIRE)
            if msg.target == TARGET:
                out.append(next(i for i in ADDRS if ADDRS[i] == addr))
    return out


def answer(n: Node, i: int, now: float, contacts=()) -> None:
    n.receive_datagram(encode_response(RouteResponse(IDS[i], TARGET, tuple(contacts)), TO_WIRE),
                       ADDRS[i], now)


def test_only_urgent_find_peer_lookups_ask_more_in_their_first_round():
    n = node(urgent_first=4)
    n.routing.find_peer(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]  # alpha
    n = node(urgent_first=4)
    n.routing.find_closest(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5]
    n = node(urgent_first=4)
    n.routing.find_peer(TARGET, 0.0, urgent=True)
    assert asked(n, 0.0) == [6, 5, 4, 3]


def test_the_papers_rule_stays_selectable_for_urgent_lookups():
    n = node(urgent_first=0, urgent_aggressive=False)
    n.routing.find_peer(TARGET, 0.0, urgent=True)
    assert asked(n, 0.0) == [6, 5]
    answer(n, 6, 0.05, [(TARGET ^ 1, ("10.0.1.1", 5004)), (TARGET ^ 2, ("10.0.1.2", 5004))])
    assert len(n.datagrams_to_send(0.05)) == 1  # one slot freed: one of the two nearer asked


def test_an_urgent_lookup_asks_every_nearer_contact_an_answer_names():
    n = node(urgent_first=2)
    n.routing.find_peer(TARGET, 0.0, urgent=True)
    assert asked(n, 0.0) == [6, 5]
    answer(n, 6, 0.05, [(TARGET ^ 1, ("10.0.1.1", 5004)), (TARGET ^ 2, ("10.0.1.2", 5004))])
    sent = [addr for data, addr in n.datagrams_to_send(0.05) if data[0] == 0]
    assert sorted(sent) == [("10.0.1.1", 5004), ("10.0.1.2", 5004)]  # 5 is overtaken by both


def test_a_calls_lookup_is_urgent():
    ident = Identity.generate()
    n = node(ident, urgent_first=5)
    n.call(TARGET, 0.0)
    assert asked(n, 0.0) == [6, 5, 4, 3, 2]


def test_a_responder_naming_ever_nearer_contacts_cannot_keep_a_lookup_going():
    """Review 2: each of an attacker's 100 answers names one fresh ID at its own address (the
    nearest) and 19 at victims' addresses. Paper or urgent, the lookup sends at most
    `lookup_requests` in all and keeps urgent_first + 2 alpha in flight, then ends."""
    attacker = ("198.51.100.7", 4000)
    target = 1 << 159
    for urgent in (False, True):
        settings = RoutingSettings(refresh_on_join=False)
        n = Node(0x0F00000000000000000000000000000000000001, ContactRegistry(), Random(1),
                 settings, 0.0)
        att_id, dist = target ^ (1 << 150), 150
        n.add_contact(att_id, attacker, 0.0)
        for i in range(1, 8):
            n.add_contact(target ^ (1 << (158 - i)) ^ 12345, ("10.9.9.%d" % i, 5004), 0.0)
        lookup_id = n.routing.find_peer(target, 0.0, urgent=urgent)
        now, requests, victims, peak = 0.0, 0, 0, 0
        for r in range(100):
            for data, addr in n.datagrams_to_send(now):
                if data[0] == 0:
                    requests += 1
                    victims += addr[0].startswith("203.0.113.")
            dist -= 1
            nearer = target ^ (1 << dist)
            named = [(nearer, attacker)] + [
                (nearer ^ (j + 1) << (dist - 6), ("203.0.113.%d" % (r % 200 + 1), 1000 + j))
                for j in range(19)]
            now += 0.02
            n.receive_datagram(encode_response(RouteResponse(att_id, target, tuple(named)),
                                               TO_WIRE), attacker, now)
            att_id = nearer
            for lookup in n.routing._lookups.values():
                peak = max(peak, lookup.in_flight)
        assert requests <= settings.lookup_requests
        assert peak <= (settings.urgent_first + 2 * settings.alpha if urgent
                        else settings.alpha)
        while (n.get_timer() or 99.0) < 10.0:  # what is in flight times out
            now = max(now, n.get_timer())
            n.handle_timer(now)
            n.datagrams_to_send(now)
        assert lookup_id not in n.routing._lookups, "the lookup never ends"
