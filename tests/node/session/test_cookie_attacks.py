"""Issue 17 attacks 2 and 4 as reported, in the sans-I/O layer: KEY_RES amplification by an RSA-8192
daemon, and an honest caller locked out by a flood of 20,000 valid KEY_REQs from forged sources.
This file imports nothing the fix added, so the very same tests run against the code before it,
where both fail (docs/security.md, the session rows)."""

from __future__ import annotations

from random import Random

from cryptography.hazmat.primitives.asymmetric import ec

from kadtalk.node.session import CallState, IncomingCall, SessionLayer, SessionSettings
from kadtalk.node.session import handshake as hs
from kadtalk.node.session import layer as layer_module
from kadtalk.node.session.wire import COOKIE
from kadtalk.transport.memory import MemoryNet, Packet

from .conftest import WALL, as_int, identity

CALLER, CALLEE = ("198.51.100.7", 4000), ("203.0.113.1", 5000)


def fresh_key_req(sender, callee_id: bytes, now: float) -> bytes:
    eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    return hs.make_key_req(sender.sign, sender.public_der, sender.node_id, callee_id, eph,
                           round((WALL + now) * 1000))


def test_the_attack_8_copies_of_a_208_byte_key_req_to_an_rsa_8192_daemon():
    """Issue 17 attack 2 as reported: before, 5 answers of 2,186 bytes (10.5x)."""
    callee = SessionLayer(identity("rsa8192", "callee"), Random(1), None, WALL)
    req = fresh_key_req(identity("ed25519", "attacker"), callee.own_id, 1.0)
    assert len(req) == 208
    sent = []
    for copy in range(8):
        sent += answers(callee, req, 1.0 + copy)
    assert sent and all(len(d) == 34 and d[0] == COOKIE for d in sent)
    assert sum(map(len, sent)) <= len(req) * 8 // 6  # 34 bytes per 208: 0.16x
    assert not callee.sessions and not callee.pending_handshakes  # nothing signed, nothing kept


def answers(layer: SessionLayer, data: bytes, now: float) -> list[bytes]:
    layer.receive_datagram(data, ("192.0.2.66", 9), now)
    return [d for d, _ in layer.datagrams_to_send(now)]


def flood_key_reqs(callee_id: bytes, count: int, span: float) -> list[tuple[float, bytes, tuple]]:
    """`count` valid KEY_REQs (8 identities, a fresh ephemeral key and timestamp each) from
    distinct forged sources, evenly over `span` seconds."""
    senders = [identity("p256", f"flooder{i}") for i in range(8)]
    out = []
    for i in range(count):
        t = i * span / count
        me = senders[i % 8]
        eph = hs.ephemeral_spki(ec.generate_private_key(ec.SECP256R1()).public_key())
        data = hs.make_key_req(me.sign, me.public_der, me.node_id, callee_id, eph,
                               round((WALL + t) * 1000))
        out.append((t, data, (f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 1024 + i % 50000)))
    return out


def test_an_honest_call_sets_up_during_a_flood_of_20000_valid_key_reqs_from_forged_sources(
        monkeypatch):
    """Issue 17 attack 4: 20,000 valid KEY_REQs from distinct forged sources within 1 s of
    simulated time; an honest caller (10 ms one way, receiving at its real address) calls at
    0.2 s. It must ring before the flood ends; before the fix its KEY_REQs were all refused
    (`rate_limited`) and the call ended `unreachable`."""
    verified = []
    real = layer_module.check_signature
    monkeypatch.setattr(layer_module, "check_signature",
                        lambda *a: (verified.append(1), real(*a))[1])
    callee = SessionLayer(identity("p256", "callee"), Random(1), None, WALL)
    caller = SessionLayer(identity("p256", "caller"), Random(2), None, WALL)
    flood = flood_key_reqs(callee.own_id, 20_000, 1.0)
    answered = {"bytes": 0, "count": 0}

    def route(packet: Packet, now: float) -> tuple:
        if packet.src not in net.nodes:  # the flood, injected at the callee: arrives at once
            return ((0.0, packet),)
        if packet.dst in net.nodes:
            return ((0.01, packet),)
        answered["bytes"] += len(packet.payload)  # to a forged source: lost
        answered["count"] += 1
        return ()

    net = MemoryNet(route)
    net.attach(CALLER, caller)
    net.attach(CALLEE, callee)
    sid = None
    rang_at = None
    for t, data, src in flood:
        net.run_until(t)
        if sid is None and t >= 0.2:
            sid = caller.call(as_int(callee.identity), t, addr=CALLEE)
            net.service(CALLER)
        net.send(Packet(src, CALLEE, data))
        net.run_until(t)
        events = net.events[CALLEE]
        if events:
            if rang_at is None and any(type(e) is IncomingCall for e in events):
                rang_at = t
            events.clear()
    net.run_until(1.0)
    assert rang_at is not None and caller.state_of(sid) is CallState.RINGING, (
        caller.state_of(sid), dict(callee.stats))
    assert rang_at < 0.3  # two round trips (cookie, then KEY_RES) after 0.2 s
    # the flood cost at most half the burst of signature checks, then only cookie replies
    assert len(verified) <= 100 * SessionSettings().load_threshold + 5
    assert callee.stats["cookie_sent"] >= 19_900
    assert answered["bytes"] <= 3 * sum(len(d) for _, d, _ in flood)
