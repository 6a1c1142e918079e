"""Relays over IPv6 with explicit time (docs/protocol.md section 21, "IPv6"): 18-byte addresses
in ALLOCATED, PERMIT, PERMITTED and KNOCKED, a dual-stack relay joining an IPv4 owner and an
IPv6 peer (and the reverse), no answer larger than what draws it, the special IPv6 ranges
refused, caps per /64. The clients are played by hand with the wire helpers: the relay's side is
what is under test."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kadtalk.node.relay import RelayLayer, RelaySettings, wire
from kadtalk.node.relay.addresses import IPV4, Codec
from kadtalk.transport.udp import start_node

from ...transport.test_udp_ipv6 import _has_ipv6_loopback
from .conftest import A, R, SERVE, identity

R6 = ("2001:db8:1::1", 3478)  # the relay's IPv6 address (dual-stack: R too)
V6A, V6B = ("2001:db8:a::1", 5004), ("2001:db8:b::7", 6000)


def packed(addr: tuple[str, int]) -> bytes:
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    return socket.inet_pton(family, addr[0]) + addr[1].to_bytes(2, "big")


class Relay:
    """A serving relay layer fed by hand; `send` returns what it sent, as (bytes, destination)."""

    def __init__(self, settings: RelaySettings = SERVE):
        self.layer = RelayLayer(identity("relay"), settings)
        self.layer.set_public([R, R6])

    def send(self, data: bytes, src: tuple, now: float = 0.0) -> list[tuple[bytes, tuple]]:
        self.layer.receive_datagram(data, src, now)
        return self.layer.datagrams_to_send(now)

    def allocate(self, owner: tuple, name: str = "owner", now: float = 0.0) -> bytes:
        """An allocation for `owner`, asked for by hand (HELLO, CHALLENGE, signed ALLOCATE)."""
        nonce = bytes(range(16))
        [(challenge, dst)] = self.send(wire.hello(nonce), owner, now)
        assert dst == owner and len(challenge) == 34
        cookie = challenge[18:34]
        me = identity(name)
        request = wire.allocate(nonce, cookie, 600, me.public_der,
                                me.sign(wire.signed_part(nonce, cookie, 600)))
        [(granted, dst)] = self.send(request, owner, now)
        assert dst == owner and granted[1] == wire.ALLOCATED, self.layer.drop_counts()
        assert len(granted) <= len(request)
        assert wire.address_field(granted, 28) == packed(owner)  # the reflexive address
        return granted[18:26]

    def prove(self, number: bytes, peer: tuple, now: float = 0.0) -> list[tuple[bytes, tuple]]:
        """`peer` knocks (padded when IPv6) and echoes the cookie; what the echo drew."""
        v6 = ":" in peer[0]
        [(cookie, dst)] = self.send(wire.knock(number, ipv6=v6), peer, now)
        assert dst == peer and cookie[1] == wire.KNOCK_COOKIE and len(cookie) == 16
        return self.send(wire.knock(number, cookie[10:16], ipv6=v6), peer, now)


def test_an_ipv6_owner_learns_its_reflexive_address_in_an_18_byte_field():
    relay = Relay()
    number = relay.allocate(V6A)
    assert relay.layer.server.allocations[number].owner == V6A
    assert relay.layer.stats["allocated"] == 1


@pytest.mark.parametrize("owner,peer", [(A, V6B), (V6A, ("203.0.113.2", 5004)), (V6A, V6B)])
def test_a_dual_stack_relay_joins_owner_and_peer_of_either_family(owner, peer):
    relay = Relay()
    number = relay.allocate(owner)
    # the peer's echo draws KNOCKED to the owner, naming the peer in its family's size
    [(knocked, dst)] = relay.prove(number, peer)
    size = 28 if ":" in peer[0] else 16
    assert dst == owner and knocked == bytes((wire.RELAY, wire.KNOCKED)) + number + packed(peer)
    assert len(knocked) == size
    permit = wire.permit(number, packed(peer))
    assert len(permit) == size
    assert relay.send(permit, owner) == [(wire.permit(number, packed(peer), wire.PERMITTED),
                                          owner)]
    # DATA both ways, unchanged, across the families
    to_peer, to_owner = wire.data(number, b"to the peer"), wire.data(number, b"to the owner")
    assert relay.send(to_peer, owner, 0.1) == [(to_peer, peer)]
    assert relay.send(to_owner, peer, 0.2) == [(to_owner, owner)]
    assert relay.layer.stats["forwarded"] == 2
    # another IPv6 address, even in the peer's /64, is not the peer
    if ":" in peer[0]:
        neighbour = (peer[0][:-1] + "8", peer[1])
        assert relay.send(wire.data(number, b"x"), neighbour, 0.3) == []
        assert relay.layer.drop_counts()["not_permitted"] == 1


def test_an_ipv6_echo_must_be_padded_so_that_knocked_is_no_larger():
    relay = Relay()
    number = relay.allocate(A)
    [(cookie, _)] = relay.send(wire.knock(number), V6B)  # a bare 16-byte knock: 16 back
    assert len(cookie) == 16
    assert relay.send(wire.knock(number, cookie[10:16]), V6B) == []  # 16-byte echo: 28 owed
    assert relay.layer.drop_counts() == {"short_knock": 1}
    [(knocked, dst)] = relay.send(wire.knock(number, cookie[10:16], ipv6=True), V6B)
    assert dst == A and len(knocked) == 28


def test_a_permit_is_refused_without_a_proof_in_ipv6_too():
    relay = Relay()
    number = relay.allocate(A)
    [(answer, _)] = relay.send(wire.permit(number, packed(V6B)), A)
    assert answer == wire.error(wire.PERMIT, wire.UNPROVEN_PEER, number)
    assert relay.send(wire.data(number, b"for the victim"), A) == []


@pytest.mark.parametrize("peer,reason", [
    (("::1", 5004), "forbidden_peer"),
    (("::", 5004), "forbidden_peer"),
    (("::ffff:203.0.113.9", 5004), "forbidden_peer"),  # IPv4-mapped: IPv4 travels in 6 bytes
    (("::203.0.113.9", 5004), "forbidden_peer"),  # IPv4-compatible
    (("fe80::1", 5004), "forbidden_peer"),
    (("ff02::1", 5004), "forbidden_peer"),
    (("100::1", 5004), "forbidden_peer"),  # discard-only
    (("fd00::1", 5004), "forbidden_private"),  # unique local
    (("fec0::1", 5004), "forbidden_private"),  # site-local
    (("64:ff9b::a00:1", 5004), "forbidden_private"),  # NAT64 of 10.0.0.1
    (("64:ff9b::7f00:1", 5004), "forbidden_peer"),  # NAT64 of 127.0.0.1
    (("2002:c0a8:101::1", 5004), "forbidden_private"),  # 6to4 of 192.168.1.1
    (("2002:7f00:1::1", 5004), "forbidden_peer"),  # 6to4 of 127.0.0.1
    (("2001:db8:1::99", 80), "forbidden_self"),  # the relay's own /64, any address, any port
    (V6A, "forbidden_self"),  # the owner itself
    (("64:ff9b::c633:6401", 5004), "forbidden_self"),  # NAT64 of the relay's IPv4 (R)
    (("2002:c633:6401::1", 5004), "forbidden_self"),  # 6to4 of the relay's IPv4
    (("2001:0:4136:e378:8000:63bf:39cc:9bfe", 5004), "forbidden_self"),  # Teredo, client R
    (("2001:0:4136:e378:8000:63bf:80ff:fffe", 5004), "forbidden_peer"),  # Teredo, 127.0.0.1
    (("2001:0:4136:e378:8000:63bf:f5ff:fffe", 5004), "forbidden_private"),  # Teredo, 10.0.0.1
    (("::ffff:0:7f00:1", 5004), "forbidden_peer"),  # IPv4-translated (SIIT) 127.0.0.1
    (("::ffff:0:cb00:7109", 5004), "forbidden_peer"),  # IPv4-translated 203.0.113.9
    (("2001:2::1", 5004), "forbidden_private"),  # benchmarking 2001:2::/48
])
def test_special_ipv6_peers_are_refused_and_counted(peer, reason):
    relay = Relay()
    number = relay.allocate(V6A)
    [(answer, dst)] = relay.send(wire.permit(number, packed(peer)), V6A)
    assert dst == V6A and answer == wire.error(wire.PERMIT, wire.FORBIDDEN_PEER, number)
    assert relay.layer.drop_counts() == {reason: 1}
    # and such an address cannot knock either: nothing is sent to it
    assert relay.send(wire.knock(number, ipv6=True), peer) == []
    assert relay.layer.drop_counts()[reason] == 2


OWNER4 = ("203.0.113.5", 5004)
OWN = [R, R6]


def nat64(ip: bytes) -> bytes:
    return bytes.fromhex("0064ff9b" + "00" * 8) + ip


def six_to_four(ip: bytes) -> bytes:
    return b"\x20\x02" + ip + bytes(10)


def teredo(ip: bytes) -> bytes:  # server 65.54.227.120, flags, port 40000 (inverted), client
    return bytes.fromhex("2001000041 36e378 8000 63bf".replace(" ", "")) + bytes(
        b ^ 0xFF for b in ip)


@given(st.ip_addresses(v=4), st.sampled_from([nat64, six_to_four, teredo]), st.booleans(),
       st.booleans())
def test_an_embedded_ipv4_address_is_judged_as_that_ipv4_address(ip, form, own, private):
    """NAT64, 6to4 and Teredo deliver to the IPv4 address they carry: the relay refuses the
    IPv6 form exactly when it refuses that IPv4 address (special, private, its own)."""
    mine = OWN + [(str(ip), 3478)] if own else OWN
    v6 = socket.inet_ntop(socket.AF_INET6, form(ip.packed))
    assert IPV4.forbidden((v6, 5004), OWNER4, mine, private) == \
        IPV4.forbidden((str(ip), 5004), OWNER4, mine, private)


@pytest.mark.parametrize("prefix", [48, 56, 64, 96])
def test_local_use_nat64_of_the_relays_own_ipv4_is_refused_at_every_prefix_length(prefix):
    """64:ff9b:1::/48: the operator picks the prefix length, so a LAN relay (forward_private)
    refuses its own IPv4 address wherever RFC 6052 may put it (bits 64-71 skipped)."""
    ip = bytes((198, 51, 100, 1))  # R
    head = bytes.fromhex("0064ff9b0001") + bytes(prefix // 8 - 6)
    joined = head + ip
    spread = joined if prefix == 96 else joined[:8] + b"\x00" + joined[8:]  # bits 64-71: 0
    v6 = socket.inet_ntop(socket.AF_INET6, (spread + bytes(16))[:16])
    assert IPV4.forbidden((v6, 5004), OWNER4, OWN, True) == "forbidden_self", v6
    assert IPV4.forbidden((v6, 5004), OWNER4, OWN[1:], True) is None  # not its own: a LAN's
    assert IPV4.forbidden((v6, 5004), OWNER4, OWN, False) == "forbidden_private"


@pytest.mark.parametrize("host", ["2001:db8::1", "2001:db8:ffff::1", "192.0.2.7", "198.51.100.9",
                                  "203.0.113.9", "198.18.2.2", "198.19.255.1"])
def test_documentation_and_testbed_ranges_stay_allowed(host):
    """Tests and the namespace testbed use these as public addresses (docs/security.md: the
    Internet routes none of them, so forwarding there reaches nothing)."""
    assert IPV4.forbidden((host, 5004), OWNER4, OWN, False) is None


def test_a_public_dual_stack_node_refuses_the_slash_64_of_each_address_it_is_told():
    """The daemon tells its node every address of its own (Node.set_nat's `own`), not only the
    public one it was seen at: its relay refuses a peer in its IPv6 /64 too."""
    from random import Random

    from kadtalk.node.routing.contacts import ContactRegistry
    from kadtalk.node.stack import Node

    me = identity("relay")
    node = Node(int.from_bytes(me.node_id, "big"), ContactRegistry(), Random(1), identity=me)
    node.set_relay_settings(RelaySettings(serve="auto"))
    node.set_nat("none", R, own=[R, R6])  # seen at R; also bound to R6
    relay = Relay()
    relay.layer = node.relay
    assert relay.layer.serving and relay.layer.public == (R, R6)
    number = relay.allocate(V6A)
    for peer, reason in ((("2001:db8:1::99", 80), "forbidden_self"),
                         (("2001:db8:1:0:abcd::1", 5004), "forbidden_self"),
                         (("64:ff9b::c633:6401", 5004), "forbidden_self")):
        [(answer, _)] = relay.send(wire.permit(number, packed(peer)), V6A)
        assert answer == wire.error(wire.PERMIT, wire.FORBIDDEN_PEER, number), peer
    assert relay.layer.drop_counts() == {"forbidden_self": 3}
    node.set_nat("cone", R, own=[R, R6])  # behind a NAT: no relaying, no public address
    assert node.relay.public == () and not node.relay.serving


def test_a_global_ipv6_peer_is_allowed():
    relay = Relay(RelaySettings(serve="always"))
    number = relay.allocate(A)
    assert len(relay.prove(number, ("2a00:1450:4001:82a::200e", 5004))) == 1


def test_the_per_host_cap_counts_an_ipv6_slash_64():
    relay = Relay(RelaySettings(serve="always", max_per_host=2))
    same = [("2001:db8:c:d::%x" % i, 5004) for i in (1, 2, 3)]
    relay.allocate(same[0], "h0")
    relay.allocate(same[1], "h1")
    nonce = bytes(16)
    [(challenge, _)] = relay.send(wire.hello(nonce), same[2])
    cookie, me = challenge[18:34], identity("h2")
    request = wire.allocate(nonce, cookie, 600, me.public_der,
                            me.sign(wire.signed_part(nonce, cookie, 600)))
    assert relay.send(request, same[2]) == [(wire.error(wire.ALLOCATE, wire.QUOTA, nonce),
                                             same[2])]
    relay.allocate(("2001:db8:c:e::1", 5004), "h3")  # the next /64 is another host
    assert len(relay.layer.server.allocations) == 3


def test_hellos_from_one_ipv6_slash_64_share_one_source_budget():
    relay = Relay()
    answered = sum(len(relay.send(wire.hello(bytes(16)), ("2001:db8:c:d::%x" % i, 5004)))
                   for i in range(1, 41))
    assert answered == SERVE.source_burst  # 5: one host, whatever address of its /64
    assert relay.layer.drop_counts()["rate_limited_source"] == 40 - SERVE.source_burst
    assert len(relay.send(wire.hello(bytes(16)), ("2001:db8:c:e::1", 5004))) == 1


# -- real sockets: a dual-stack relay on "::" with an IPv4 owner (127.0.0.1), an IPv6 peer (::1)


class LoopbackCodec(Codec):
    """The relay's rules but loopback peers allowed (everything here is on loopback); asked at
    PERMIT and KNOCK only."""

    def forbidden(self, peer, owner, own, forward_private):
        return "forbidden_peer" if self.to_wire(peer) is None else \
            "forbidden_self" if peer == owner else None


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_a_dual_stack_relay_on_real_sockets_joins_an_ipv4_owner_and_an_ipv6_peer():
    async def scenario():
        loop = asyncio.get_running_loop()
        driver = await start_node()  # "::" with IPV6_V6ONLY off: IPv4 too
        node = driver.node
        node.set_relay_settings(RelaySettings(serve="always"))
        node.relay.codec = LoopbackCodec(node.routing.registry)
        port = driver.address[1]
        owner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        owner6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        for sock, host in ((owner, "127.0.0.1"), (peer, "::1"), (owner6, "::1")):
            sock.bind((host, 0))
            sock.setblocking(False)
        to4, to6 = ("127.0.0.1", port), ("::1", port)

        async def ask(sock, data, relay):
            await loop.sock_sendto(sock, data, relay)
            answer, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
            assert source[:2] == relay
            return answer

        async def allocate(sock, relay, name):
            nonce = os.urandom(16)
            cookie = (await ask(sock, wire.hello(nonce), relay))[18:34]
            me = identity(name)
            return await ask(sock, wire.allocate(nonce, cookie, 600, me.public_der, me.sign(
                wire.signed_part(nonce, cookie, 600))), relay)

        try:
            granted = await allocate(owner, to4, "owner")
            granted6 = await allocate(owner6, to6, "owner6")
            number = granted[18:26]
            cookie = await ask(peer, wire.knock(number, ipv6=True), to6)
            await loop.sock_sendto(peer, wire.knock(number, cookie[10:16], ipv6=True), to6)
            knocked, _ = await asyncio.wait_for(loop.sock_recvfrom(owner, 2048), 5)
            permitted = await ask(owner, wire.permit(number, knocked[10:]), to4)
            data = wire.data(number, b"over the relay, IPv4 to IPv6")
            await loop.sock_sendto(owner, data, to4)
            got6, from6 = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 5)
            back = wire.data(number, b"and back")
            await loop.sock_sendto(peer, back, to6)
            got4, from4 = await asyncio.wait_for(loop.sock_recvfrom(owner, 2048), 5)
            return (granted, granted6, owner.getsockname(), owner6.getsockname(),
                    peer.getsockname(), cookie, knocked, permitted, (got6, from6[:2]),
                    (got4, from4), data, back, port, dict(node.relay.stats))
        finally:
            driver.close()
            for sock in (owner, peer, owner6):
                sock.close()

    (granted, granted6, at4, at6owner, at6, cookie, knocked, permitted, got6, got4, data, back,
     port, stats) = asyncio.run(scenario())
    assert len(granted) == 34 and granted[28:34] == packed(at4)  # reflexive: plain IPv4
    assert len(granted6) == 46 and granted6[28:46] == packed(at6owner[:2])  # reflexive: ::1
    assert len(cookie) == 16 and cookie[1] == wire.KNOCK_COOKIE
    assert len(knocked) == 28 and knocked[10:] == packed(at6[:2])  # the peer at ::1
    assert permitted == wire.permit(knocked[2:10], packed(at6[:2]), wire.PERMITTED)
    assert got6 == (data, ("::1", port))  # unchanged, from the relay's IPv6 address
    assert got4 == (back, ("127.0.0.1", port))  # and back over IPv4 (not ::ffff:127.0.0.1)
    assert stats["forwarded"] == 2 and stats["allocated"] == 2


def test_real_relay_clients_allocate_knock_permit_and_exchange_data_over_ipv6():
    """The client's side too (RelayClient inside RelayLayer, on MemoryNet): an IPv6 owner
    allocates at a dual-stack relay's IPv6 address, an IPv6 peer knocks (padded), is permitted,
    and data flows both ways; the relay drops nothing."""
    owner = V6A
    from kadtalk.node.relay import (AllocationGranted, Knocked, PermissionGranted,
                                    RelayedData)
    from kadtalk.transport.memory import MemoryNet
    net = MemoryNet()
    relay = RelayLayer(identity("relay"), SERVE)
    relay.set_public([R, R6])
    net.attach(R6, relay)
    net.attach(owner, RelayLayer(identity("owner")))
    net.attach(V6B, RelayLayer(identity("peer")))
    net.nodes[owner].allocate(R6, 0.0)
    net.service(owner)
    net.run_until(1.0)
    [granted] = [e for e in net.events[owner] if type(e) is AllocationGranted]
    assert granted.reflexive == owner
    net.nodes[V6B].knock(granted.path, 1.0)
    net.service(V6B)
    net.run_until(2.0)
    [knocked] = [e for e in net.events[owner] if type(e) is Knocked]
    assert knocked.peer == V6B
    net.nodes[owner].permit(granted.path, knocked.peer, 2.0)
    net.service(owner)
    net.run_until(3.0)
    assert [e.peer for e in net.events[owner] if type(e) is PermissionGranted] == [V6B]
    net.nodes[owner].send(granted.path, b"to the peer", 3.0)
    net.nodes[V6B].send(granted.path, b"to the owner", 3.0)
    net.service(owner)
    net.service(V6B)
    net.run_until(4.0)
    assert [e.payload for e in net.events[V6B] if type(e) is RelayedData] == [b"to the peer"]
    assert [e.payload for e in net.events[owner] if type(e) is RelayedData] == [b"to the owner"]
    assert not dict(relay.drop_counts())
