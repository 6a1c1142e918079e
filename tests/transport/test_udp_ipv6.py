"""IPv6 on real sockets: one dual-stack socket serves IPv4 and IPv6 peers (::1 and 127.0.0.1),
addresses reach node code in one spelling, and a host without IPv6 falls back to IPv4."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kadtalk.node.routing.messages import ROUTE_RES, RouteRequest, encode_request
from kadtalk.node.session import CallProgress, CallState, IncomingCall, MediaReceived
from kadtalk.transport import udp
from kadtalk.transport.udp import normalise, open_socket, parse_hostport, start_node

from .test_udp_session import Events, in_table


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")


@needs_ipv6
def test_a_dual_stack_node_answers_an_ipv4_peer_and_an_ipv6_peer_and_learns_both():
    async def scenario():
        dual = await start_node()  # "0.0.0.0": one AF_INET6 socket on "::", IPv4 too
        v4 = await start_node(host="127.0.0.1")
        v6 = await start_node(host="::1")
        try:
            assert dual.dual_stack and not v4.dual_stack and not v6.dual_stack
            port = dual.address[1]
            joined4 = await v4.join([("127.0.0.1", port)])
            joined6 = await v6.join([("::1", port)])
            assert joined4.success and joined6.success  # each got its ROUTE_RES back
            routing = dual.node.routing
            for peer in (v4, v6):  # each answered the dual node's address probe
                await asyncio.wait_for(in_table(dual, peer.node.node_id), 5)
            table = {routing.registry.ids[h]: routing.registry.addrs[h]
                     for h in routing.table.handles()}
            return (table, port, v4.address, v6.address, v4.node.routing, v6.node.routing)
        finally:
            for d in (dual, v4, v6):
                d.close()

    table, port, at4, at6, r4, r6 = asyncio.run(scenario())
    ids = sorted(table)
    assert at4[0] == "127.0.0.1" and at6[0] == "::1"
    assert set(table.values()) == {at4, at6}  # IPv4 plain (not ::ffff:127.0.0.1), IPv6 canonical
    # each peer holds the dual node at the address family it used
    assert [r4.registry.addrs[h] for h in r4.table.handles()] == [("127.0.0.1", port)]
    assert [r6.registry.addrs[h] for h in r6.table.handles()] == [("::1", port)]
    assert len(ids) == 2


@needs_ipv6
def test_ipv6_contacts_learned_over_ipv4_through_the_extension_are_reached_over_ipv6():
    """D bootstraps over IPv4, learns B's IPv6 address from ROUTE6_RES (section 23) and finds
    B there; C, IPv4 only, is sent nanotalk's ROUTE_RES, which leaves B out."""

    async def scenario():
        a = await start_node(ipv6=True)  # dual stack
        b = await start_node(host="::1")
        c = await start_node(host="127.0.0.1")
        d = await start_node(ipv6=True)
        try:
            assert b.node.routing.settings.ipv6 and not c.node.routing.settings.ipv6
            port = a.address[1]
            assert (await b.join([("::1", port)])).success
            assert (await c.join([("127.0.0.1", port)])).success
            await asyncio.wait_for(in_table(a, b.node.node_id), 5)
            assert (await d.join([("127.0.0.1", port)])).success
            found = await d.find_peer(b.node.node_id)
            missed = await c.find_peer(b.node.node_id)
            drops = [x.node.drop_counts() for x in (a, b, c, d)]
            return found.peer, b.address, missed.peer, drops
        finally:
            for x in (a, b, c, d):
                x.close()

    found, at, missed, drops = asyncio.run(scenario())
    assert found[1] == at and at[0] == "::1"
    assert missed is None
    assert drops == [{}] * 4


@needs_ipv6
def test_a_call_over_ipv6_between_real_sockets():
    async def scenario():
        ea, eb = Events(), Events()
        a = await start_node(host="::1", on_event=ea)
        b = await start_node(on_event=eb)  # dual stack
        try:
            assert (await a.join([("::1", b.address[1])])).success
            await asyncio.wait_for(in_table(b, a.node.node_id), 5)
            session = a.call(b.node.node_id)
            incoming = await eb.wait(lambda e: type(e) is IncomingCall)
            assert incoming.addr == a.address
            assert b.answer()
            await ea.wait(lambda e: type(e) is CallProgress and e.state is CallState.TALKING)
            a.send_media(session, b"over v6")
            got = await eb.wait(lambda e: type(e) is MediaReceived)
            return got.payload
        finally:
            a.close()
            b.close()

    assert asyncio.run(scenario()) == b"over v6"


