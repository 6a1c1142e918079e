"""A relay that alters, drops, replays or forges what it forwards can break a call, never read
or forge it: the session's keys and AEAD are end to end, and the relay sees only ciphertext
(docs/security.md; the session layers here are the real ones, in whole nodes)."""

from __future__ import annotations

from random import Random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kadtalk.node.relay import wire
from kadtalk.node.session import SessionLayer
from kadtalk.node.session.handshake import ephemeral_spki, id_of, make_key_res
from kadtalk.node.session.events import CallEnded, MediaReceived
from kadtalk.node.session.state import EndReason
from kadtalk.node.session.wire import KEY_REQ, KEY_RES, MEDIA, decode_key
from kadtalk.transport.memory import Packet, Route

from .calls import WALL, A, B, R, place_call, relay_path, world
from .conftest import identity

SECRET = b"SECRET-AUDIO-FRAME"


class Relay:
    """What leaves R, as a malicious relay changes it: `alter(packet)` returns the packets to
    deliver instead (none drops it); everything that passed through R is logged."""

    def __init__(self, alter=None):
        self.alter = alter
        self.seen: list[bytes] = []

    def __call__(self, route: Route) -> Route:
        def hook(packet: Packet, now: float):
            if packet.src == R or packet.dst == R:
                self.seen.append(packet.payload)
            out = [packet]
            if packet.src == R and packet.payload[1:2] == bytes((wire.DATA,)) \
                    and self.alter is not None:
                out = self.alter(packet, now)
            return [hop for p in out for hop in route(p, now)]
        return hook


def talking(malice: Relay):
    net, _ = world(malice)
    path, _ = relay_path(net)
    assert place_call(net, path, limit=30.0) == ["talking"]
    a, b = net.nodes[A], net.nodes[B]
    sid_a = [e.session_id for e in net.events[A] if hasattr(e, "session_id")][0]
    return net, a, b, sid_a


def media(net, a, sid_a, count: int = 10) -> None:
    now = net.now
    for i in range(count):
        a.send_media(sid_a, SECRET + bytes([i]), now)
        net.service(A)
        now += 0.02
        net.run_until(now)


def session_of(datagram: bytes) -> int:
    return datagram[wire.HEADER] if len(datagram) > wire.HEADER else -1


def test_an_honest_relay_sees_only_ciphertext():
    malice = Relay()
    net, a, b, sid_a = talking(malice)
    media(net, a, sid_a)
    assert len(net.of(B, MediaReceived)) == 10
    assert malice.seen and not any(SECRET in p for p in malice.seen)


def test_altered_datagrams_are_rejected_by_the_session_aead_and_counted():
    flipping = []

    def flip(packet: Packet, now: float) -> list[Packet]:
        data = packet.payload
        if flipping and session_of(data) == MEDIA:
            data = data[:-1] + bytes([data[-1] ^ 1])  # one bit of the ciphertext or tag
        return [packet._replace(payload=data)]

    net, a, b, sid_a = talking(Relay(flip))
    flipping.append(True)
    media(net, a, sid_a)
    assert net.of(B, MediaReceived) == []  # nothing altered is ever played
    assert b.drop_counts()["auth_failed"] == 10


def test_replayed_datagrams_are_dropped_by_the_replay_window_and_counted():
    def twice(packet: Packet, now: float) -> list[Packet]:
        return [packet, packet] if session_of(packet.payload) == MEDIA else [packet]

    net, a, b, sid_a = talking(Relay(twice))
    media(net, a, sid_a)
    assert [e.payload for e in net.of(B, MediaReceived)] == [SECRET + bytes([i])
                                                             for i in range(10)]
    assert b.drop_counts()["duplicate"] == 10


def test_a_relay_that_drops_everything_ends_the_call_it_cannot_read():
    dropping = []

    def drop(packet: Packet, now: float) -> list[Packet]:
        return [] if dropping else [packet]

    net, a, b, sid_a = talking(Relay(drop))
    dropping.append(True)
    net.run_until(net.now + 60.0)
    ends = net.of(A, CallEnded)
    assert [e.reason for e in ends] == [EndReason.PEER_VANISHED]


@pytest.mark.parametrize("claimed, reason", [("mallory", "wrong_identity"),
                                              ("bob", "bad_signature")])
def test_a_relay_cannot_answer_for_the_callee(claimed, reason):
    """Mallory, the relay, drops B's KEY_RES and answers A's KEY_REQ with a KEY_RES of its own,
    signed with its key, naming its own identity or B's. (It cannot even accept A's KEY_REQ as
    a callee: A signed it for B's ID.) Every forged KEY_RES fails; the call never starts."""
    mallory, bob = identity("mallory"), identity("bob")
    forged: list = []

    def forge(packet: Packet, now: float) -> list[Packet]:
        data, to_a = packet.payload, packet.dst == A  # (the hook sees addresses inside NATs)
        kind = session_of(data)
        if kind == KEY_RES and to_a:
            return []  # B's genuine answer never arrives
        if kind == KEY_REQ and not to_a:  # A's KEY_REQ on its way to B: Mallory answers it
            as_callee = SessionLayer(mallory, Random(9), None, WALL)
            as_callee.receive_datagram(data[wire.HEADER:], "a", now)
            assert as_callee.stats == {"bad_signature": 1}  # signed for B's ID, not Mallory's
            assert as_callee.datagrams_to_send(now) == []
            req = decode_key(data[wire.HEADER:])
            eph = ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
            res = make_key_res(mallory.sign, identity(claimed).public_der, id_of(req.identity),
                               bob.node_id, req.timestamp, req.timestamp, req.ephemeral, eph)
            forged.append(res)
            return [packet, Packet(R, A, data[:wire.HEADER] + res)]
        return [packet]

    net, _ = world(Relay(forge))
    path, _ = relay_path(net)
    assert place_call(net, path, limit=60.0) == ["auth_failure"]
    assert forged and net.nodes[A].drop_counts()[reason] == len(forged)
