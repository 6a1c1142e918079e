"""The GUI on the LAN (docs/gui.md, "Phones on the LAN"): bound to every address by the user's
choice, a page opened by a LAN address works and keeps its pairing secret across restarts,
while a page from another origin (even one that knows the secret) and a request naming a host
this machine is not (DNS rebinding) are refused. Headless Chromium (Playwright) plays the
phone and the hostile page."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kadtalk.app.web import WebBridge, lan_addresses, load_token

from .conftest import KADTALK, DaemonProcess, start_daemon
from .test_gui_chat import PHONE, browser, check_view, new_page, stop  # noqa: F401
from .test_gui_pages import free_port
from .test_web import http_get


def test_the_pairing_secret_is_kept_owner_only_and_a_broken_one_replaced(tmp_path):
    path = tmp_path / "conf" / "web-token"
    token = load_token(path)
    assert load_token(path) == token and len(token) >= 22
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("short\n")
    fresh = load_token(path)
    assert fresh != token and load_token(path) == fresh
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_on_the_lan_the_host_must_be_an_address_or_this_machines_name(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        web = await WebBridge.start(d.socket_path, "0.0.0.0", 0,
                                    token_file=sock_root / "web-token")
        try:
            port, token = web.port, web.token
            assert all(url.endswith(f":{port}/?token={token}") for url in web.lan_urls)
            path = f"/?token={token}"
            own = socket.gethostname()
            for host in (f"192.168.1.20:{port}", f"[fe80::1]:{port}", f"{own}:{port}",
                         f"{own}.local:{port}", f"localhost:{port}"):
                assert (await http_get(port, path, host=host))[0] == 200, host
            for host in (f"evil.example:{port}", f"{own}.evil.example:{port}", f"1.2.3:{port}",
                         f"{own}.local.evil.example:{port}"):
                assert (await http_get(port, path, host=host))[0] == 403, host
            assert (await http_get(port, "/?token=wrong", host=f"192.168.1.20:{port}"))[0] == 403
        finally:
            await web.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


class _Hostile(BaseHTTPRequestHandler):
    """A page on another origin that knows the secret and tries the GUI's websocket."""
    target = ""

    def do_GET(self):
        body = (f"<!doctype html><title>evil</title><script>"
                f"const ws = new WebSocket('{self.target}');"
                "ws.onopen = () => { document.title = 'opened'; };"
                "ws.onclose = () => { if (document.title !== 'opened') document.title = 'refused'; };"
                "</script>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.timeout(240)  # 49 s at load average 11 (session 12)
def test_a_phone_on_the_lan_pairs_once_and_a_foreign_page_is_refused(sock_root, browser):  # noqa: F811
    port = free_port()
    args = ("--capture", "none", "--playback", "none")
    d = DaemonProcess(sock_root, "alice", *args)
    web = evil = None
    command = [*KADTALK, "web", "--host", "0.0.0.0", "--port", str(port), "--socket", str(d.socket)]
    try:
        d.ready_sync()
        web = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert web.stdout.readline().startswith("web GUI: http://127.0.0.1:")
        lan = web.stdout.readline().strip() if lan_addresses() else ""
        address = lan_addresses()[0] if lan else "127.0.0.2"  # no LAN here: another loopback
        token = (sock_root / "alice.sock.web-token").read_text().strip()
        url = f"http://{address}:{port}/?token={token}"
        if lan:
            assert lan == f"web GUI on the LAN: {url}"

        phone = new_page(browser, PHONE, url)  # the phone, on the LAN address
        phone.wait_for_selector("#own-id:not(:empty)")
        phone.tap("#nav-settings")  # the page names the URL for other phones
        if lan:
            assert phone.text_content("#lan-urls code") == url
        else:  # no address but loopback: nothing to name
            assert phone.is_visible("#lan-off")
        check_view(phone, "5-lan-phone")
        web.terminate()
        web.wait(10)
        phone.wait_for_selector("body[data-connected='false']")
        web = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        web.stdout.readline()
        phone.wait_for_selector("body[data-connects='2'][data-connected='true']", timeout=15_000)

        # a page from another origin, with the secret, from the same machine: refused
        _Hostile.target = f"ws://{address}:{port}/ws?token={token}"
        evil = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        hostile = phone.context.browser.new_page()
        hostile.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        hostile.wait_for_function("() => document.title !== 'evil'")
        assert hostile.title() == "refused"
        # a name that points at this machine but is not its own (DNS rebinding; the browser
        # maps *.example to 127.0.0.1): refused, the page as the websocket
        rebound = phone.context.new_page()
        response = rebound.goto(f"http://attacker.example:{port}/?token={token}")
        assert response.status == 403
        with socket.create_connection(("127.0.0.1", port), 10) as raw:  # the websocket too
            raw.sendall(f"GET /ws?token={token} HTTP/1.1\r\nHost: attacker.example:{port}\r\n"
                        f"Origin: http://attacker.example:{port}\r\nConnection: Upgrade\r\n"
                        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
            assert raw.recv(100).startswith(b"HTTP/1.1 403")
        assert phone.errors == []
    finally:
        if evil is not None:
            evil.shutdown()
        if web is not None:
            web.terminate()
            web.wait(10)
        stop(d)
