"""A request flood from one source is held to that source's budget; honest peers keep being served."""

from __future__ import annotations

from random import Random

from kadtalk.node.routing.contacts import ContactRegistry
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import ROUTE_RES, RouteRequest, encode_request
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False)


def test_one_flooding_source_does_not_starve_honest_peers():
    server = Node(1 << 159, ContactRegistry(), Random(1), SETTINGS, 0.0)
    flooder = ("203.0.113.9", 6666)
    answered = {"flood": 0, "honest": 0}
    now = 0.0
    for step in range(20_000):  # 10,000 requests a second for 2 s
        now = step * 0.0001
        server.receive_datagram(encode_request(RouteRequest(77, step), 146), flooder, now)
        if step % 100 == 0:  # ten honest peers, each once a second
            honest = ("10.0.0.%d" % (step // 100 % 10 + 1), 5004)
            server.receive_datagram(encode_request(RouteRequest(1000 + step, step), 146), honest, now)
        for data, dst in server.datagrams_to_send(now):
            if data[0] == ROUTE_RES:  # answers, not address probes
                answered["flood" if dst == flooder else "honest"] += 1
    assert answered["honest"] == 200  # every honest request answered
    # the flooder gets the first half of the global burst (plus its refill), then its own 20/s
    assert answered["flood"] <= 1000 + 100 + 100 + 20 * 2
    drops = server.drop_counts()
    assert drops["rate_limited_source"] >= 18_000
    assert server.routing._guard.tracked_sources <= 11
