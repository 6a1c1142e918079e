"""Fuzzing at scale: every parser that reads bytes from the network or a client, fed by hypothesis.

One target per parser; each runs `--inputs` inputs (default 100,000) drawn by hypothesis from a
mix of random bytes, valid messages mutated (truncated, extended, bits flipped, body replaced)
and well-formed messages with random fields. An input "crashes" when the code under test raises
anything but its own documented drop exception, or breaks an invariant the target checks:

  routing-decode  node/routing/messages.decode: MalformedMessage or a message that re-encodes
                  to the bytes it came from (padding aside);
  routing-layer   a routing-only Node.receive_datagram with lookups in flight (so responses
                  meet pending requests), timers fired: nothing raises, and an answer to an
                  address that has not answered us is at most 3x its request (anti-amplification);
  session-key     KEY_REQ / KEY_RES: wire.decode_key, then a session layer whose caller waits
                  for a KEY_RES and whose callee takes KEY_REQs: nothing raises; nothing rings
                  (a ring needs an authenticated RING after a verified exchange);
  session-stream  MEDIA / SIGNAL to a layer in a call: raw and mutated packets, and random
                  plaintexts sealed with the peer's real stream key (so signal parsing and the
                  call state machine see them): nothing raises;
  session-cookie  COOKIE (0x07): wire.decode_cookie, then a caller waiting with a cookie-less
                  KEY_REQ and a callee that demands cookies (always under load): nothing
                  raises; the callee never answers more than 3x a datagram with anything but a
                  valid cookie (its KEY_RES only to a retry whose cookie proves the address);
  traversal       NAT traversal (0x06: ADDR_REQ/RES, PUNCH_REQ/FWD, PUNCH) through a Node with
                  traversal on: nothing raises; no answer to the sender is larger than its request;
  control-json    the daemon's control framing (app/protocol.py): LineBuffer over random chunks,
                  then parse: BadRequest, or a dict with a string "cmd"; no line over the limit;
  websocket       the web bridge (app/web.py): random HTTP upgrade requests through websockets'
                  parser and the bridge's checks (token, Host, Origin), then random frames on an
                  open connection: nothing raises out of the parser or the checks.

    python -m benchmarks.fuzz                     # 100,000 inputs per target (a few minutes)
    python -m benchmarks.fuzz --quick             # smoke run, 300 inputs per target
    python -m benchmarks.fuzz --targets routing-decode --inputs 1000000
    python -m benchmarks.fuzz --json out.json     # also write the counts as JSON

Exit status 1 if any target crashed; the first crashing inputs are printed (hex).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass
from random import Random
from typing import Any, Callable

if __package__ in (None, ""):  # run as a file: python benchmarks/fuzz.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from benchmarks.common import emit_json, environment, positive_int  # noqa: E402
from kadtalk.node.routing.contacts import ContactRegistry, ipv4_from_wire, ipv4_to_wire  # noqa: E402
from kadtalk.node.routing.layer import RoutingSettings  # noqa: E402
from kadtalk.node.routing.messages import (  # noqa: E402
    REQUEST_SIZE,
    MalformedMessage,
    RouteRequest,
    RouteResponse,
    decode,
    encode_request,
    encode_response,
)
from kadtalk.node.stack import Node  # noqa: E402

DEFAULT_INPUTS = 100_000
QUICK_INPUTS = 300
WALL = 1_767_225_600.0  # session layers' wall clock at now = 0


# -- strategies ------------------------------------------------------------------------------------

MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 4096)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("flip"), st.integers(0, 4096 * 8)),
    st.tuples(st.just("set"), st.integers(0, 4096), st.integers(0, 255)),
    st.tuples(st.just("body"), st.binary(max_size=200)),
)


def mutate(data: bytes, how: tuple) -> bytes:
    if not data:
        return data
    kind = how[0]
    if kind == "truncate":
        return data[: how[1] % len(data)]
    if kind == "extend":
        return data + how[1]
    if kind == "flip":
        bit = how[1] % (len(data) * 8)
        return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << (bit % 8))]) + data[bit // 8 + 1 :]
    if kind == "set":
        i = how[1] % len(data)
        return data[:i] + bytes([how[2]]) + data[i + 1 :]
    return data[:1] + how[1]  # the same type byte, any body


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid message from `seeds`, with one to four mutations."""
    return st.builds(
        lambda data, hows: _apply(data, hows),
        st.sampled_from(seeds),
        st.lists(MUTATION, min_size=1, max_size=4),
    )


