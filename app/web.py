"""The web GUI: an HTML5 / JavaScript page and a websocket bridged to the control socket.

One port serves both: ``GET /?token=T`` is the page, ``/ws?token=T`` the websocket. Each
websocket gets its own control-socket connection; text messages go to the daemon as request
lines, and every line the daemon sends (replies, events) comes back as one text message.

Who may use it: the server binds 127.0.0.1 by default; every request needs the secret token
(a 128-bit random string, compared in constant time), and a websocket needs an Origin header
naming this very server (a page from another site cannot open it, even if it guessed the port)
and a Host header naming this machine: loopback when bound to loopback, else an IP address or
this machine's own host name (no DNS rebinding: a name an attacker controls is refused). The
page is sent with a strict Content-Security-Policy and no-referrer, so the token does not leak
to other sites.

The token is kept in a file (`token_file`, owner-only) and used again at the next start, so an
open page reconnects by itself after a restart and a phone paired on the LAN (docs/gui.md)
keeps working; deleting the file makes a new one.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import os
import re
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


TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")


def load_token(path: Path) -> str:
    """The token kept in `path`, or a new one written there (0600) if it has none or a broken
    one. A file that cannot be written leaves a token for this run only (logged)."""
    path = Path(path)
    try:
        token = path.read_text().strip()
        if TOKEN_PATTERN.fullmatch(token):
            return token
        log.warning("web: %s holds no valid token; making a new one", path)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as e:
        log.warning("web: cannot read %s (%s); making a new token", path, e)
    token = secrets.token_urlsafe(16)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(temporary, path)
    except OSError as e:
        log.warning("web: cannot keep the token in %s (%s): it changes at the next start",
                    path, e.strerror)
    return token


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (for the URLs a phone can open)."""
    found = []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for info in infos:
        address = info[4][0]
        if not address.startswith("127.") and address not in found:
            found.append(address)
    try:  # the address of the default route, without sending anything
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        if not address.startswith("127.") and address not in found:
            found.append(address)
    except OSError:
        pass
    return found


def _is_ip(name: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
        return True
    except OSError:
        return False


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
        self.lan: list[str] = []  # the URLs for phones on the LAN, told to each page

    @classmethod
    async def start(cls, socket_path: Path, host: str = "127.0.0.1", port: int = 8080,
                    token: str | None = None, token_file: Path | None = None) -> WebBridge:
        if token is None:
            token = load_token(token_file) if token_file is not None else secrets.token_urlsafe(16)
        bridge = cls(socket_path, host, token)
        bridge.server = await serve(
            bridge._handle, host, port, process_request=bridge._check,
            max_size=protocol.MAX_LINE, server_header=None,
        )
        bridge.port = bridge.server.sockets[0].getsockname()[1]
        bridge.lan = bridge.lan_urls  # once: it may ask the resolver
        return bridge

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def lan_urls(self) -> list[str]:
        """The URLs phones on the LAN open, when bound to every address (docs/gui.md)."""
        if self.host not in ("0.0.0.0", "", "::"):
            return [] if self.host in LOOPBACK else [self.url]
        return [f"http://{a}:{self.port}/?token={self.token}" for a in lan_addresses()]

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
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name in LOOPBACK:
            return True
        if self.host in LOOPBACK:
            return False
        # bound to the LAN on purpose: an IP address (no name, so no DNS rebinding) or this
        # machine's own name, as phones on the LAN call it (NAME or NAME.local)
        name = name.strip("[]").lower()
        own = socket.gethostname().lower()
        return _is_ip(name) or name in (own, own + ".local")

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

        if self.lan:  # the settings page shows where phones open the GUI
            await ws.send(json.dumps({"event": "bridge", "lan_urls": self.lan}))

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


def token_file_for(socket_path: Path) -> Path:
    """Where `kadtalk web` keeps its token: beside the daemon's socket (an owner-only runtime
    directory), so a restarted bridge takes the pages it served back."""
    socket_path = Path(socket_path)
    return socket_path.with_name(socket_path.name + ".web-token")


async def run_web(socket_path: Path, host: str, port: int) -> None:
    """What `kadtalk web` runs: serve until interrupted. NotRunning (kadtalk.app.client) when no
    daemon answers on `socket_path`: a GUI with nothing behind it would only confuse; WebError
    when the port cannot be bound."""
    from .client import ControlClient

    await (await ControlClient.connect(socket_path)).close()
    try:
        bridge = await WebBridge.start(socket_path, host, port,
                                       token_file=token_file_for(socket_path))
    except OSError as e:
        raise WebError(bind_problem(e, host, port, "--port N")) from None
    print(f"web GUI: {bridge.url}", flush=True)
    for url in bridge.lan_urls:
        print(f"web GUI on the LAN: {url}", flush=True)
    try:
        await bridge.serve_forever()
    finally:
        await bridge.close()
