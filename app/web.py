"""The web GUI: an HTML5 / JavaScript page and a websocket bridged to the control socket.

One port serves both: ``GET /?token=T`` is the page, ``/ws?token=T`` the websocket. Each
websocket gets its own control-socket connection; text messages go to the daemon as request
lines, and every line the daemon sends (replies, events) comes back as one text message.

Who may use it: the server binds 127.0.0.1 by default; every request needs the secret token
made at each start (a 128-bit random string, compared in constant time), and a websocket needs
an Origin header naming this very server (a page from another site cannot open it, even if it
guessed the port) and, when bound to loopback, a Host header naming loopback (no DNS
rebinding). The page is sent with a strict Content-Security-Policy and no-referrer, so the
token does not leak to other sites.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import os
import secrets
import socket
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import protocol

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")


class WebError(Exception):
    """The GUI cannot be served; the message says why and what to do."""


def bind_problem(error: OSError, host: str, port: int, option: str) -> str:
    """Why the GUI's port cannot be bound, and the fix (`option`: how to set the port)."""
    if isinstance(error, socket.gaierror):
        return (f"cannot serve the web GUI on {host}:{port}: {error.strerror}; give an address "
                "of this machine")
    reason = os.strerror(error.errno) if error.errno else str(error)
    text = f"cannot serve the web GUI on {host}:{port}: {reason.lower()}"
    if error.errno == errno.EADDRINUSE:
        return (text + f"; another program (another `kadtalk web` or `kadtalk daemon --web`?) "
                f"uses that port: choose another with {option} (0 = any free port)")
    if error.errno == errno.EACCES:
        return text + f"; ports below 1024 need privileges: choose a higher one with {option}"
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return text + f"; {host} is not an address of this machine: choose another host"
    return text


def _page() -> bytes:
    return resources.files("kadtalk.app").joinpath("static/index.html").read_bytes()


class WebBridge:
    def __init__(self, socket_path: Path, host: str, token: str):
        self.socket_path = Path(socket_path)
        self.host = host
        self.token = token
        self.port = 0
        self.server = None
        self.page = _page()
        self.refused = 0

    @classmethod
    async def start(cls, socket_path: Path, host: str = "127.0.0.1", port: int = 8080,
                    token: str | None = None) -> WebBridge:
        bridge = cls(socket_path, host, token or secrets.token_urlsafe(16))
        bridge.server = await serve(
            bridge._handle, host, port, process_request=bridge._check,
            max_size=protocol.MAX_LINE, server_header=None,
        )
        bridge.port = bridge.server.sockets[0].getsockname()[1]
        return bridge

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def serve_forever(self) -> None:
        await self.server.serve_forever()

    # -- HTTP -----------------------------------------------------------------------------------

    def _refuse(self, status: HTTPStatus, why: str) -> Response:
        self.refused += 1
        log.info("web: refused a request: %s", why)
        return _response(status, f"{status.value} {status.phrase}: {why}\n".encode(),
                         "text/plain; charset=utf-8")

    def _token_ok(self, path: str) -> bool:
        given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _host_ok(self, host: str) -> bool:
        if self.host not in LOOPBACK:
            return True  # bound to a public address on purpose: the token and Origin remain
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            return self._checked(request)
        except Exception as e:  # whatever a request holds, it gets an answer, never a 500
            return self._refuse(HTTPStatus.BAD_REQUEST, f"malformed request ({type(e).__name__})")

    def _checked(self, request: Request) -> Response | None:
        for name in ("Host", "Origin", "Connection"):
            if len(request.headers.get_all(name)) > 1:
                return self._refuse(HTTPStatus.BAD_REQUEST, f"more than one {name} header")
        path = urlsplit(request.path).path
        host = request.headers.get("Host", "")
        if not self._host_ok(host):
            return self._refuse(HTTPStatus.FORBIDDEN, "wrong Host header")
        if path not in ("/", "/index.html", "/ws"):
            return self._refuse(HTTPStatus.NOT_FOUND, "no such page")
        if not self._token_ok(request.path):
            return self._refuse(HTTPStatus.FORBIDDEN, "wrong or missing token; use the URL "
                                "the daemon printed")
        if path != "/ws":
            if "upgrade" in request.headers.get("Connection", "").lower():
                return self._refuse(HTTPStatus.NOT_FOUND, "the websocket is at /ws")
            return _response(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
        origin = request.headers.get("Origin")
        if origin is None or origin not in (f"http://{host}", f"https://{host}"):
            return self._refuse(HTTPStatus.FORBIDDEN, f"foreign Origin {origin!r}")
        return None  # go on with the websocket handshake

    # -- websocket <-> control socket ---------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.socket_path), limit=protocol.MAX_LINE * 2)
        except OSError as e:
            await ws.send(json.dumps({"event": "bridge", "error": "daemon_unreachable",
                                      "message": f"cannot reach the daemon at {self.socket_path}: "
                                                 f"{e.strerror}"}))
            await ws.close(1011, "daemon unreachable")
            return

        async def downstream() -> None:
            lines = protocol.LineBuffer(protocol.MAX_LINE * 16)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for line in lines.feed(data):
                    if line:
                        await ws.send(line.decode("utf-8", "replace"))
            await ws.close(1001, "the daemon went away")

        down = asyncio.ensure_future(downstream())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    message = message.decode("utf-8", "replace")
                writer.write(message.replace("\n", " ").encode() + b"\n")
                await writer.drain()
        except (ConnectionClosed, OSError):
            pass
        finally:
            down.cancel()
            writer.close()


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", CSP),
        ("Connection", "close"),
    ])
    return Response(status.value, status.phrase, headers, body)


async def run_web(socket_path: Path, host: str, port: int) -> None:
    """What `kadtalk web` runs: serve until interrupted. NotRunning (kadtalk.app.client) when no
    daemon answers on `socket_path`: a GUI with nothing behind it would only confuse; WebError
    when the port cannot be bound."""
    from .client import ControlClient

    await (await ControlClient.connect(socket_path)).close()
    try:
        bridge = await WebBridge.start(socket_path, host, port)
    except OSError as e:
        raise WebError(bind_problem(e, host, port, "--port N")) from None
    print(f"web GUI: {bridge.url}", flush=True)
    try:
        await bridge.serve_forever()
    finally:
        await bridge.close()
