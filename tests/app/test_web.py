"""The web GUI: the websocket bridge's access checks, and a real call placed and answered from
two GUIs in Debian's headless Chromium (Playwright). Screenshots go to test-artifacts/app/."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from kadtalk.app.web import WebBridge

from .test_gui_chat import RECORD_NOTIFICATIONS
from .conftest import KADTALK, DaemonProcess, connect, request_sync, start_daemon

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
CHROMIUM = os.environ.get("KADTALK_CHROMIUM", "/usr/bin/chromium")


async def http_get(port: int, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
                 "Connection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_the_bridge_refuses_a_wrong_token_a_foreign_origin_and_a_foreign_host(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        web = await WebBridge.start(d.socket_path, "127.0.0.1", 0)
        try:
            port, token = web.port, web.token
            assert web.url == f"http://127.0.0.1:{port}/?token={token}" and len(token) >= 20
            status, headers, body = await http_get(port, f"/?token={token}")
            assert status == 200 and b"kadtalk" in body
            assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
            assert headers["Referrer-Policy"] == "no-referrer"
            for path in ("/", "/?token=wrong", f"/?token={token[:-1]}"):
                assert (await http_get(port, path))[0] == 403, path
            assert (await http_get(port, f"/?token={token}", host="evil.example:80"))[0] == 403
            assert (await http_get(port, f"/nothing?token={token}"))[0] == 404
            two_hosts = f"127.0.0.1:{port}\r\nHost: evil.example"
            assert (await http_get(port, f"/?token={token}", host=two_hosts))[0] == 400

            good_origin = f"http://127.0.0.1:{port}"
            refused = [
                (f"ws://127.0.0.1:{port}/ws?token=wrong", good_origin),
                (f"ws://127.0.0.1:{port}/ws", good_origin),
                (f"ws://127.0.0.1:{port}/ws?token={token}", "http://evil.example"),
                (f"ws://127.0.0.1:{port}/ws?token={token}", f"http://localhost:{port + 1}"),
                (f"ws://127.0.0.1:{port}/ws?token={token}", None),
            ]
            for uri, origin in refused:
                with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
                    async with ws_connect(uri, origin=origin):
                        pass
                assert caught.value.response.status_code == 403, (uri, origin)
            assert web.refused == 11

            async with ws_connect(f"ws://127.0.0.1:{port}/ws?token={token}", origin=good_origin) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert hello == {"event": "hello", "version": 1, "node_id": d.node_id}
                await ws.send(json.dumps({"cmd": "id", "req": "x"}))
                await ws.send("not json")
                replies = []
                while len(replies) < 2:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if "reply" in message:
                        replies.append(message)
                assert replies[0] == {"reply": "id", "ok": True, "req": "x", "node_id": d.node_id}
                assert replies[1]["error"] == "malformed"
        finally:
            await web.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (./setup.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.timeout(120)
def test_a_call_from_one_gui_to_another_in_headless_chromium(sock_root, chromium):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    a = DaemonProcess(sock_root, "alice", "--capture", "tone:440", "--playback", "none",
                      "--web", "--web-port", "0")
    b = None
    try:
        a.ready_sync()
        url_a = a.stdout_line_sync("web GUI:").split()[-1]
        status = request_sync(a.socket, "status")
        port, alice_id = status["network"]["port"], status["node_id"]
        b = DaemonProcess(sock_root, "bob", "--capture", "tone:1000", "--playback", "none",
                          "--web", "--web-port", "0", "--bootstrap", f"127.0.0.1:{port}")
        b.ready_sync()
        url_b = b.stdout_line_sync("web GUI:").split()[-1]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", url_a)

        context = chromium.new_context(viewport={"width": 1100, "height": 720},
                                       permissions=["clipboard-read", "clipboard-write",
                                                    "notifications"])
        context.add_init_script(RECORD_NOTIFICATIONS)
        pa = context.new_page()
        pb = chromium.new_context(viewport={"width": 1100, "height": 720}).new_page()
        errors: list[str] = []
        for page in (pa, pb):
            page.on("pageerror", lambda e: errors.append(str(e)))
        pa.goto(url_a)
        pb.goto(url_b)
        pa.wait_for_function(f"() => document.getElementById('own-id').textContent === '{alice_id}'")
        bob_id = pb.wait_for_function(
            "() => document.getElementById('own-id').textContent.length === 40 && "
            "document.getElementById('own-id').textContent").json_value()
        pb.wait_for_selector("#net-status.up")
        pa.click("#copy-id")
        assert pa.evaluate("() => navigator.clipboard.readText()") == alice_id

        # Bob saves Alice as a contact, then calls her from the contact list
        pb.fill("#contact-name", "Alice")
        pb.fill("#contact-id", alice_id)
        pb.click("#add-contact-btn")
        pb.wait_for_selector(f"#contacts li[data-peer='{alice_id}']")
        pa.fill("#contact-name", "Bob")
        pa.fill("#contact-id", bob_id)
        pa.click("#add-contact-btn")
        pa.wait_for_selector(f"#contacts li[data-peer='{bob_id}']")
        # rename through the contact's button (a prompt), then back
        pb.once("dialog", lambda dialog: dialog.accept("Alice Liddell"))
        pb.click(f"#contacts li[data-peer='{alice_id}'] button.rename")  # shown without hover
        pb.wait_for_function(
            "() => document.getElementById('contacts').textContent.includes('Alice Liddell')")
        pb.screenshot(path=str(ARTIFACTS / "1-bob-contacts.png"))
        pb.fill("#dial-input", "alice liddell")
        pb.click("#dial-btn")

        pa.wait_for_selector("#incoming.show")
        assert pa.text_content("#incoming-name") == "Bob"
        pa.wait_for_function("() => document.title === 'Call from Bob — kadtalk'")
        assert pa.get_attribute("body", "data-ring") == "call"
        assert int(pa.get_attribute("body", "data-tones")) >= 1  # the Web Audio ring
        assert pa.evaluate("() => window.__notices") == [{"title": "Incoming call from Bob",
                                                          "body": bob_id}]
        pa.screenshot(path=str(ARTIFACTS / "2-alice-ringing.png"))
        pa.click("#answer-btn")
        pa.wait_for_function("() => document.title === 'kadtalk' && !document.body.dataset.ring")
        for page in (pa, pb):
            page.wait_for_selector("#call-panel[data-state='talking']")
            page.wait_for_function(
                "() => Number(document.getElementById('quality-graph').dataset.points) >= 3",
                timeout=10_000)
            assert re.fullmatch(r"00:0\d", page.text_content("#call-timer"))
        assert "kbit/s" in pa.text_content("#quality-text")
        pa.click("#mute-btn")
        pa.wait_for_function("() => document.getElementById('mute-btn').textContent === 'Unmute'")
        pa.screenshot(path=str(ARTIFACTS / "3-alice-in-call.png"))
        pb.screenshot(path=str(ARTIFACTS / "4-bob-in-call.png"))

        pb.click("#hangup-btn")
        for page in (pa, pb):
            page.wait_for_selector("#call-panel", state="hidden")
            page.click("#nav-history")
            page.wait_for_selector("#history li[data-outcome='answered']")
        assert "From Bob: answered after 00:0" in pa.text_content("#history")
        assert "remote hung up" in pa.text_content("#history")
        pa.click("#nav-settings")
        # the audio devices: chosen from what the daemon offers, never typed in
        pa.wait_for_function("() => document.getElementById('capture').dataset.current === 'tone:440'")
        offered = pa.eval_on_selector_all("#capture option", "os => os.map(o => o.value)")
        assert {"tone:440", "none", "default"} <= set(offered), offered
        assert pa.eval_on_selector_all("#audio-form input:not([type=range])", "els => els.length") == 0  # no device text box
        pa.select_option("#capture", "none")
        pa.wait_for_function("() => document.getElementById('capture').dataset.current === 'none'")
        assert request_sync(a.socket, "status")["audio"]["capture"] == "none"
        pa.screenshot(path=str(ARTIFACTS / "5-alice-after-call.png"))
        assert errors == []
    finally:
        for d in (b, a):
            if d is not None:
                try:
                    assert d.terminate_sync() == 0
                finally:
                    d.kill()
    assert len(list(ARTIFACTS.glob("*.png"))) == 5




def test_kadtalk_web_bridges_a_running_daemon(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        proc = await asyncio.create_subprocess_exec(
            *KADTALK, "web", "--port", "0", "--socket", str(d.socket_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            url = line.split()[-1]
            assert line.startswith("web GUI: http://127.0.0.1:")
            port = int(url.split(":")[2].split("/")[0])
            ws_url = url.replace("http://", "ws://").replace("/?token=", "/ws?token=")
            async with ws_connect(ws_url, origin=f"http://127.0.0.1:{port}") as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert hello["node_id"] == d.node_id
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_audio_test_plays_a_tone_and_reports_the_microphone_level_to_the_asker(sock_root):
    def done(e):
        return e.get("event") == "audio_level" and e.get("done")

    async def scenario():
        d = await start_daemon(sock_root, "a", capture="tone:440")
        c, other = await connect(d), await connect(d)
        try:
            for seconds in (0, 11, True, "3"):
                reply = await c.request("audio_test", check=False, seconds=seconds)
                assert reply["error"] == "bad_argument", seconds
            reply = await c.request("audio_test", seconds=1)
            assert reply["played"] is True and reply["capture"] == "tone:440"
            second = await other.request("audio_test", check=False, seconds=1)
            assert second["error"] == "busy"  # one test at a time
            last = await c.wait_event(done, timeout=5)
            assert last["frames_read"] == 50 and last["at"] == 1.0
            assert last["loudest_dbfs"] == -12.2  # the tone source: 8,000 of 32,768
            levels = [e for e in c.seen if e.get("event") == "audio_level"]
            assert len(levels) == 10
            assert all(e["peak_dbfs"] == -12.2 and e["rms_dbfs"] == -15.3 for e in levels)
            assert not [e for e in other.seen if e.get("event") == "audio_level"]
            await c.request("set_audio", capture="none")
            since = len(c.seen)
            await c.request("audio_test", seconds=1)
            assert (await c.wait_event(done, timeout=5, since=since))["loudest_dbfs"] == -96.0
        finally:
            await c.close()
            await other.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_volume_scales_calls_playback_at_once_and_is_checked():
    from kadtalk.app.devices import Scaled

    class Owner:
        volume = 100

    written = []

    class Sink:
        def write_frame(self, pcm):
            written.append(np.frombuffer(pcm, "<i2").tolist())
            return True

    owner = Owner()
    sink = Scaled(Sink(), owner)
    frame = np.array([1000, -1000, 30000, -30000, 7], "<i2").tobytes()
    for volume in (100, 50, 200, 0):
        owner.volume = volume
        assert sink.write_frame(frame) is True
    assert written == [[1000, -1000, 30000, -30000, 7], [500, -500, 15000, -15000, 3],
                       [2000, -2000, 32767, -32768, 14], [0, 0, 0, 0, 0]]


def test_the_volume_command_sets_checks_and_tells_every_client(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        c, other = await connect(d), await connect(d)
        try:
            assert (await c.request("volume"))["volume"] == 100
            for bad in (-1, 201, 50.5, True, "80"):
                assert (await c.request("volume", check=False, percent=bad))["error"] == \
                    "bad_argument", bad
            assert (await c.request("volume", percent=60))["volume"] == 60
            assert (await other.wait_event(lambda e: e.get("event") == "volume"))["volume"] == 60
            assert d.calls.devices.volume == 60
        finally:
            await c.close()
            await other.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
