"""Real UDP sockets on 127.0.0.1: a swarm of a few dozen nodes finds every member."""

from __future__ import annotations

import asyncio
import socket

import pytest

from kadtalk.node.routing.events import Joined
from kadtalk.node.routing.layer import RoutingSettings
from kadtalk.node.routing.messages import RouteRequest, encode_request
from kadtalk.transport.udp import parse_hostport, start_node, start_swarm


def free_port_range(count: int) -> int:
    """A base port with `count` free UDP ports after it (checked by binding them)."""
    for base in range(20000, 60000, 997):
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def test_swarm_of_real_udp_nodes_finds_every_member():
    async def scenario():
        base = free_port_range(40)
        swarm = await start_swarm(40, base)
        client = await start_node(host="127.0.0.1")
        try:
            joined = await client.join([("127.0.0.1", base)])
            assert joined.success
            results = [await client.find_peer(d.node.node_id) for d in swarm]
            # the join's answers from new addresses entered once they answered address probes
            assert len(client.node.routing.table) >= 20
            return swarm, results
        finally:
            client.close()
            for d in swarm:
                d.close()

    swarm, results = asyncio.run(scenario())
    for driver, result in zip(swarm, results):
        assert result.peer == (driver.node.node_id, ("127.0.0.1", driver.address[1]))
    assert max(r.hops for r in results) <= 3


def test_garbage_datagrams_on_a_real_socket_are_counted_not_fatal():
    async def scenario():
        node = await start_node(host="127.0.0.1")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            target = node.address
            for payload in (b"", b"\x09hello", b"\x00" * 10, b"\x01" + b"\x00" * 45, b"\x00" * 2000):
                sender.sendto(payload, target)
            # a valid request afterwards is still answered
            sender.sendto(encode_request(RouteRequest(12345, 678)), target)
            sender.settimeout(5)
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, sender.recv, 2048)
            return answer, node.node.drop_counts()
        finally:
            sender.close()
            node.close()

    answer, drops = asyncio.run(scenario())
    assert answer[0] == 0x01 and len(answer) == 41
    assert sum(drops.values()) == 5
    assert drops["empty"] == 1 and drops["unknown_type"] == 1 and drops["truncated"] == 1


def test_join_through_a_silent_address_reports_failure():
    async def scenario():
        base = free_port_range(1)
        node = await start_node(host="127.0.0.1")
        node.node.routing.settings  # default timeout 1 s
        try:
            return await node.join([("127.0.0.1", base)])
        finally:
            node.close()

    joined = asyncio.run(scenario())
    assert not joined.success and joined.timeouts == 1


@pytest.mark.parametrize("text", ["nocolon", ":5004", "host:port", "127.0.0.1:0", "127.0.0.1:70000",
                                  "no-such-host.invalid:5004"])
def test_parse_hostport_rejects_with_a_clear_message(text):
    with pytest.raises(ValueError, match=repr(text).strip("'")[:5]):
        parse_hostport(text)


def test_parse_hostport_resolves():
    assert parse_hostport("localhost:5004") == ("127.0.0.1", 5004)


def test_a_bare_request_on_a_real_socket_is_not_amplified():
    """The reflection attack on nanotalk: 41 bytes in, up to 561 out. Here at most 3x comes back
    to an address that never answered us, and a padded request still gets the full answer."""

    async def scenario():
        base = free_port_range(24)
        swarm = await start_swarm(24, base)
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        attacker.settimeout(5)
        loop = asyncio.get_running_loop()
        try:
            server = swarm[0].address
            replies, probes = [], []
            for padding in (0, 146):
                attacker.sendto(encode_request(RouteRequest(4242, 99), padding), server)
                reply = await loop.run_in_executor(None, attacker.recv, 2048)
                if reply[0] != 0x01:  # the address probe of a new requester (issue 17)
                    probes.append(reply)
                    reply = await loop.run_in_executor(None, attacker.recv, 2048)
                replies.append(reply)
            return replies, probes
        finally:
            attacker.close()
            for d in swarm:
                d.close()

    (bare, padded), probes = asyncio.run(scenario())
    # a new requester is also sent one 41-byte probe, counted within the 3x
    assert [len(p) for p in probes] == [41]
    assert len(bare) + 41 <= 3 * 41 and len(bare) == 41 + 1 * 26
    assert len(padded) == 41 + 20 * 26  # 561 = 3 x 187 (the probe was already outstanding)