def _apply(data: bytes, hows: list[tuple]) -> bytes:
    for how in hows:
        data = mutate(data, how)
    return data


def typed_bytes(types: list[int], max_size: int = 700) -> st.SearchStrategy[bytes]:
    """A known type byte followed by random bytes."""
    return st.builds(
        lambda t, body: bytes([t]) + body, st.sampled_from(types), st.binary(max_size=max_size)
    )


# -- targets ---------------------------------------------------------------------------------------


class Violation(Exception):
    """An invariant the target checks does not hold (counted as a crash)."""


@dataclass
class Target:
    name: str
    parser: str  # what it fuzzes, for the table
    make: Callable[[], Any]  # builds the state once per run
    strategy: Callable[[Any], st.SearchStrategy]
    run: Callable[[Any, Any], None]  # feeds one input; raises on a crash


ID = st.integers(0, (1 << 160) - 1)
WIRE_ADDR = st.binary(min_size=6, max_size=6)


def _request_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda o, t, pad: encode_request(RouteRequest(o, t), pad), ID, ID, st.integers(0, 560)
    )


def _response_bytes() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda r, t, cs: (
            bytes([1])
            + r.to_bytes(20, "big")
            + t.to_bytes(20, "big")
            + b"".join(i.to_bytes(20, "big") + a for i, a in cs)
        ),
        ID,
        ID,
        st.lists(st.tuples(ID, WIRE_ADDR), max_size=22),
    )


def _routing_seeds() -> list[bytes]:
    rng = Random(7)
    contacts = [(rng.getrandbits(160), ("10.0.%d.%d" % (i, i + 1), 5004)) for i in range(20)]
    return [
        encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 146),
        encode_request(RouteRequest(rng.getrandbits(160), rng.getrandbits(160)), 0),
        encode_response(
            RouteResponse(rng.getrandbits(160), rng.getrandbits(160), contacts), ipv4_to_wire
        ),
        encode_response(
            RouteResponse(rng.getrandbits(160), rng.getrandbits(160), contacts[:3]), ipv4_to_wire
        ),
    ]


def routing_strategy(_state: Any) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=700),
        typed_bytes([0, 1]),
        mutated(_routing_seeds()),
        _request_bytes(),
        _response_bytes(),
    )


def run_routing_decode(_state: Any, data: bytes) -> None:
    try:
        msg, skipped = decode(data, ipv4_from_wire)
    except MalformedMessage:
        return
    if type(msg) is RouteRequest:
        if msg.size != len(data) or encode_request(msg, 0) != data[:REQUEST_SIZE]:
            raise Violation("request does not re-encode")
    else:
        again = encode_response(msg, ipv4_to_wire)
        if len(again) + 26 * skipped != len(data) or again[:41] != data[:41]:
            raise Violation("response does not re-encode")


