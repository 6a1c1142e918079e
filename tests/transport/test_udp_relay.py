"""The UDP driver's fast path for relayed DATA (transport/udp.py `UdpDriver._reader`,
`RelayLayer.forward`), on real sockets: a DATA naming one of the node's allocations goes
through the relay server's rules and straight back out, with no hand-out, transmit or timer
re-check; everything else, bad input included, takes the node's ordinary path and is counted
there. A quiet socket is read one datagram per wake-up, a busy one drained."""

from __future__ import annotations

import asyncio
import os
import socket

from benchmarks.relay import LoopbackCodec
from kadtalk.node.identity import Identity
from kadtalk.node.relay import RelaySettings, wire
from kadtalk.node.relay.addresses import Codec
from kadtalk.transport import udp
from kadtalk.transport.udp import start_node

HOST = "127.0.0.1"
SETTINGS = RelaySettings(serve="always")


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


async def _ask(sock: socket.socket, data: bytes, relay: tuple) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, relay)
    answer, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 5)
    return answer


async def _linked(driver: udp.UdpDriver) -> tuple[socket.socket, socket.socket, bytes]:
    """An owner socket holding an allocation at `driver`'s relay with a peer socket permitted
    (HELLO, CHALLENGE, ALLOCATE; KNOCK, cookie echo; PERMIT), by hand with the wire helpers."""
    relay = driver.address
    owner, peer = _socket(), _socket()
    nonce = os.urandom(16)
    cookie = (await _ask(owner, wire.hello(nonce), relay))[18:34]
    me = Identity.generate()
    granted = await _ask(owner, wire.allocate(nonce, cookie, 600, me.public_der, me.sign(
        wire.signed_part(nonce, cookie, 600))), relay)
    number = granted[18:26]
    knock_cookie = (await _ask(peer, wire.knock(number), relay))[10:16]
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(peer, wire.knock(number, knock_cookie), relay)  # the echo: KNOCKED
    knocked, _ = await asyncio.wait_for(loop.sock_recvfrom(owner, 2048), 5)  # to the owner
    assert knocked[1] == wire.KNOCKED
    permitted = await _ask(owner, wire.permit(number, Codec().to_wire(peer.getsockname())),
                           relay)
    assert permitted[1] == wire.PERMITTED
    return owner, peer, number


async def _relay(buffer: int | None = None) -> udp.UdpDriver:
    driver = await start_node(host=HOST, buffer=buffer)
    driver.node.set_relay_settings(SETTINGS)
    driver.node.relay.codec = LoopbackCodec(driver.node.routing.registry)  # all on loopback
    return driver


def _drain(sock: socket.socket) -> list[tuple[bytes, tuple]]:
    got = []
    while True:
        try:
            got.append(sock.recvfrom(4096))
        except BlockingIOError:
            return got


def test_relayed_data_is_forwarded_unchanged_without_a_transmit_or_a_timer_check():
    async def scenario():
        driver = await _relay()
        owner, peer, number = await _linked(driver)
        transmits = []
        real = driver.transmit
        driver.transmit = lambda: (transmits.append(1), real())[1]
        try:
            there, back = wire.data(number, b"to the peer"), wire.data(number, b"to the owner")
            owner.sendto(there, driver.address)
            await asyncio.sleep(0.05)
            peer.sendto(back, driver.address)
            await asyncio.sleep(0.05)
            return (_drain(peer), _drain(owner), transmits, dict(driver.node.relay.stats),
                    driver.address, there, back)
        finally:
            driver.close()
            owner.close()
            peer.close()

    got_peer, got_owner, transmits, stats, relay, there, back = asyncio.run(scenario())
    assert got_peer == [(there, relay)] and got_owner == [(back, relay)]  # byte for byte
    assert stats["forwarded"] == 2 and stats["forwarded_bytes"] == len(there) + len(back)
    assert transmits == []  # neither datagram drew a transmit (nor the timer check in it)


def test_bad_input_takes_the_ordinary_path_and_is_counted_and_nothing_is_forwarded():
    """Empty, one byte, a header short of DATA's, DATA over MAX_PAYLOAD, another op, an
    unknown allocation, DATA from a stranger: none reaches the owner or the peer, each is a
    counted drop (the driver's or the relay's), and relayed DATA still flows after them."""
    async def scenario():
        driver = await _relay()
        owner, peer, number = await _linked(driver)
        stranger = _socket()
        try:
            bad = [b"", bytes([wire.RELAY]), wire.data(number, b"")[:9],
                   wire.data(number, bytes(wire.MAX_PAYLOAD + 1)),
                   bytes([wire.RELAY, 0x7f]) + number + b"x",  # no such op
                   wire.data(bytes(8), b"unknown allocation")]
            for data in bad:
                owner.sendto(data, driver.address)
            stranger.sendto(wire.data(number, b"not permitted"), driver.address)
            await asyncio.sleep(0.1)
            before = (_drain(owner), _drain(peer), _drain(stranger))
            good = wire.data(number, b"still relayed")
            owner.sendto(good, driver.address)
            await asyncio.sleep(0.05)
            return (before, _drain(peer), good, driver.node.relay.drop_counts(),
                    driver.node.relay.stats["forwarded"], driver.node._upper.stats)
        finally:
            driver.close()
            for s in (owner, peer, stranger):
                s.close()

    before, after, good, drops, forwarded, node_drops = asyncio.run(scenario())
    assert before == ([], [], [])  # nothing answered, nothing forwarded
    assert [data for data, _ in after] == [good] and forwarded == 1
    # the relay's reasons: 1-byte, short and long DATA and the unknown op are malformed; the
    # unknown allocation is not ours (nor a path of ours: the client role counts it); the
    # stranger is neither the owner nor its peer
    assert drops == {"malformed": 4, "unknown_allocation": 1, "not_permitted": 1}
    assert node_drops is not None and node_drops["empty"] == 1  # the node's own count