def test_two_concurrent_joins_both_complete_with_their_own_results():
    """Join results carry their lookup's id: two joins at once each resolve (waiters used to be
    keyed by the event type only, leaving one future for ever unresolved)."""

    async def scenario():
        base = free_port_range(6)
        swarm = await start_swarm(6, base)
        client = await start_node(host="127.0.0.1")
        try:
            return await asyncio.wait_for(asyncio.gather(
                client.join([swarm[0].address]), client.join([swarm[3].address])), 20)
        finally:
            client.close()
            for d in swarm:
                d.close()

    first, second = asyncio.run(scenario())
    assert first.success and second.success
    assert first.lookup_id != second.lookup_id


def test_a_callback_issuing_commands_never_reenters_the_hand_out():
    """The driver hands events out, then transmits; a command from inside the callback sends
    its datagrams when the hand-out ends, and its events follow, in order, after the callback
    returns."""

    async def scenario():
        base = free_port_range(4)
        swarm = await start_swarm(4, base)
        depth, seen, started = [0], [], []
        client = None

        def on_event(event):
            depth[0] += 1
            try:
                seen.append((type(event).__name__, depth[0]))
                if type(event) is Joined:
                    for d in swarm[1:]:  # a command from inside the hand-out
                        started.append(client.node.find_closest(d.node.node_id, client.loop.time()))
                        client.service()
            finally:
                depth[0] -= 1

        client = await start_node(host="127.0.0.1", on_event=on_event)
        try:
            await asyncio.wait_for(client.join([swarm[0].address]), 10)
            while len(seen) < 1 + len(started):
                await asyncio.sleep(0.01)
            return seen, started
        finally:
            client.close()
            for d in swarm:
                d.close()

    seen, started = asyncio.run(scenario())
    assert seen[0][0] == "Joined" and len(started) == 3
    assert [name for name, _ in seen[1:]] == ["LookupCompleted"] * 3
    assert all(depth == 1 for _, depth in seen)  # never a callback inside a callback


def test_a_callback_that_raises_still_lets_the_queued_datagrams_go():
    """The hand-out transmits in its `finally`: a callback that issues a command and then raises
    (a bug in an owner's code) must not leave the command's requests unsent or the timer
    unarmed. Checked at the moment the exception reaches the event loop."""

    async def scenario():
        base = free_port_range(4)
        swarm = await start_swarm(4, base)
        loop = asyncio.get_running_loop()
        seen = []  # (exception, datagrams still queued, driver timer armed by the node's)
        client = None

        def on_error(_loop, context):
            queued = list(client.node.datagrams_to_send(loop.time()))
            deadline = client.node.get_timer()
            seen.append((context.get("exception"), len(queued), deadline is not None
                         and client._timer_at is not None and client._timer_at <= deadline))
            for data, addr in queued:  # let the rest of the run go on as it would have
                client.sock.sendto(data, addr)

        loop.set_exception_handler(on_error)

        def on_event(event):
            if type(event) is Joined and not seen:
                client.node.find_closest(swarm[2].node.node_id, loop.time())
                raise RuntimeError("a bug in the callback")

        client = await start_node(host="127.0.0.1", on_event=on_event)
        try:
            joining = asyncio.ensure_future(client.join([swarm[0].address]))
            for _ in range(1000):
                if seen:
                    break
                await asyncio.sleep(0.01)
            joining.cancel()
            return seen
        finally:
            client.close()
            for d in swarm:
                d.close()

    seen = asyncio.run(scenario())
    assert seen and isinstance(seen[0][0], RuntimeError)  # the bug is reported, not hidden
    assert seen[0][1] == 0  # the lookup's requests had gone
    assert seen[0][2]  # and the timer was re-armed for what the node wants next


def test_nodes_with_b_bits_a_hop_join_and_find_each_other():
    """bucket_bits = 3 (Kademlia's b bits a hop: 4 buckets for each prefix length) on real
    sockets: a small swarm joins, and a newcomer with the same setting finds every member."""
    settings = RoutingSettings(bucket_bits=3)

    async def scenario():
        base = free_port_range(16)
        swarm = await start_swarm(16, base, settings=settings)
        client = await start_node(host="127.0.0.1", settings=settings)
        try:
            joined = await client.join([swarm[5].address])
            results = [await client.find_peer(d.node.node_id) for d in swarm]
            tables = [d.node.routing.table for d in (*swarm, client)]
            return swarm, joined, results, tables
        finally:
            client.close()
            for d in swarm:
                d.close()

    swarm, joined, results, tables = asyncio.run(scenario())
    assert joined.success
    for driver, result in zip(swarm, results):
        assert result.peer == (driver.node.node_id, ("127.0.0.1", driver.address[1]))
    assert all(d.node.routing.settings.bucket_bits == 3 for d in swarm)
    # the tables are split: buckets come in whole groups of 2^(3-1), and with 16 peers every
    # node holds some of them (a member's table the other members the join and refreshes met)
    assert all(t.bucket_count() % 4 == 0 and len(t) >= 1 for t in tables)