class RoutingState:
    """A routing-only node with 60 contacts; lookups keep requests in flight to 8 of them."""

    STRANGER = ("198.51.100.7", 9999)  # never asked anything: the amplification check

    def __init__(self) -> None:
        self.rng = Random(3)
        self.node = Node(
            1 << 159, ContactRegistry(), self.rng, RoutingSettings(refresh_on_join=False), 0.0
        )
        self.contacts = []
        for i in range(60):
            node_id, addr = (
                self.rng.getrandbits(160),
                ("10.1.%d.%d" % (i // 200, i % 200 + 1), 5004),
            )
            self.node.add_contact(node_id, addr, 0.0)
            self.contacts.append((node_id, addr))
        self.now = 0.0
        self.targets: list[int] = []

    def pending_targets(self) -> list[tuple[Any, int]]:
        return list(self.node.routing._pending or {})


def routing_layer_strategy(state: RoutingState) -> st.SearchStrategy:
    source = st.integers(0, 9)  # 0-7: contacts a lookup may be asking; 8: a stranger; 9: random
    return st.tuples(source, routing_strategy(state), st.booleans(), st.booleans())


def run_routing_layer(state: RoutingState, item: tuple) -> None:
    which, data, as_answer, tick = item
    node = state.node
    state.now += 0.05
    now = state.now
    if node.routing.lookups_running < 3:
        node.find_closest(state.rng.getrandbits(160), now)
    pending = state.pending_targets()
    if which < 8 and pending:
        addr, target = pending[which % len(pending)]
        if as_answer and len(data) >= 41 and data[0] == 1:
            data = data[:21] + target.to_bytes(20, "big") + data[41:]  # meets the pending request
    elif which == 8:
        addr = state.STRANGER
    else:
        addr = ("203.0.113.%d" % (len(data) % 250 + 1), 4000 + len(data) % 7)
    node.receive_datagram(data, addr, now)
    if tick:
        node.handle_timer(now)
    answers = sum(
        len(out)
        for out, dst in node.datagrams_to_send(now)
        if dst == state.STRANGER and out[0] == 1
    )
    validated = (node.routing._validated or {}).get(state.STRANGER, False)
    if addr == state.STRANGER and answers > 3 * len(data) and not validated:
        raise Violation(
            "amplification: an answer of more than 3x the request to an unvalidated address"
        )


# -- session ---------------------------------------------------------------------------------------


class SessionState:
    """Caller a and callee b (ECDSA P-256 identities), rate limits opened wide so that every
    input reaches the checks behind them."""

    def __init__(self) -> None:
        from kadtalk.node.identity import Identity
        from kadtalk.node.session.layer import SessionSettings

        self.settings = SessionSettings(
            max_calls=4,
            max_pending=64,
            max_sessions=512,
            source_burst=1e12,
            global_burst=1e12,
            source_rate=1e12,
            global_rate=1e12,
        )
        self.ids = {name: Identity.generate() for name in "abm"}
        self.now = 1.0
        self.rebuild()

    def layer(self, name: str):
        from kadtalk.node.session.layer import SessionLayer

        return SessionLayer(self.ids[name], Random(ord(name)), self.settings, WALL)

    def rebuild(self) -> None:
        from kadtalk.transport.memory import MemoryNet

        self.a, self.b = self.layer("a"), self.layer("b")
        self.net = MemoryNet(self._route, now=self.now)
        self.net.attach("a", self.a)
        self.net.attach("b", self.b)
        self.layers = self.net.nodes
        self._sent: list = []
        self._drop: Callable[[str, str, bytes], bool] = lambda *_: False

    def peer(self, name: str) -> int:
        return int.from_bytes(self.ids[name].node_id, "big")

    def _route(self, packet, now: float) -> tuple:
        self._sent.append(packet)
        return () if self._drop(*packet) else ((0.0, packet),)

    def exchange(
        self, now: float, drop: Callable[[str, str, bytes], bool] = lambda *_: False
    ) -> list:
        """Deliver until quiet on the in-memory network (zero delay; timers due by `now` fire);
        return every (src, dst, data) sent."""
        self._sent, self._drop = [], drop
        self.net.settle(now)
        return self._sent

    def events(self, layer) -> list:
        """Take what `layer` reported: the events the network collected, then any it holds."""
        collected = self.net.events["a" if layer is self.a else "b"]
        out = collected + list(iter(layer.next_event, None))
        collected.clear()
        return out


class KeyState(SessionState):
    """a waits for b's KEY_RES (the real one is kept back); b takes KEY_REQs from a and m."""

    def __init__(self) -> None:
        super().__init__()
        self.arm()

    def arm(self) -> None:
        from kadtalk.node.session.wire import KEY_REQ, KEY_RES

        self.rebuild()
        now = self.now
        self.a.call(self.peer("b"), now, addr="b")
        sent = self.exchange(now, drop=lambda s, d, data: data[0] == KEY_RES)
        self.key_res = [x for s, d, x in sent if x[0] == KEY_RES][0]
        self.key_req = [x for s, d, x in sent if x[0] == KEY_REQ][0]
        m = self.layer("m")
        m.call(self.peer("b"), now, addr="b")
        self.m_req = m.datagrams_to_send(now)[0][0]
        self.seeds = [self.key_req, self.key_res, self.m_req]


def key_strategy(state: KeyState) -> st.SearchStrategy:
    return st.tuples(
        st.one_of(mutated(state.seeds), typed_bytes([2, 3], 600), st.binary(max_size=600)),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["a", "b", "m", "x"]),
    )


def run_key(state: KeyState, item: tuple) -> None:
    from kadtalk.node.session.events import IncomingCall
    from kadtalk.node.session.wire import Drop, decode_key

    data, dst, src = item
    try:
        decode_key(data)
    except Drop:
        pass
    state.now += 1e-4
    layer = state.layers[dst]
    layer.receive_datagram(data, src, state.now)
    layer.datagrams_to_send(state.now)
    if any(type(e) is IncomingCall for e in state.events(layer)):
        raise Violation("a KEY message alone made the phone ring")
    if len(state.b.sessions) > 200 or len(state.a.sessions) > 8:
        state.arm()


class StreamState(SessionState):
    """a called b and b answered: both talking."""

    def __init__(self) -> None:
        super().__init__()
        self.arm()

    def arm(self) -> None:
        from kadtalk.node.session.events import IncomingCall

        self.rebuild()
        now = self.now
        self.sid = self.a.call(self.peer("b"), now, addr="b")
        self.exchange(now)
        incoming = [e for e in self.events(self.b) if type(e) is IncomingCall]
        self.b.answer(now, incoming[0].session_id)
        self.exchange(now)
        self.events(self.a)
        self.a.send_media(self.sid, b"hello", now)
        sent = self.exchange(now)
        self.seeds = [x for _, _, x in sent] or [b"\x04" + bytes(20)]

    def talking(self) -> bool:
        session = self.a.sessions.get(self.sid)
        return session is not None and session.tx is not None and bool(self.b.sessions)


def stream_strategy(state: StreamState) -> st.SearchStrategy:
    raw = st.one_of(mutated(state.seeds), typed_bytes([4, 5], 300), st.binary(max_size=300))
    sealed = st.tuples(
        st.sampled_from([4, 5]),
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda k, b: bytes([k]) + b, st.integers(0, 8), st.binary(max_size=16)),
        ),
    )
    return st.one_of(st.tuples(st.just("raw"), raw), st.tuples(st.just("sealed"), sealed))


