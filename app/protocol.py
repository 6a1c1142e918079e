"""The control protocol's framing: one JSON object a line, UTF-8, at most MAX_LINE bytes.

See docs/control.md for the commands and events.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

VERSION = 1
MAX_LINE = 64 * 1024  # bytes, newline excluded


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class LineBuffer:
    """Splits a byte stream into lines; a line longer than `limit` comes out as None (once),
    and the rest of it is skipped up to its newline."""

    def __init__(self, limit: int = MAX_LINE):
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> Iterator[bytes | None]:
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                if len(self._buf) > self.limit:
                    if not self._skipping:
                        self._skipping = True
                        yield None
                    self._buf.clear()
                return
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if self._skipping:
                self._skipping = False  # the end of an over-long line
                continue
            if len(line) > self.limit:
                yield None
                continue
            yield line


class BadRequest(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse(line: bytes) -> dict[str, Any]:
    """A request object: a JSON object with a string "cmd" (BadRequest otherwise)."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BadRequest("malformed", f"not a JSON object: {e}") from None
    if not isinstance(message, dict):
        raise BadRequest("malformed", "a request must be a JSON object")
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise BadRequest("malformed", 'a request needs a "cmd" string')
    return message
