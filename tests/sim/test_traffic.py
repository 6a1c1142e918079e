"""Traffic accounting: requests and responses by purpose, read from bytes or message objects."""

from kadtalk.node.routing.messages import RouteRequest, RouteResponse, encode_request, encode_response
from kadtalk.sim.registry import SharedRegistry
from kadtalk.sim.traffic import JOIN, REFRESH, USER, TrafficTap

IDS = [0x1111 << 140, 0x2222 << 140, 0x3333 << 140]
USER_TARGET = IDS[2]
REFRESH_TARGET = 0x2222 << 140 | 12345


def messages():
    """(src, dst, message, purpose, is_response) for each kind of traffic."""
    return [
        (0, 1, RouteRequest(IDS[0], IDS[0]), JOIN, 0),  # node 0 joins through node 1
        (1, 0, RouteResponse(IDS[1], IDS[0], [(IDS[2], 2)]), JOIN, 1),
        (0, 1, RouteRequest(IDS[0], USER_TARGET), USER, 0),  # node 0 looks for node 2
        (1, 0, RouteResponse(IDS[1], USER_TARGET, [(IDS[2], 2)]), USER, 1),
        (2, 0, RouteRequest(IDS[2], REFRESH_TARGET), REFRESH, 0),  # node 2 refreshes a bucket
        (0, 2, RouteResponse(IDS[0], REFRESH_TARGET, []), REFRESH, 1),
    ]


def expected():
    counts = [[0, 0], [0, 0], [0, 0]]
    for *_, purpose, response in messages():
        counts[purpose][response] += 1
    return counts


def test_objects_are_classified():
    tap = TrafficTap(IDS)
    tap.user_targets.add(USER_TARGET)
    for src, dst, msg, *_ in messages():
        tap(src, dst, msg)
    assert tap.counts == expected()


def test_bytes_are_classified_the_same():
    tap = TrafficTap(IDS)
    tap.user_targets.add(USER_TARGET)
    for src, dst, msg, *_ in messages():
        data = encode_request(msg) if type(msg) is RouteRequest else encode_response(msg, SharedRegistry.addr_to_wire)
        tap(src, dst, data)
    tap(0, 1, b"\x04" + bytes(60))  # not a routing message
    assert tap.counts == expected() and tap.other == 1


def test_counting_starts_when_told():
    tap = TrafficTap(IDS, active=False)
    tap(0, 1, RouteRequest(IDS[0], IDS[0]))
    assert tap.counts == [[0, 0], [0, 0], [0, 0]]
    tap.start(5.0)
    tap(0, 1, RouteRequest(IDS[0], IDS[0]))
    summary = tap.summary(nodes=3, now=7.0)
    assert summary["requests_join"] == 1 and summary["requests_user"] == 0
    assert summary["maintenance_share"] == 1.0
    assert summary["maintenance_req_per_node_s"] == 1 / (3 * 2.0)