def run_stream(state: StreamState, item: tuple) -> None:
    if not state.talking():
        state.arm()
    mode, payload = item
    state.now += 1e-3
    now = state.now
    if mode == "raw":
        data = payload
    else:
        kind, plaintext = payload
        data = state.a.sessions[state.sid].tx.seal(kind, plaintext)
    state.b.receive_datagram(data, "a", now)
    state.exchange(now)
    state.events(state.a)
    state.events(state.b)


class CookieState(SessionState):
    """a (at CALLER) has sent b (at CALLEE) a KEY_REQ; b, always under load, answered with a
    COOKIE_REPLY that a has not seen yet; a's COOKIE_RETRY (made by hand) is a seed too."""

    CALLER, CALLEE, OTHER = ("198.51.100.7", 4000), ("203.0.113.1", 5000), ("192.0.2.9", 1)

    def __init__(self) -> None:
        from kadtalk.node.session.layer import SessionSettings

        super().__init__()
        self.settings = SessionSettings(
            max_pending=64, max_sessions=512, load_threshold=2.0, cookie_burst=1e12,
            cookie_rate=1e12, source_burst=1e12, source_rate=1e12,
        )
        self.arm()

    def arm(self) -> None:
        from kadtalk.node.session.wire import encode_cookie_retry

        self.rebuild()
        now = self.now
        self.a.call(self.peer("b"), now, addr=self.CALLEE)
        ((self.key_req, _),) = self.a.datagrams_to_send(now)
        self.b.receive_datagram(self.key_req, self.CALLER, now)
        ((self.reply, _),) = self.b.datagrams_to_send(now)
        self.retry = encode_cookie_retry(self.reply[18:34], self.key_req)
        self.seeds = [self.reply, self.retry, self.key_req]


