"""What the settings page changes outlasts the daemon, and a chat pages back.

- The accept mode, the call volume, the daemon's ring volume and the block list, set from a
  control client, are found again by a restarted real daemon (settings.json and blocked.json in
  the config directory); config.toml is never written, and a later edit of it wins.
- The ring volume scales the daemon's own ring tone, at once.
- `messages` with `before` pages back through a conversation, in order, each message once.
- In the browser (Debian's Chromium, the module's one browser): the settings set on the page are
  shown again after the daemon restarts; a long chat shows its latest page and a touch-sized
  "Load older messages" button that brings the earlier ones, in order, keeping the place.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from kadtalk.app.config import ConfigError, load_config
from kadtalk.app.ringer import Ringer, generated_tone

from .conftest import DaemonProcess, connect, request_sync, start_daemon
from .test_gui_pages import free_port
from .test_gui_chat import (DESKTOP, PHONE, browser,  # noqa: F401
                            check_view, new_page, stop)

NOBODY = "ab" * 20
CONFIG_TOML = """# my own notes: the daemon must keep them
[calls]
accept = "anyone"   # strangers may ring
"""


def volumes(socket) -> dict:
    reply = request_sync(socket, "volume")
    return {"volume": reply["volume"], "ring": reply["ring"]}


@pytest.mark.timeout(90)
def test_accept_volumes_and_blocks_outlast_a_restart_and_a_later_config_edit_wins(sock_root):
    directory = sock_root / "alice"
    directory.mkdir(mode=0o700)
    (directory / "config.toml").write_text(CONFIG_TOML)
    args = ("--capture", "none", "--playback", "none")
    d = DaemonProcess(sock_root, "alice", *args)
    try:
        d.ready_sync()
        assert volumes(d.socket) == {"volume": 100, "ring": 100}
        assert request_sync(d.socket, "accept", **{"from": "contacts"})["ok"]
        assert request_sync(d.socket, "volume", percent=70, ring=40)["ok"]
        assert request_sync(d.socket, "block", who=NOBODY)["ok"]
        assert d.terminate_sync() == 0

        assert (directory / "config.toml").read_text() == CONFIG_TOML  # never written
        assert (directory / "settings.json").stat().st_mode & 0o777 == 0o600
        d = DaemonProcess(sock_root, "alice", *args)
        d.ready_sync()
        status = request_sync(d.socket, "status")
        assert (status["accept"], status["blocked"]) == ("contacts", [NOBODY])
        assert volumes(d.socket) == {"volume": 70, "ring": 40}
        # back to config.toml's value: the entry goes, so config.toml rules it again
        assert request_sync(d.socket, "accept", **{"from": "anyone"})["ok"]
        assert set(json.loads((directory / "settings.json").read_text())) == {"volume",
                                                                               "ring_volume"}
        assert d.terminate_sync() == 0

        # the user edits config.toml after the GUI set the volume: the edit wins
        (directory / "config.toml").write_text(CONFIG_TOML + "[audio]\nvolume = 90\n")
        d = DaemonProcess(sock_root, "alice", *args)
        d.ready_sync()
        assert volumes(d.socket) == {"volume": 90, "ring": 40}
        assert request_sync(d.socket, "status")["accept"] == "anyone"
        assert "[audio] volume is 90 in config.toml" in d.log()
        assert json.loads((directory / "settings.json").read_text()) == {
            "ring_volume": {"value": 40, "over": 100}}
    finally:
        stop(d)


def test_a_broken_settings_file_names_itself_and_bad_values_in_config_toml_are_refused(tmp_path):
    (tmp_path / "settings.json").write_text('{"volume": {"value": 900, "over": 100}}')
    with pytest.raises(ConfigError, match="settings.json"):
        load_config(directory=tmp_path)
    (tmp_path / "settings.json").write_text('{"accept": "contacts"}')
    with pytest.raises(ConfigError, match="settings.json"):
        load_config(directory=tmp_path)
    (tmp_path / "settings.json").unlink()
    (tmp_path / "config.toml").write_text("[calls]\nring_volume = 201\n")
    with pytest.raises(ConfigError, match=r"\[calls\] ring_volume must be a percentage"):
        load_config(directory=tmp_path)


def test_the_ring_volume_scales_the_daemons_ring_tone_at_once():
    frames, level = [], [50]

    class Sink:
        def write_frame(self, pcm):
            frames.append(np.frombuffer(pcm, "<i2").astype(int))
            return True

        def close(self):
            pass

    async def scenario():
        ringer = Ringer(generated_tone(), "speaker", lambda name: Sink(), volume=lambda: level[0])
        ringer.start()
        await asyncio.sleep(0.05)
        level[0] = 0
        await asyncio.sleep(0.05)
        ringer.stop()

    asyncio.run(scenario())
    tone = np.frombuffer(generated_tone()[0], "<i2").astype(int)
    assert tone.any() and np.array_equal(frames[0], tone * 50 // 100)
    assert not frames[-1].any()  # silenced while it rang


def test_the_volume_command_sets_the_ring_volume_checks_it_and_tells_every_client(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        c, other = await connect(d), await connect(d)
        try:
            for bad in (-1, 201, 5.5, True, "80"):
                assert (await c.request("volume", check=False, ring=bad))["error"] == \
                    "bad_argument", bad
            reply = await c.request("volume", ring=30)
            assert (reply["volume"], reply["ring"]) == (100, 30)
            event = await other.wait_event(lambda e: e.get("event") == "volume")
            assert (event["volume"], event["ring"]) == (100, 30)
            assert d.calls.ringer.volume == 30 and d.calls.devices.volume == 100
        finally:
            await c.close()
            await other.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_messages_before_pages_back_in_order_each_message_once(sock_root):
    async def scenario():
        d = await start_daemon(sock_root, "a")
        c = await connect(d)
        try:
            db = d.history.db
            for i in range(25):  # pairs written at the same instant: the row id breaks the tie
                db.add_message(NOBODY, "out", f"{i:032x}", f"m{i}", 1000.0 + i // 2, seq=i + 1)
            db.add_message("cd" * 20, "out", "f" * 32, "to someone else", 1005.5, seq=1)
            pages, before = [], None
            while True:
                args = {"before": before} if before is not None else {}
                r = await c.request("messages", peer=NOBODY, limit=10, **args)
                pages.insert(0, [m["text"] for m in r["messages"]])
                if not r["more"]:
                    break
                before = r["messages"][0]["id"]
            assert [len(p) for p in pages] == [5, 10, 10]
            assert sum(pages, []) == [f"m{i}" for i in range(25)]
            everyone = await c.request("messages", limit=30)
            assert len(everyone["messages"]) == 26 and not everyone["more"]
            gone = await c.request("messages", peer=NOBODY, before=10**9)
            assert gone["messages"] == [] and not gone["more"]  # an id no row has
            for bad in (0, -3, "5", 2.0, True):
                assert (await c.request("messages", check=False, before=bad))["error"] == \
                    "bad_argument", bad
        finally:
            await c.close()
            await d.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.mark.timeout(300)  # 63 s at load average 11 (session 12)
def test_the_settings_page_keeps_its_settings_across_a_restart_and_a_chat_loads_older_pages(
        sock_root, browser):  # noqa: F811
    args = ("--capture", "none", "--playback", "none", "--web", "--web-port", str(free_port()))
    d = DaemonProcess(sock_root, "alice", *args)
    try:
        d.ready_sync()
        url = d.stdout_line_sync("web GUI:").split()[-1]
        phone = new_page(browser, PHONE, url)
        phone.tap("#nav-settings")
        phone.wait_for_selector("#volume[data-current='100']")
        phone.fill("#volume", "80")
        phone.wait_for_selector("#volume[data-current='80']")
        phone.fill("#daemon-ring", "35")
        phone.wait_for_selector("#daemon-ring[data-current='35']")
        assert phone.text_content("#daemon-ring-text") == "35 %"
        phone.select_option("#accept-select", "contacts")
        phone.wait_for_selector("#accept-select[data-current='contacts']")
        check_view(phone, "7-settings-kept")

        # 130 messages to a contact nobody finds: a page of 100, then the 30 before
        assert request_sync(d.socket, "add_contact", name="Zed", peer=NOBODY)["ok"]
        for i in range(130):
            assert request_sync(d.socket, "send", to=NOBODY, text=f"note {i}")["ok"]
        assert d.terminate_sync() == 0
        phone.wait_for_selector("body[data-connected='false']")
        d = DaemonProcess(sock_root, "alice", *args)
        d.ready_sync()
        phone.wait_for_selector("body[data-connects='2'][data-connected='true']", timeout=15_000)
        assert phone.get_attribute("#volume", "data-current") == "80"
        assert phone.get_attribute("#daemon-ring", "data-current") == "35"
        assert phone.input_value("#accept-select") == "contacts"

        phone.tap("#nav-chats")
        phone.tap(f"#contacts li[data-peer='{NOBODY}'] button.open")
        phone.wait_for_selector("#messages li >> nth=99")
        texts = phone.locator("#messages li .text").all_text_contents()
        assert texts == [f"note {i}" for i in range(30, 130)]
        phone.evaluate("() => window.scrollTo(0, 0)")
        older = phone.locator("#older-btn")
        assert older.is_visible() and older.bounding_box()["height"] >= 44
        check_view(phone, "8-chat-older-button")
        phone.evaluate("() => window.scrollTo(0, 0)")
        reading = phone.locator("#messages li").first.element_handle()  # "note 30"
        top = reading.bounding_box()["y"]
        older.tap()
        phone.wait_for_selector("#messages li >> nth=129")
        assert phone.locator("#messages li .text").all_text_contents() == [
            f"note {i}" for i in range(130)]
        assert abs(reading.bounding_box()["y"] - top) < 2  # the place is kept
        assert not older.is_visible()  # nothing older
        check_view(phone, "8-chat-older")
        desk = new_page(browser, DESKTOP, url)
        desk.click(f"#contacts li[data-peer='{NOBODY}'] button.open")
        desk.wait_for_selector("#older-btn", state="visible")
        desk.click("#older-btn")
        desk.wait_for_selector("#messages li >> nth=129")
        check_view(desk, "8-chat-older", widths=())
        assert phone.errors == [] and desk.errors == []
    finally:
        stop(d)