@needs_ipv6
def test_a_dual_stack_node_sends_plain_ipv4_destinations_ipv4_mapped():
    async def scenario():
        dual = await start_node()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            peer.sendto(encode_request(RouteRequest(7, 9)), ("127.0.0.1", dual.address[1]))
            data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 5)
            return data, source, dual.address[1], dual.dropped
        finally:
            peer.close()
            dual.close()

    data, source, port, dropped = asyncio.run(scenario())
    assert data[0] == ROUTE_RES and source == ("127.0.0.1", port) and dropped == 0


def test_without_ipv6_the_node_falls_back_to_an_ipv4_socket(monkeypatch):
    real = socket.socket

    def no_ipv6(family=socket.AF_INET, *args, **kwargs):
        if family == socket.AF_INET6:
            raise OSError(97, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    monkeypatch.setattr(udp.socket, "socket", no_ipv6)

    async def scenario():
        node = await start_node()
        v4 = await start_node(host="127.0.0.1")
        try:
            joined = await v4.join([("127.0.0.1", node.address[1])])
            node.node.routing._outbox = [(RouteRequest(1, 2), ("2001:db8::1", 5004))]
            node.transmit()  # an IPv6 destination on an IPv4 socket: dropped, counted
            return node.dual_stack, node.address, joined.success, node.dropped
        finally:
            node.close()
            v4.close()

    dual, address, joined, dropped = asyncio.run(scenario())
    assert not dual and address[0] == "0.0.0.0" and joined and dropped == 1


def test_a_refused_dual_stack_option_falls_back_to_ipv4(monkeypatch):
    real = socket.socket

    class NoDualStack(real):
        def setsockopt(self, level, option, value):
            if option == socket.IPV6_V6ONLY:
                raise OSError(92, "Protocol not available")
            return super().setsockopt(level, option, value)

    monkeypatch.setattr(udp.socket, "socket", NoDualStack)
    sock = open_socket("0.0.0.0", 0)
    try:
        assert sock.family == socket.AF_INET and sock.getsockname()[0] == "0.0.0.0"
    finally:
        sock.close()


@pytest.mark.parametrize("raw, seen", [
    (("::ffff:192.0.2.7", 5004, 0, 0), ("192.0.2.7", 5004)),
    (("192.0.2.7", 5004), ("192.0.2.7", 5004)),
    (("2001:db8::7", 5004, 0, 0), ("2001:db8::7", 5004)),
    (("2001:DB8:0:0::7", 5004, 0, 0), ("2001:db8::7", 5004)),
    (("::1", 9, 0, 0), ("::1", 9)),
    (("fe80::1", 5004, 0, 2), None),  # scoped: node code could not answer there
])
def test_addresses_reach_node_code_in_one_spelling(raw, seen):
    assert normalise(raw) == seen


def test_garbage_from_a_scoped_address_is_counted_not_passed_on():
    class FakeNode:
        received = []

        def receive_datagram(self, data, addr, now):
            self.received.append(addr)

    async def scenario():
        driver = udp.UdpDriver.__new__(udp.UdpDriver)
        driver.node, driver.dropped = FakeNode(), 0
        driver.loop = asyncio.get_running_loop()
        driver.datagram_received(b"\x00" * 41, ("fe80::1", 5004, 0, 3))
        return driver.dropped, FakeNode.received

    assert asyncio.run(scenario()) == (1, [])


@pytest.mark.parametrize("text, expected", [
    ("[::1]:5004", ("::1", 5004)),
    ("[2001:DB8::7]:5004", ("2001:db8::7", 5004)),
    ("127.0.0.1:5004", ("127.0.0.1", 5004)),
    ("localhost:5004", ("127.0.0.1", 5004)),  # IPv4 first for a name with both
])
def test_parse_hostport_accepts_ipv6_in_brackets(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["::1:5004", "[::1]", "[::1]:0", "[fe80::1%lo]:5004"])
def test_parse_hostport_rejects_ipv6_without_brackets_or_port(text):
    with pytest.raises(ValueError):
        parse_hostport(text)