def cookie_strategy(state: CookieState) -> st.SearchStrategy:
    return st.tuples(
        st.one_of(mutated(state.seeds), typed_bytes([7], 400), st.binary(max_size=400)),
        st.sampled_from(["a", "b"]),
        st.sampled_from([state.CALLER, state.CALLEE, state.OTHER]),
    )


def run_cookie(state: CookieState, item: tuple) -> None:
    from kadtalk.node.session.wire import COOKIE_RETRY, KEY_RES, Drop, decode_cookie

    data, dst, src = item
    proven = False
    try:
        msg = decode_cookie(data)
        proven = msg.op == COOKIE_RETRY and src == state.CALLER and msg.cookie == state.retry[2:18]
    except Drop:
        pass
    state.now += 1e-4
    layer = state.layers[dst]
    layer.receive_datagram(data, src, state.now)
    # proven now, or earlier (a session of b's whose cookie or RING came from that address)
    proven = proven or any(s.validated and s.addr == src for s in state.b.sessions.values())
    for answer, to in layer.datagrams_to_send(state.now):
        if layer is state.b and to == src and len(answer) > 3 * len(data) and not proven:
            raise Violation(f"{len(answer)}-byte answer to {len(data)} unproven bytes")
        if layer is state.b and answer[0] == KEY_RES and not proven:
            raise Violation("a KEY_RES to an address that never proved itself")
    state.events(layer)
    if len(state.b.sessions) > 200 or len(state.a.sessions) > 8:
        state.arm()


# -- NAT traversal (0x06) --------------------------------------------------------------------------


def traversal_available() -> bool:
    try:
        from kadtalk.node import traversal  # noqa: F401
    except ImportError:
        return False
    return True


class TraversalState:
    """A node with an identity and NAT traversal on, 30 contacts in its table (rendezvous
    targets for PUNCH_REQ), probing two of them (so ADDR_RES meets its nonces)."""

    SOURCE = ("198.51.100.9", 7777)

    def __init__(self) -> None:
        from kadtalk.node.identity import Identity
        from kadtalk.node.traversal import (
            ADDR_REQ,
            ADDR_RES,
            PUNCH,
            PUNCH_FWD,
            PUNCH_REQ,
            TRAVERSAL,
        )

        identity = Identity.generate()
        self.rng = Random(5)
        self.node = Node(
            int.from_bytes(identity.node_id, "big"),
            ContactRegistry(),
            self.rng,
            RoutingSettings(refresh_on_join=False),
            0.0,
            identity=identity,
            traversal=True,
        )
        self.ids = []
        for i in range(30):
            node_id = self.rng.getrandbits(160)
            self.node.add_contact(node_id, ("10.2.0.%d" % (i + 1), 5004), 0.0)
            self.ids.append(node_id)
        self.now = 1.0
        peers = [("10.2.0.1", 5004), ("10.2.0.2", 5004)]
        self.node._upper.traversal.probe(peers, self.now)
        out = self.node.datagrams_to_send(self.now)
        nonces = [d[2:10] for d, _ in out if d[:2] == bytes([TRAVERSAL, ADDR_REQ])] or [bytes(8)]
        t = bytes([TRAVERSAL])
        wire = ipv4_to_wire(("203.0.113.5", 4000))
        self.seeds = [
            t + bytes([ADDR_REQ]) + bytes(14),
            t + bytes([ADDR_RES]) + nonces[0] + wire,
            t
            + bytes([PUNCH_REQ])
            + self.rng.getrandbits(160).to_bytes(20, "big")
            + self.ids[3].to_bytes(20, "big"),
            t + bytes([PUNCH_FWD]) + self.ids[4].to_bytes(20, "big") + wire,
            t + bytes([PUNCH]) + self.ids[5].to_bytes(20, "big"),
        ]


