"""Stateless retry cookies: a caller proves it receives datagrams at its source address.

In the spirit of WireGuard's cookie reply (whitepaper section 5.4.7) and QUIC's Retry
(RFC 9000 section 8.1): the callee answers a KEY_REQ it will not yet verify with a 34-byte
COOKIE_REPLY; the caller resends its KEY_REQ wrapped with that cookie (COOKIE_RETRY) from the
same address, which proves the address without the callee having stored anything:

    cookie = HMAC-SHA-256(secret, "kadtalk/1 cookie" | source address | request tag)[:16]

The request tag (SHA-256 of the KEY_REQ, cut to 16 bytes) binds a cookie to one KEY_REQ. Two
secrets are live: a new one every `rotation` seconds, the previous one still accepted, so a
cookie is good for between one and two rotations. Secrets are made lazily (an idle node, or a
simulated one that never meets a cookie, holds none) from `random_bytes` (os.urandom by
default; the test vectors inject fixed bytes).
"""

from __future__ import annotations

import hmac
import os
import socket
from typing import Any, Callable

from .wire import TAG_LEN

LABEL_COOKIE = b"kadtalk/1 cookie"
SECRET_SIZE = 32


def address_bytes(addr: Any) -> bytes:
    """The source address as the cookie covers it: for an (IP, port) tuple the packed IP (4 or
    16 bytes) and the port (u16); any other address (the simulator's) by its repr."""
    if type(addr) is tuple and len(addr) >= 2 and type(addr[0]) is str and type(addr[1]) is int:
        ip, port = addr[0], addr[1]
        if 0 <= port < 65536:
            try:  # inet_pton: a tenth of ipaddress's cost, on every datagram of a flood
                packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
                return packed + port.to_bytes(2, "big")
            except OSError:
                pass
    return repr(addr).encode()


class CookieJar:
    __slots__ = ("rotation", "_random", "_current", "_previous", "_rotate_at")

    def __init__(self, rotation: float, random_bytes: Callable[[int], bytes] = os.urandom):
        if rotation <= 0:
            raise ValueError("cookie rotation must be positive")
        self.rotation = rotation
        self._random = random_bytes
        self._current: bytes | None = None
        self._previous: bytes | None = None
        self._rotate_at = 0.0

    def _secrets(self, now: float) -> tuple[bytes, bytes | None]:
        if self._current is None or now >= self._rotate_at + self.rotation:
            # first use, or idle for two rotations: every older cookie has expired
            self._current, self._previous = self._random(SECRET_SIZE), None
            self._rotate_at = now + self.rotation
        elif now >= self._rotate_at:
            self._current, self._previous = self._random(SECRET_SIZE), self._current
            self._rotate_at += self.rotation
        return self._current, self._previous

    def mint(self, addr: Any, tag: bytes, now: float) -> bytes:
        current, _ = self._secrets(now)
        return _mac(current, addr, tag)

    def valid(self, addr: Any, tag: bytes, cookie: bytes, now: float) -> bool:
        current, previous = self._secrets(now)
        if hmac.compare_digest(_mac(current, addr, tag), cookie):
            return True
        return previous is not None and hmac.compare_digest(_mac(previous, addr, tag), cookie)


def _mac(secret: bytes, addr: Any, tag: bytes) -> bytes:
    return hmac.digest(secret, LABEL_COOKIE + address_bytes(addr) + tag, "sha256")[:TAG_LEN]
