"""The web GUI's history and settings pages, and its reconnecting, in Debian's headless
Chromium (Playwright), against real daemons: call back / message / add to contacts from the
history; the block list, accept mode and devices from the settings; a page that reconnects by
itself after the daemon (with its bridge) restarts and after `kadtalk web` restarts. axe-core
and the layout checks run on each page at 390x844 and 1280x800."""

from __future__ import annotations

import socket
import subprocess

import pytest

from .conftest import KADTALK, DaemonProcess, request_sync
from .test_gui_chat import (DESKTOP, PHONE, axe_violations, browser,  # noqa: F401
                            check_view, layout_problems, new_page, start_pair, stop)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)  # 70 s at load average 11 (session 12)
def test_history_calls_back_messages_and_adds_a_contact_and_settings_change_the_daemon(
        sock_root, browser):  # noqa: F811
    a, b = None, None
    try:
        a, b, ids = start_pair(sock_root)
        phone = new_page(browser, PHONE, ids["url_a"])  # alice
        desk = new_page(browser, DESKTOP, ids["url_b"])  # bob
        desk.wait_for_selector("#net-status.up")
        # alice turns the page's sounds off (kept in the browser)
        phone.tap("#nav-settings")
        phone.locator("#sounds").tap()
        assert phone.evaluate("() => localStorage.getItem('kadtalk.sounds')") == "off"
        phone.tap("#nav-chats")
        # bob, a stranger to alice, writes: "Others who wrote", with an unread count and Add
        request_sync(b.socket, "send", to=ids["alice"], text="hello, it is Bob")
        stranger = f"#strangers li[data-peer='{ids['bob']}']"
        phone.wait_for_selector(f"{stranger} .badge:text('1')")
        assert phone.is_visible(f"{stranger} button.add-contact")
        assert phone.title() == "(1) kadtalk"
        assert phone.get_attribute("body", "data-tones") == "0"  # no chime: sounds are off
        # alice calls him by ID; bob declines
        phone.fill("#dial-input", ids["bob"])
        phone.tap("#dial-btn")
        desk.wait_for_selector("#incoming.show")
        desk.click("#decline-btn")
        phone.wait_for_selector("#call-panel", state="hidden")
        desk.wait_for_selector("#incoming", state="hidden")

        phone.tap("#nav-history")
        row = f"#history li[data-peer='{ids['bob']}']"
        phone.wait_for_selector(f"{row}[data-outcome='declined']")
        assert not phone.is_visible("#list-pane")
        check_view(phone, "3-history")
        desk.click("#nav-history")
        desk.wait_for_selector(f"#history li[data-peer='{ids['alice']}'][data-outcome='declined']")
        assert desk.text_content("#missed-badge") == ""  # listed: seen
        check_view(desk, "3-history", widths=())

        phone.once("dialog", lambda dialog: dialog.accept("Bob"))
        phone.tap(f"{row} button.add-contact")
        phone.wait_for_function(f"() => !document.querySelector(\"{row} button.add-contact\")")
        assert request_sync(a.socket, "contacts")["contacts"] == [{"peer": ids["bob"],
                                                                   "name": "Bob"}]
        phone.tap(f"{row} button.message")
        phone.wait_for_selector("#chat", state="visible")
        assert phone.text_content("#chat-name") == "Bob"
        assert phone.text_content("#messages li .text") == "hello, it is Bob"
        phone.wait_for_function("() => document.title === 'kadtalk'")
        phone.tap("#nav-history")
        desk.click("#nav-chats")
        phone.tap(f"{row} button.call-back")
        desk.wait_for_selector("#incoming.show")
        phone.wait_for_selector("#call-panel.show")
        assert phone.text_content("#call-peer") == "Bob"
        assert layout_problems(phone) == [] and axe_violations(phone) == []  # the call panel
        assert axe_violations(desk) == []  # the incoming call
        phone.tap("#hangup-btn")  # while it rings: a missed call for bob
        phone.wait_for_selector("#call-panel", state="hidden")
        phone.wait_for_selector(f"{row}[data-outcome='cancelled']")
        desk.wait_for_selector("#missed-badge:text('1')")
        desk.click("#nav-history")
        desk.wait_for_selector(f"#history li[data-peer='{ids['alice']}'][data-outcome='missed']")
        desk.wait_for_selector("#missed-badge:empty", state="attached")

        # settings: what the daemon's commands allow, changed from the phone
        phone.tap("#nav-settings")
        phone.wait_for_selector("#blocked li.empty")
        phone.select_option("#accept-select", "contacts")
        phone.wait_for_selector("#accept-select[data-current='contacts']")
        phone.fill("#block-input", ids["bob"])
        phone.tap("#block-btn")
        phone.wait_for_selector(f"#blocked li[data-peer='{ids['bob']}']")
        assert phone.text_content(f"#blocked li[data-peer='{ids['bob']}'] span") == "Bob"
        status = request_sync(a.socket, "status")
        assert status["accept"] == "contacts" and status["blocked"] == [ids["bob"]]
        phone.select_option("#presence-select", "away")
        phone.wait_for_selector("#presence-select[data-current='away']")
        assert request_sync(a.socket, "presence")["status"] == "away"
        assert phone.is_visible("#lan-off")  # served to this machine only
        check_view(phone, "4-settings")
        phone.tap(f"#blocked li[data-peer='{ids['bob']}'] button.unblock")
        phone.wait_for_selector("#blocked li.empty")
        assert request_sync(a.socket, "status")["blocked"] == []
        desk.click("#nav-settings")
        desk.wait_for_function("() => document.getElementById('capture').dataset.current === 'none'")
        desk.select_option("#capture", "tone:440")  # a microphone that hears a tone
        desk.wait_for_function("() => document.getElementById('capture').dataset.current === 'tone:440'")
        desk.fill("#volume", "150")  # a range: fill sets it and fires change
        desk.wait_for_selector("#volume[data-current='150']")
        assert request_sync(b.socket, "volume")["volume"] == 150
        assert desk.text_content("#volume-text") == "150 %"
        desk.click("#audio-test-btn")
        desk.wait_for_function("() => document.getElementById('level').value > -20")
        peak = float(desk.wait_for_selector("#audio-test-btn[data-peak]").get_attribute("data-peak"))
        assert -13 < peak < -11  # the tone source's amplitude, 8,000 of 32,768
        assert "dBFS" in desk.text_content("#level-text")
        check_view(desk, "4-settings", widths=())
        for page in (phone, desk):
            assert page.errors == []
    finally:
        stop(b, a)