def traversal_strategy(state: TraversalState) -> st.SearchStrategy:
    sized = st.builds(
        lambda op, body: bytes([6, op]) + body, st.integers(0, 7), st.binary(max_size=60)
    )
    return st.tuples(st.one_of(mutated(state.seeds), sized, typed_bytes([6], 80)), st.booleans())


def run_traversal(state: TraversalState, item: tuple) -> None:
    data, from_table = item
    state.now += 0.01
    addr = ("10.2.0.%d" % (len(data) % 30 + 1), 5004) if from_table else state.SOURCE
    state.node.receive_datagram(data, addr, state.now)
    state.node.handle_timer(state.now)
    back = sum(
        len(d)
        for d, dst in state.node.datagrams_to_send(state.now)
        if dst == addr and d[:1] == b"\x06"
    )
    if back > len(data):
        raise Violation("a traversal answer larger than its request")
    while state.node.next_event() is not None:
        pass


# -- control socket and websocket ------------------------------------------------------------------


def app_available() -> bool:
    try:
        import kadtalk.app.protocol  # noqa: F401
        import kadtalk.app.web  # noqa: F401
    except ImportError:
        return False
    return True


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


class ControlState:
    LIMIT = 256

    def __init__(self) -> None:
        from kadtalk.app import protocol

        self.protocol = protocol
        self.buffer = protocol.LineBuffer(self.LIMIT)


def control_strategy(_state: Any) -> st.SearchStrategy:
    import json

    command = st.builds(
        lambda cmd, rest: json.dumps({"cmd": cmd, **rest}).encode() + b"\n",
        st.sampled_from(["call", "answer", "hangup", "status", "contacts", "x"])
        | st.text(max_size=6),
        st.dictionaries(st.text(max_size=8), JSON, max_size=3),
    )
    line = st.one_of(
        st.builds(lambda v: json.dumps(v).encode() + b"\n", JSON),
        command,
        st.binary(max_size=400),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass") + b"\n"),
        st.builds(lambda d: b"[" * d + b"]" * d + b"\n", st.integers(0, 5000)),
    )
    return st.lists(line, min_size=1, max_size=4).flatmap(
        lambda lines: st.tuples(st.just(b"".join(lines)), st.lists(st.integers(1, 64), max_size=8))
    )


def run_control(state: ControlState, item: tuple) -> None:
    data, cuts = item
    protocol = state.protocol
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(data[start : start + cut])
        start += cut
    pieces.append(data[start:])
    for piece in pieces:
        for line in state.buffer.feed(piece):
            if line is None:
                continue
            if len(line) > state.LIMIT or b"\n" in line:
                raise Violation("LineBuffer let an over-long or multi-line line through")
            try:
                message = protocol.parse(line)
            except protocol.BadRequest:
                continue
            if not isinstance(message, dict) or not isinstance(message.get("cmd"), str):
                raise Violation("parse accepted a non-request")


class WebState:
    HOST = "127.0.0.1:8080"

    def __init__(self) -> None:
        from pathlib import Path

        from kadtalk.app.web import WebBridge

        self.bridge = WebBridge(Path("/nonexistent/control.sock"), "127.0.0.1", "secret-token")
        self.open = None

    def handshake(self) -> bytes:
        return (
            b"GET /ws?token=secret-token HTTP/1.1\r\nHost: "
            + self.HOST.encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Origin: http://" + self.HOST.encode() + b"\r\n\r\n"
        )

    def opened(self):
        from websockets.protocol import State
        from websockets.server import ServerProtocol

        if self.open is None or self.open.state is not State.OPEN:
            proto = ServerProtocol(max_size=self.bridge_limit())
            proto.receive_data(self.handshake())
            [request] = proto.events_received()
            if self.bridge._check(None, request) is not None:
                raise Violation("the bridge refused a valid upgrade")
            proto.send_response(proto.accept(request))
            proto.data_to_send()
            self.open = proto
        return self.open

    def bridge_limit(self) -> int:
        from kadtalk.app import protocol

        return protocol.MAX_LINE


