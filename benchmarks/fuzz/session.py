"""Session targets (0x02-0x05, 0x07): KEY_REQ / KEY_RES, MEDIA / SIGNAL in a call, COOKIE.

Caller and callee are real `SessionLayer`s on kadtalk.transport.memory (zero delay; a route
hook drops what a target asks and logs what was sent).
"""

from __future__ import annotations

from random import Random
from typing import Callable

from hypothesis import strategies as st

from benchmarks.fuzz.core import WALL, WIDE, Target, Violation, datagrams
from kadtalk.node.identity import Identity
from kadtalk.node.session.events import IncomingCall
from kadtalk.node.session.layer import SessionLayer, SessionSettings
from kadtalk.node.session.wire import (
    COOKIE_RETRY,
    KEY_REQ,
    KEY_RES,
    Drop,
    decode_cookie,
    decode_key,
    encode_cookie_retry,
)
from kadtalk.transport.memory import MemoryNet


OPEN = SessionSettings(  # rate limits opened wide so that every input reaches the checks
    max_calls=4, max_pending=64, max_sessions=512, source_burst=WIDE, global_burst=WIDE,
    source_rate=WIDE, global_rate=WIDE,
)


class SessionState:
    """Caller a and callee b (ECDSA P-256 identities); `arm` sets the scene (again when the
    layers are full)."""

    SETTINGS = OPEN

    def __init__(self) -> None:
        self.settings = self.SETTINGS
        self.ids = {name: Identity.generate() for name in "abm"}
        self.now = 1.0
        self.arm()

    def arm(self) -> None:
        self.rebuild()

    def layer(self, name: str):
        return SessionLayer(self.ids[name], Random(ord(name)), self.settings, WALL)

    def rebuild(self) -> None:
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

    def arm(self) -> None:
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
        datagrams(state.seeds, [2, 3], 600),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["a", "b", "m", "x"]),
    )


def run_key(state: KeyState, item: tuple) -> None:
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

    def arm(self) -> None:
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


def text_frames() -> st.SearchStrategy:
    """TEXT and RECEIPT plaintexts: well formed (any id, seq, time and text up to the limit),
    then cut, extended, or with bytes of the text replaced (broken UTF-8)."""
    from kadtalk.node.session.messages import MAX_TEXT, encode_receipt, encode_text

    ids = st.binary(min_size=16, max_size=16)
    text = st.text(min_size=1, max_size=MAX_TEXT // 4).filter(
        lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t))
    from kadtalk.node.session.presence import (MAX_NOTE, encode_presence, encode_reply,
                                               encode_request)

    note = st.text(max_size=MAX_NOTE // 4).filter(
        lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t))
    whole = st.one_of(
        st.builds(encode_text, ids, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), text),
        st.builds(encode_receipt, ids),
        # PRESENCE, CONTACT_REQ, CONTACT_REPLY (docs/protocol.md §15c)
        st.builds(encode_presence, st.integers(0, 3)),
        st.builds(encode_request, ids, note),
        st.builds(encode_reply, ids, ids, st.booleans()))
    return st.builds(lambda frame, cut, tail: frame[:cut] + tail if cut is not None else frame,
                     whole, st.one_of(st.none(), st.integers(0, 60)), st.binary(max_size=8))


def stream_strategy(state: StreamState) -> st.SearchStrategy:
    raw = datagrams(state.seeds, [4, 5], 300)
    sealed = st.tuples(
        st.sampled_from([4, 5]),
        st.one_of(
            st.binary(max_size=40),
            st.builds(lambda k, b: bytes([k]) + b, st.integers(0, 11), st.binary(max_size=40)),
            text_frames(),  # TEXT / RECEIPT (§15b), PRESENCE and contact requests (§15c),
            #                 whole and cut or spliced
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

    SETTINGS = SessionSettings(
        max_pending=64, max_sessions=512, load_threshold=2.0, cookie_burst=WIDE,
        cookie_rate=WIDE, source_burst=WIDE, source_rate=WIDE,
    )

    def arm(self) -> None:
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
        datagrams(state.seeds, [7], 400),
        st.sampled_from(["a", "b"]),
        st.sampled_from([state.CALLER, state.CALLEE, state.OTHER]),
    )


def run_cookie(state: CookieState, item: tuple) -> None:
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


TARGETS = [
    Target(
        "session-key", "KEY_REQ / KEY_RES: wire + session layer", KeyState, key_strategy, run_key
    ),
    Target(
        "session-stream",
        "MEDIA / SIGNAL: stream + call state",
        StreamState,
        stream_strategy,
        run_stream,
    ),
    Target(
        "session-cookie",
        "COOKIE (0x07): wire + session layer",
        CookieState,
        cookie_strategy,
        run_cookie,
    ),
]
