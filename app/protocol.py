"""The control protocol's framing: one JSON object a line, UTF-8, at most MAX_LINE bytes.

See docs/control.md for the commands, events and limits. `parse` turns any line into a request
or a BadRequest (never another exception); `encode` turns any reply into one valid line.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

VERSION = 1
MAX_LINE = 64 * 1024  # bytes, newline excluded
MAX_DEPTH = 32  # nesting of arrays and objects in a request
MAX_INT = 2**53  # |integer| in a request: what every JSON reader (JavaScript too) holds exactly
_MAX_DIGITS = 20  # longer integer literals are refused before int() sees them


def encode(message: dict[str, Any]) -> bytes:
    """One line. Text the daemon holds may contain lone surrogates (a non-UTF-8 byte in argv,
    decoded with surrogateescape): they are written as JSON escapes (``\\udc80``), so the line
    is always valid UTF-8 JSON. Non-finite floats become null (JSON has no Infinity)."""
    text = json.dumps(_finite(message), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)
    return text.encode("utf-8", "backslashreplace") + b"\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


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


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise ValueError(f"a number has at most {_MAX_DIGITS} digits")
    value = int(text)
    if abs(value) > MAX_INT:
        raise ValueError("an integer must lie within ±2^53")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _check(value: Any) -> None:
    """Depth and text: at most MAX_DEPTH levels; no lone surrogate in any string or key (they
    cannot be written back as UTF-8, nor used as file names safely). Iterative: no recursion."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in item):
                raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff)")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def loads(text: str) -> Any:
    """json.loads with the request limits; ValueError (JSONDecodeError is one) or RecursionError
    for anything else. Shared with the state files (app/config.py)."""
    return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)


def parse(line: bytes) -> dict[str, Any]:
    """A request object: a JSON object with a string "cmd" (BadRequest otherwise; never
    another exception, whatever the bytes)."""
    try:
        message = loads(line.decode("utf-8"))
        _check(message)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadRequest("malformed", f"not a JSON object: {str(e)[:200]}") from None
    if not isinstance(message, dict):
        raise BadRequest("malformed", "a request must be a JSON object")
    cmd = message.get("cmd")
    if not isinstance(cmd, str):
        raise BadRequest("malformed", 'a request needs a "cmd" string')
    return message