def _frame(
    fin: bool, rsv: int, opcode: int, masked: bool, mask: bytes, payload: bytes, length_form: int
) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 15)])
    n = len(payload)
    bit = 0x80 if masked else 0
    if length_form == 0 and n < 126:
        head += bytes([bit | n])
    elif length_form == 1 and n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def web_strategy(state: WebState) -> st.SearchStrategy:
    valid = state.handshake()
    header_lines = st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Host",
                    "Origin",
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Version",
                    "X",
                ]
            )
            | st.text(max_size=10),
            st.text(max_size=40),
        ),
        max_size=8,
    )
    request = st.one_of(
        mutated([valid]),
        st.builds(
            lambda method, path, headers: (
                f"{method} {path} HTTP/1.1\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers)
                + "\r\n"
            ).encode("utf-8", "surrogatepass"),
            st.sampled_from(["GET", "POST", "get"]) | st.text(max_size=5),
            st.sampled_from(["/ws?token=secret-token", "/", "/?token=secret-token", "/ws"])
            | st.text(max_size=30),
            header_lines,
        ),
        st.binary(max_size=300),
    )
    frame = st.builds(
        _frame,
        st.booleans(),
        st.integers(0, 7),
        st.integers(0, 15),
        st.booleans(),
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=300),
        st.integers(0, 2),
    )
    frames = st.lists(st.one_of(frame, st.binary(max_size=40)), min_size=1, max_size=4).map(
        b"".join
    )
    return st.one_of(st.tuples(st.just("http"), request), st.tuples(st.just("frames"), frames))


def run_web(state: WebState, item: tuple) -> None:
    from websockets.server import ServerProtocol

    mode, data = item
    if mode == "http":
        proto = ServerProtocol(max_size=state.bridge_limit())
        proto.receive_data(data)
        for request in proto.events_received():
            refused = state.bridge._check(None, request)
            response = refused if refused is not None else proto.accept(request)
            if not proto.eof_sent:  # else the parser already refused bytes after the request
                proto.send_response(response)
        proto.data_to_send()
    else:
        proto = state.opened()
        proto.receive_data(data)
        proto.events_received()
        proto.data_to_send()


TARGETS = {
    "routing-decode": Target(
        "routing-decode",
        "node/routing/messages.decode",
        lambda: None,
        routing_strategy,
        run_routing_decode,
    ),
    "routing-layer": Target(
        "routing-layer",
        "Node.receive_datagram, routing (0x00, 0x01)",
        RoutingState,
        routing_layer_strategy,
        run_routing_layer,
    ),
    "session-key": Target(
        "session-key", "KEY_REQ / KEY_RES: wire + session layer", KeyState, key_strategy, run_key
    ),
    "session-stream": Target(
        "session-stream",
        "MEDIA / SIGNAL: stream + call state",
        StreamState,
        stream_strategy,
        run_stream,
    ),
    "session-cookie": Target(
        "session-cookie",
        "COOKIE (0x07): wire + session layer",
        CookieState,
        cookie_strategy,
        run_cookie,
    ),
    "traversal": Target(
        "traversal",
        "NAT traversal (0x06) through Node.receive_datagram",
        TraversalState,
        traversal_strategy,
        run_traversal,
    ),
    "control-json": Target(
        "control-json",
        "app/protocol.py LineBuffer + parse",
        ControlState,
        control_strategy,
        run_control,
    ),
    "websocket": Target(
        "websocket", "app/web.py checks + websockets framing", WebState, web_strategy, run_web
    ),
}
APP_TARGETS = ("control-json", "websocket")