def test_a_quiet_socket_is_read_once_per_wake_up_and_a_burst_is_drained():
    """The first datagram after a pause is read alone (no second recvfrom finding nothing);
    a burst queued meanwhile brings the loop straight back, and that wake-up drains it:
    every datagram of the burst is forwarded once, in order."""
    async def scenario():
        driver = await _relay(buffer=1 << 20)
        owner, peer, number = await _linked(driver)
        reads = []
        try:
            await asyncio.sleep(2 * udp.UdpDriver.BUSY)  # a pause: the socket is quiet
            burst = [wire.data(number, b"%d" % i) for i in range(50)]
            for data in burst:  # sent while the loop does not run: all queued at once
                owner.sendto(data, driver.address)
            handle = driver.loop._selector.get_key(driver._fd).data[0]  # the reader's
            callback = handle._callback  # wake-ups, counted

            def counting():
                before = driver.node.relay.stats["forwarded"]
                callback()
                reads.append(driver.node.relay.stats["forwarded"] - before)
            handle._callback = counting
            for _ in range(100):
                await asyncio.sleep(0.01)
                if driver.node.relay.stats["forwarded"] >= len(burst):
                    break
            return [d for d, _ in _drain(peer)], burst, reads
        finally:
            driver.close()
            owner.close()
            peer.close()

    got, burst, per_wakeup = asyncio.run(scenario())
    assert got == burst  # each once, in order
    # one datagram alone (quiet), then the rest drained ([1, 49] unless this process was
    # descheduled for over BUSY between the two wake-ups)
    assert per_wakeup[0] == 1 and max(per_wakeup) > 1 and sum(per_wakeup) == len(burst)


def test_a_forwarded_copy_the_kernel_refuses_is_counted_and_the_driver_goes_on():
    class Refusing:
        """The relay's socket, except that sending to the peer fails (a full send buffer)."""

        def __init__(self, sock, refused):
            self._sock, self.refused = sock, refused

        def sendto(self, data, addr):
            if addr == self.refused:
                raise BlockingIOError("send buffer full")
            return self._sock.sendto(data, addr)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    async def scenario():
        driver = await _relay()
        owner, peer, number = await _linked(driver)
        node, sock = driver.node, driver.sock
        driver.loop.remove_reader(driver._fd)
        driver.sock = Refusing(sock, peer.getsockname())
        driver.loop.add_reader(driver._fd, driver._reader())  # bound to the refusing send
        try:
            owner.sendto(wire.data(number, b"refused"), driver.address)
            await asyncio.sleep(0.05)
            peer.sendto(wire.data(number, b"goes"), driver.address)
            await asyncio.sleep(0.05)
            return driver.send_failed, [d for d, _ in _drain(owner)], node.relay.stats, number
        finally:
            driver.sock = sock
            driver.close()
            owner.close()
            peer.close()

    failed, got, stats, number = asyncio.run(scenario())
    assert failed == 1  # counted as a refused send
    assert got == [wire.data(number, b"goes")]  # and the next one went
    assert stats["forwarded"] == 2  # the relay's rules passed both


def test_a_receive_error_on_a_quiet_or_a_busy_socket_loses_only_that_read():
    """An error `recvfrom` raises (an ICMP error queued on the socket, say) is skipped, on the
    quiet path (one read a wake-up: the loop calls back for the datagram behind it) as in a
    busy batch, and every datagram is still forwarded once, in order."""
    class Failing:
        """The relay's socket, except that chosen reads raise first (before the datagram)."""

        def __init__(self, sock, fail_at):
            self._sock, self.fail_at, self.reads = sock, set(fail_at), 0

        def recvfrom(self, size):
            self.reads += 1
            if self.reads in self.fail_at:
                raise ConnectionRefusedError("port unreachable")
            return self._sock.recvfrom(size)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    async def scenario(burst_size):
        driver = await _relay(buffer=1 << 20)
        owner, peer, number = await _linked(driver)
        sock = driver.sock
        driver.loop.remove_reader(driver._fd)
        driver.sock = failing = Failing(sock, fail_at=(1, 3))
        driver.loop.add_reader(driver._fd, driver._reader())  # reading the failing socket
        try:
            await asyncio.sleep(2 * udp.UdpDriver.BUSY)  # quiet
            sent = [wire.data(number, b"%d" % i) for i in range(burst_size)]
            for data in sent:
                owner.sendto(data, driver.address)
                if burst_size == 1:
                    break
            for _ in range(100):
                await asyncio.sleep(0.01)
                if driver.node.relay.stats["forwarded"] >= len(sent):
                    break
            return [d for d, _ in _drain(peer)], sent, failing.reads
        finally:
            driver.sock = sock
            driver.close()
            owner.close()
            peer.close()

    got, sent, reads = asyncio.run(scenario(1))  # quiet: the error, then the datagram
    assert got == sent and reads >= 2
    got, sent, reads = asyncio.run(scenario(20))  # a burst: errors on the quiet read and in
    assert got == sent and reads >= 22  # the batch; each datagram forwarded once, in order
