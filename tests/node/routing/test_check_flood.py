"""Review R2 finding 1 (c78668e): a forger F claims a live node V's ID at F's own address,
answers the server S's probe there (which starts S's check of V's address) and floods V from 64
addresses of its own (no spoofing, ~3,200 bare requests) so that V's request budget (1,000/s,
burst 2,000) refuses the check's probe. With one probe that won the entry. The check is now
`address_check_probes` probes spread over a window (spacing drawn 0.5x-1.5x
`address_check_spacing`): a burst refuses one, V answers a later one, the entry stays. The
residual, played too: a flood that empties V's budget at every probe of the window moves it."""
from random import Random

from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire, ipv4_to_wire
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import (ROUTE_REQ, RouteRequest, RouteResponse, decode,
                                           encode_request, encode_response)
from kadtalk.node.stack import Node

SETTINGS = RoutingSettings(refresh_on_join=False, request_timeout=1.0, refresh_interval=1e9)
SERVER_ID, VICTIM_ID = 0x5 << 156, 0xA << 156
SERVER, VICTIM, FORGER = ("10.0.0.1", 5004), ("10.0.0.2", 5004), ("203.0.113.9", 6666)
FLOOD = encode_request(RouteRequest(0x77 << 150, 99), 41)


def to(out, addr):
    return [d for d, dst in out if dst == addr]


def play(flood_at) -> tuple[tuple, int, int]:
    """The attack; `flood_at(i)`: whether F floods V as S's i-th check probe arrives. The
    address S holds for V's ID when the check is over, V's rate_limited count, probes sent."""
    server = Node(SERVER_ID, ContactRegistry(), Random(1), SETTINGS, 0.0)
    assert server.add_contact(VICTIM_ID, VICTIM, 0.0)
    victim = Node(VICTIM_ID, ContactRegistry(), Random(2), SETTINGS, 0.0)  # default limits on
    now = 10.0
    server.receive_datagram(encode_request(RouteRequest(VICTIM_ID, 1234), 146), FORGER, now)
    for data in to(server.datagrams_to_send(now), FORGER):  # F answers S's probe as V
        if data[0] == ROUTE_REQ:
            req = decode(data, ipv4_from_wire)[0]
            server.receive_datagram(encode_response(RouteResponse(VICTIM_ID, req.target, ()),
                                                    ipv4_to_wire), FORGER, now + 0.01)
    now += 0.01
    probes = 0
    while True:
        for check in to(server.datagrams_to_send(now), VICTIM):
            if flood_at(probes):
                for i in range(3200):
                    victim.receive_datagram(FLOOD, (f"198.51.{i % 64}.7", 4000), now)
                victim.datagrams_to_send(now)
            probes += 1
            victim.receive_datagram(check, SERVER, now)  # the same instant: no refill
            for reply in to(victim.datagrams_to_send(now), SERVER):
                server.receive_datagram(reply, VICTIM, now + 0.02)
        table = server.routing.table
        old = table.find(VICTIM_ID)
        record = (table._checks or {}).get(old)
        if record is None or record[1] < 0:
            break  # the check is over (answered, or the entry moved)
        now = server.get_timer()
        assert now < 100.0
        server.handle_timer(now)
    held = server.routing.registry.addrs[table.find(VICTIM_ID)]
    return held, (victim.routing.stats or {}).get("rate_limited", 0), probes


def test_a_flood_of_the_victim_when_the_check_starts_does_not_take_its_entry():
    held, refused, probes = play(lambda i: i == 0)
    assert refused > 0  # the flood did bite: V refused the first probe
    assert probes == 2  # V answered the second, which ended the check
    assert held == VICTIM


def test_a_flood_at_every_probe_of_the_window_does_the_residual():
    """The residual (protocol 5.1, security.md): F keeps V's budget empty for the whole window,
    a sustained flood (> 1,000 requests/s for up to ~1.5 x spacing x (probes - 1) s), and the
    entry moves."""
    held, refused, probes = play(lambda i: True)
    assert probes == SETTINGS.address_check_probes and refused > 0
    assert held == FORGER


def test_no_flood_the_first_probe_is_answered():
    held, refused, probes = play(lambda i: False)
    assert (held, refused, probes) == (VICTIM, 0, 1)
