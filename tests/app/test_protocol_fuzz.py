"""Hypothesis against the control protocol: any line gets a request or a BadRequest from
`parse` (never another exception), every reply encodes to one valid UTF-8 JSON line, and the
daemon answers every line with exactly one reply and keeps the connection."""

from __future__ import annotations

import asyncio
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kadtalk.app import protocol
from kadtalk.app.control import Client, error, reply
from kadtalk.app.daemon import COMMANDS

from .conftest import start_daemon

# Text with lone surrogates, JSON values with huge and non-finite numbers, deep nesting.
text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                      blacklist_categories=()), max_size=30)
numbers = st.one_of(st.integers(), st.integers(min_value=-10**5000, max_value=10**5000),
                    st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(text, inner, max_size=4)),
    max_leaves=20)
commands = st.one_of(st.sampled_from(sorted(COMMANDS)), text)
requests = st.fixed_dictionaries({"cmd": commands}, optional={
    "req": json_values, "to": json_values, "who": json_values, "name": json_values,
    "peer": json_values, "capture": json_values, "playback": json_values,
    "on": json_values, "from": json_values})


def dumps(value) -> bytes:
    """Any value as a JSON line, the way a hostile client may write it: surrogates escaped,
    huge integers in full, NaN/Infinity literals."""
    import sys

    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(value).encode()
    finally:
        sys.set_int_max_str_digits(old)


def deep(depth: int, kind: str) -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)


lines = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    requests.map(dumps),
    st.builds(deep, st.integers(0, 3000), st.sampled_from(["list", "object"])),
    st.builds(lambda n: b'{"cmd":"status","req":' + b"7" * n + b"}", st.integers(1, 6000)),
)


def check_line(data: bytes) -> dict:
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    return json.loads(data.decode("utf-8"))  # strict UTF-8: no surrogate can get through


# KADTALK_FUZZ_EXAMPLES=100000 for the issue's ≥ 10^5 inputs (docs/security.md §3)
EXAMPLES = int(os.environ.get("KADTALK_FUZZ_EXAMPLES", "2000"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_parse_gives_a_request_or_bad_request_and_every_reply_encodes(line):
    try:
        message = protocol.parse(line)
    except protocol.BadRequest as e:
        assert e.code == "malformed"
        check_line(protocol.encode(error(None, None, e.code, e.message)))
        return
    assert isinstance(message["cmd"], str)
    out = check_line(protocol.encode(reply(message["cmd"], message.get("req"), {"echo": message})))
    assert out["echo"] == message  # what was accepted comes back unchanged


@settings(max_examples=1000, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), text, st.floats(), st.integers(-2**60, 2**60)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(text, inner, max_size=4)),
                    max_leaves=20))
def test_encode_writes_anything_the_daemon_holds_as_one_valid_line(value):
    check_line(protocol.encode({"event": "x", "value": value}))


class _Transport:
    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


class _Writer:
    def __init__(self):
        self.transport = _Transport()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def test_the_daemon_answers_every_line_with_one_reply(sock_root):
    """Lines straight into the daemon's line handler (lookup, which answers later, and dial,
    which would place calls, excepted): one valid reply each, no exception."""
    loop = asyncio.new_event_loop()
    daemon = loop.run_until_complete(start_daemon(sock_root, "a", recordings_dir=str(sock_root / "rec")))

    async def handle(line: bytes) -> bytes:
        writer = _Writer()
        client = Client(writer, "fuzz")
        daemon.control.handle_line(client, line)
        return bytes(writer.data)

    @settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
    @given(st.one_of(lines, requests.filter(lambda r: r["cmd"] not in ("lookup", "dial")).map(dumps)))
    def answered(line):
        if b'"lookup"' in line or b'"dial"' in line:
            return
        out = loop.run_until_complete(handle(line))
        replies = [check_line(part + b"\n") for part in out.split(b"\n")[:-1]]
        replies = [r for r in replies if "reply" in r]
        assert len(replies) == 1, (line[:100], out[:300])
        assert replies[0]["ok"] is True or replies[0]["error"] != "internal", replies[0]

    try:
        answered()
    finally:
        loop.run_until_complete(daemon.stop())
        loop.close()