# -- running ---------------------------------------------------------------------------------------


def fuzz(target: Target, inputs: int, seed_value: int = 0, keep: int = 3) -> dict[str, Any]:
    """Run `inputs` inputs through one target; return counts, time and the first crashes."""
    state = target.make()
    tried = 0
    crashes = 0
    kinds: dict[str, int] = {}
    examples: list[dict[str, str]] = []

    @seed(seed_value)
    @settings(
        max_examples=inputs,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(target.strategy(state))
    def one(item: Any) -> None:
        nonlocal tried, crashes
        tried += 1
        try:
            target.run(state, item)
        except Exception as error:  # noqa: BLE001 - anything escaping a parser is a finding
            crashes += 1
            kind = f"{type(error).__name__}: {str(error)[:80]}"
            if kind in kinds or len(kinds) < 20:
                kinds[kind] = kinds.get(kind, 0) + 1
            if len(examples) < keep:
                examples.append(
                    {
                        "error": kind,
                        "input": repr(item)[:400],
                        "traceback": traceback.format_exc(limit=4),
                    }
                )

    started = time.perf_counter()
    one()
    seconds = time.perf_counter() - started
    return {
        "target": target.name,
        "parser": target.parser,
        "inputs": tried,
        "crashes": crashes,
        "crash_kinds": kinds,
        "examples": examples,
        "seconds": round(seconds, 2),
        "inputs_per_s": round(tried / seconds) if seconds else None,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--inputs",
        type=positive_int,
        default=None,
        help=f"inputs per target (default {DEFAULT_INPUTS:,}; {QUICK_INPUTS} with --quick)",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=sorted(TARGETS),
        default=None,
        help="targets to run (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few hundred inputs per target"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="also write the counts as JSON to FILE ('-': standard output)",
    )
    return parser


def print_results(results: list[dict[str, Any]], skipped: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column, justify in (
        ("target", "left"),
        ("parser", "left"),
        ("inputs", "right"),
        ("crashes", "right"),
        ("inputs/s", "right"),
        ("seconds", "right"),
    ):
        table.add_column(column, justify=justify)
    for r in results:
        style = "red" if r["crashes"] else "green"
        table.add_row(
            r["target"],
            r["parser"],
            f"{r['inputs']:,}",
            f"[{style}]{r['crashes']}[/{style}]",
            f"{r['inputs_per_s'] or 0:,}",
            f"{r['seconds']:.1f}",
        )
    for name in skipped:
        table.add_row(name, "not installed: skipped", "0", "–", "–", "–")
    console = Console(width=120)
    console.print(table)
    for r in results:
        for example in r["examples"]:
            console.print(
                f"{r['target']} crash: {example['error']}\n  input: {example['input']}",
                markup=False,
                style="red",
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs = args.inputs or (QUICK_INPUTS if args.quick else DEFAULT_INPUTS)
    names = args.targets or list(TARGETS)
    skipped = [
        n
        for n in names
        if (n in APP_TARGETS and not app_available())
        or (n == "traversal" and not traversal_available())
    ]
    results = []
    started = time.perf_counter()
    for name in names:
        if name in skipped:
            continue
        results.append(fuzz(TARGETS[name], inputs, args.seed))
        print(
            f"{name}: {results[-1]['inputs']:,} inputs, {results[-1]['crashes']} crashes, "
            f"{results[-1]['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    wall = time.perf_counter() - started
    print_results(
        results,
        skipped,
        f"Fuzzing: {inputs:,} inputs per target (hypothesis, seed {args.seed}; wall {wall:.0f} s)",
    )
    emit_json(
        args.json,
        {
            "benchmark": "fuzz",
            "config": {"inputs": inputs, "targets": names, "seed": args.seed},
            "results": results,
            "skipped": skipped,
            "wall_s": round(wall, 1),
            "environment": environment(),
        },
    )
    return 1 if any(r["crashes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
