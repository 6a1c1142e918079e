"""Control-surface targets: the control protocol (app/protocol.py framing, parse, limits, and the
reply encoder through app/control.py's reply builders) and the web bridge (app/web.py).

The app is an optional part of the install: its modules are imported only when a target runs.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from benchmarks.fuzz.core import Target, Violation, mutated


def app_available() -> bool:
    try:
        import kadtalk.app.control  # noqa: F401
        import kadtalk.app.protocol  # noqa: F401
        import kadtalk.app.web  # noqa: F401
    except ImportError:
        return False
    return True


# -- control protocol ------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=20)  # lone surrogates too
# what the daemon may hold and reply with: any text, non-finite floats
REPLY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
COMMANDS = ["call", "answer", "hangup", "status", "contacts", "set_audio", "dial", "x"]


class ControlState:
    def __init__(self) -> None:
        from kadtalk.app import control, protocol

        self.protocol = protocol
        self.control = control
        self.limit = protocol.MAX_LINE


def _padded(length: int) -> bytes:
    """A valid command line of exactly `length` bytes (newline excluded), for lengths >= 16."""
    head = b'{"cmd":"status","pad":"'
    return head + b"x" * max(0, length - len(head) - 2) + b'"}'


def control_strategy(state: ControlState) -> st.SearchStrategy:
    limit = state.limit
    command = st.builds(
        lambda cmd, rest: json.dumps({"cmd": cmd, **rest}).encode(),
        st.sampled_from(COMMANDS) | st.text(max_size=6),
        st.dictionaries(st.text(max_size=8), JSON, max_size=3),
    )
    line = st.one_of(
        st.builds(lambda v: json.dumps(v).encode(), JSON),
        command,
        st.binary(max_size=400),
        st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
        ANY_TEXT.map(lambda t: json.dumps({"cmd": "dial", "peer": t}).encode()),
        st.builds(lambda d: b"[" * d + b"]" * d, st.integers(0, 5000)),
        # long lines: around the limit, and far beyond it
        st.builds(_padded, st.sampled_from([limit - 1, limit, limit + 1, limit + 2, 16]))
        | st.builds(_padded, st.integers(16, limit + 4096)),
        # numbers: huge, long, non-finite, around 2^53
        st.builds(
            lambda cmd, n: b'{"cmd":"%s","n":%s}' % (cmd.encode(), n),
            st.sampled_from(COMMANDS),
            st.one_of(
                st.integers(1, 6000).map(lambda d: b"9" * d),
                st.integers(-(2**60), 2**60).map(lambda i: str(i).encode()),
                st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"1E400"]),
                st.integers(1, 6000).map(lambda d: b"0." + b"1" * d),
            ),
        ),
    )
    lines = st.lists(line, min_size=1, max_size=4).map(lambda ls: b"\n".join(ls))
    framed = st.tuples(lines, st.booleans()).map(lambda t: t[0] + b"\n" if t[1] else t[0])
    cuts = st.lists(st.integers(1, 64) | st.integers(1, 2 * limit), max_size=8)
    return st.tuples(framed, cuts, REPLY_VALUE)


def expected_lines(data: bytes, limit: int) -> list[bytes | None]:
    """What LineBuffer must give for `data`, however it is cut: every complete line of at most
    `limit` bytes, None once for each longer one (a tail without newline too, once it is)."""
    *complete, tail = data.split(b"\n")
    out: list[bytes | None] = [line if len(line) <= limit else None for line in complete]
    return out + ([None] if len(tail) > limit else [])


def within_limits(value: Any, protocol: Any) -> bool:
    """app/protocol.py's request limits, checked again by walking what `parse` returned."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if abs(item) > protocol.MAX_INT:
                return False
        elif isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                return False
        elif depth >= protocol.MAX_DEPTH:
            return False
        elif isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        else:
            stack.extend((v, depth + 1) for v in item)
    return True


def one_line(data: bytes) -> Any:
    """The reply line as a client reads it: one line of strict UTF-8 JSON, no NaN/Infinity."""
    if not data.endswith(b"\n") or b"\n" in data[:-1]:
        raise Violation("a reply is not exactly one line")

    def constant(text: str) -> Any:
        raise Violation(f"a reply holds {text}")

    return json.loads(data.decode("utf-8"), parse_constant=constant)


def run_control(state: ControlState, item: tuple) -> None:
    data, cuts, held = item
    protocol, control = state.protocol, state.control
    buffer = protocol.LineBuffer(state.limit)
    got: list[bytes | None] = []
    start = 0
    for cut in cuts:
        got.extend(buffer.feed(data[start : start + cut]))
        start += cut
    got.extend(buffer.feed(data[start:]))
    if got != expected_lines(data, state.limit):
        raise Violation("LineBuffer split the stream wrongly")
    for line in got:
        if line is None:
            continue
        try:
            message = protocol.parse(line)
        except protocol.BadRequest as e:
            one_line(protocol.encode(control.error(None, None, e.code, e.message)))
            continue
        if not isinstance(message.get("cmd"), str) or not within_limits(message, protocol):
            raise Violation("parse accepted a request beyond the limits")
        answer = control.reply(message["cmd"], message.get("req"), {"echo": message})
        if one_line(protocol.encode(answer)) != answer:
            raise Violation("a reply does not read back as sent")
    # whatever the daemon holds (lone surrogates, non-finite floats) still makes one valid line
    one_line(protocol.encode(control.reply("status", None, {"value": held})))


# -- web bridge ------------------------------------------------------------------------------------


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


TARGETS = [
    Target(
        "control-json",
        "app/protocol.py LineBuffer + parse (limits) + encode of app/control.py replies",
        ControlState,
        control_strategy,
        run_control,
        app_available,
    ),
    Target(
        "websocket",
        "app/web.py checks + websockets framing",
        WebState,
        web_strategy,
        run_web,
        app_available,
    ),
]