@pytest.mark.timeout(240)  # 52 s at load average 11 (session 12)
def test_the_page_reconnects_after_the_daemon_and_after_the_bridge_restart(sock_root, browser):  # noqa: F811
    port = free_port()
    args = ("--capture", "none", "--playback", "none", "--web", "--web-port", str(port))
    d = DaemonProcess(sock_root, "alice", *args)
    web = None
    try:
        d.ready_sync()
        url = d.stdout_line_sync("web GUI:").split()[-1]
        page = new_page(browser, PHONE, url)
        own = page.text_content("#own-id")
        assert page.get_attribute("body", "data-connects") == "1"
        assert d.terminate_sync() == 0  # the daemon and its bridge stop...
        page.wait_for_selector("body[data-connected='false']")
        assert "retrying" in page.text_content("#net-text")
        d = DaemonProcess(sock_root, "alice", *args)  # ...and start again, same config dir
        d.ready_sync()
        assert d.stdout_line_sync("web GUI:").split()[-1] == url  # the token was kept
        page.wait_for_selector("body[data-connects='2'][data-connected='true']", timeout=15_000)
        assert page.text_content("#own-id") == own

        # `kadtalk web` beside the daemon: it restarts with the same token (beside the socket)
        web_port = free_port()
        command = [*KADTALK, "web", "--port", str(web_port), "--socket", str(d.socket)]
        web = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        url = web.stdout.readline().split()[-1]
        other = new_page(browser, DESKTOP, url)
        web.terminate()
        assert web.wait(10) == 0 or web.returncode == -15
        other.wait_for_selector("body[data-connected='false']")
        web = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert web.stdout.readline().split()[-1] == url
        other.wait_for_selector("body[data-connects='2'][data-connected='true']", timeout=15_000)
        assert page.errors == [] and other.errors == []
    finally:
        if web is not None:
            web.terminate()
            web.wait(10)
        stop(d)


@pytest.mark.timeout(240)  # 33 s at load average 11 (session 12)
def test_a_contact_request_from_one_page_accepted_on_the_other_then_each_sees_the_others_status(
        sock_root, browser):  # noqa: F811
    """Issue 14 item 3 from the GUI between real daemons: alice adds bob and asks him to add
    her (the form's checkbox), bob's page shows the request and accepts it, both pages then
    show the other as a contact with a green dot, and alice's "away" reaches bob's page."""
    a, b = None, None
    try:
        a, b, ids = start_pair(sock_root)
        phone = new_page(browser, PHONE, ids["url_a"])  # alice
        desk = new_page(browser, DESKTOP, ids["url_b"])  # bob
        phone.fill("#contact-name", "Bob")
        phone.fill("#contact-id", ids["bob"])
        phone.locator("label.check:has(#ask-back)").tap()
        assert phone.is_checked("#ask-back")
        phone.fill("#request-note", "Alice, from the choir")
        phone.tap("#add-contact-btn")
        phone.wait_for_selector(f"#contacts li[data-peer='{ids['bob']}']")

        request = f"#requests li[data-peer='{ids['alice']}']"
        desk.wait_for_selector(request)
        assert desk.is_visible("#requests-box")
        assert desk.text_content(f"{request} .what i") == "Alice, from the choir"
        check_view(desk, "5-contact-request", widths=(360,))
        desk.once("dialog", lambda dialog: dialog.accept("Alice"))
        desk.click(f"{request} button.green")
        desk.wait_for_selector("#requests-box", state="hidden")
        assert request_sync(b.socket, "contacts")["contacts"] == [{"peer": ids["alice"],
                                                                   "name": "Alice"}]
        alice_dot = f"#contacts li[data-peer='{ids['alice']}'] .avatar[data-presence='online']"
        desk.wait_for_selector(alice_dot)
        phone.wait_for_selector(
            f"#contacts li[data-peer='{ids['bob']}'] .avatar[data-presence='online']")
        assert [r["state"] for r in request_sync(a.socket, "contact_requests")["outgoing"]] \
            == ["accepted"]

        phone.tap("#nav-settings")
        phone.select_option("#presence-select", "away")
        phone.wait_for_selector("#presence-select[data-current='away']")
        desk.wait_for_selector(
            f"#contacts li[data-peer='{ids['alice']}'] .avatar[data-presence='away']")
        for page in (phone, desk):
            assert page.errors == []
    finally:
        stop(b, a)
