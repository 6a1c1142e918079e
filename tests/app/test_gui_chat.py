"""The web GUI as a messenger, in Debian's headless Chromium (Playwright): the layout from a
360 px phone to a 1280 px desktop (no sideways scrolling, every control on screen and at least
44 px tall, axe-core finds no serious violation), and a chat between two real daemons, one
page a phone and the other a desktop: sent / delivered states, the unread badge, the title and
a browser notification for the incoming message. Screenshots go to test-artifacts/app/gui/.

The other tests of the GUI (test_gui_*.py) import the helpers below; one browser serves a
whole module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import DaemonProcess, request_sync

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app" / "gui"
CHROMIUM = os.environ.get("KADTALK_CHROMIUM", "/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
# Counts the page's notifications (and still shows them): headless Chromium has no notification
# centre to look at.
RECORD_NOTIFICATIONS = """
window.__notices = [];
if (window.Notification) {
  const Real = window.Notification;
  window.Notification = function (title, options) {
    window.__notices.push({ title, body: (options || {}).body });
    return new Real(title, options);
  };
  Object.defineProperty(window.Notification, "permission", { get: () => Real.permission });
  window.Notification.requestPermission = (...a) => Real.requestPermission(...a);
}
"""


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (./setup.sh installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--autoplay-policy=no-user-gesture-required",
                  "--host-resolver-rules=MAP *.example 127.0.0.1"])  # test_gui_lan: rebinding
        try:
            yield b
        finally:
            b.close()


def new_page(browser, viewport: dict, url: str, notifications: bool = False):
    context = browser.new_context(viewport=viewport, has_touch=viewport["width"] < 760,
                                  permissions=["notifications"] if notifications else [])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-connected='true']")
    return page


def axe_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} -- "
            + "; ".join(n["target"][0] for n in v["nodes"][:3])
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def layout_problems(page) -> list[str]:
    """Sideways scrolling, and controls that are off screen or smaller than a finger (44 px),
    among the controls visible now (none shows on hover only: there is no hover in this check)."""
    return page.evaluate("""() => {
      const problems = [];
      const root = document.documentElement, W = root.clientWidth;
      if (root.scrollWidth > W) problems.push(`page scrolls sideways: ${root.scrollWidth} > ${W}`);
      if (document.body.scrollWidth > document.body.clientWidth) problems.push("body scrolls sideways");
      for (const control of document.querySelectorAll("button, input, select, textarea, a[href]")) {
        const e = control.type === "checkbox" ? control.closest("label") : control;  // the label is the target
        const r = e.getBoundingClientRect(), s = getComputedStyle(e);
        if (!r.width || !r.height || s.visibility === "hidden") continue;  // not shown now
        const name = e.id || e.className || e.textContent.trim().slice(0, 20);
        if (r.left < -0.5 || r.right > W + 0.5) problems.push(`${name} off screen: ${r.left}-${r.right}`);
        if (r.height < 44 || r.width < 44) problems.push(`${name} too small: ${r.width}x${r.height}`);
      }
      return problems;
    }""")


def check_view(page, name: str, widths=(360,)) -> None:
    """axe at this size, no sideways scrolling and touchable controls at this size and at each
    of `widths` (then back), and a screenshot."""
    size = page.viewport_size
    assert axe_violations(page) == [], name
    assert layout_problems(page) == [], name
    for width in widths:
        page.set_viewport_size({"width": width, "height": size["height"]})
        assert layout_problems(page) == [], f"{name} at {width} px"
    page.set_viewport_size(size)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{size['width']}x{size['height']}.png"),
                    full_page=True)


def start_pair(root: Path, *args: str) -> tuple[DaemonProcess, DaemonProcess, dict]:
    """alice, and bob joined through her, both serving the GUI; their IDs and URLs."""
    a = DaemonProcess(root, "alice", "--capture", "none", "--playback", "none",
                      "--web", "--web-port", "0", *args)
    a.ready_sync()
    status = request_sync(a.socket, "status")
    b = DaemonProcess(root, "bob", "--capture", "none", "--playback", "none", "--web",
                      "--web-port", "0", "--bootstrap", f"127.0.0.1:{status['network']['port']}",
                      *args)
    b.ready_sync()
    info = {"alice": status["node_id"], "bob": request_sync(b.socket, "id")["node_id"],
            "url_a": a.stdout_line_sync("web GUI:").split()[-1],
            "url_b": b.stdout_line_sync("web GUI:").split()[-1]}
    return a, b, info


def stop(*daemons) -> None:
    for d in daemons:
        if d is not None:
            try:
                assert d.terminate_sync() == 0
            finally:
                d.kill()


def add_contact(page, name: str, peer: str) -> None:
    page.fill("#contact-name", name)
    page.fill("#contact-id", peer)
    page.click("#add-contact-btn")
    page.wait_for_selector(f"#contacts li[data-peer='{peer}']")


@pytest.mark.timeout(240)  # 55 s at load average 11 (session 12)
def test_a_chat_between_a_phone_and_a_desktop_with_states_notices_and_no_sideways_scroll(
        sock_root, browser):
    a, b = None, None
    try:
        a, b, ids = start_pair(sock_root)
        phone = new_page(browser, PHONE, ids["url_a"], notifications=True)  # alice
        desk = new_page(browser, DESKTOP, ids["url_b"])  # bob
        for page in (phone, desk):
            page.wait_for_selector("#net-status.up")
        check_view(phone, "1-start")
        check_view(desk, "1-start", widths=())
        # bob adds alice and asks her to add him; she accepts on her phone
        desk.check("#ask-back")
        add_contact(desk, "Alice", ids["alice"])
        request = f"#requests li[data-peer='{ids['bob']}']"
        phone.wait_for_selector(request)
        assert phone.evaluate("() => window.__notices")[0]["title"].startswith("Contact request")
        phone.once("dialog", lambda dialog: dialog.accept("Bob"))
        phone.tap(f"{request} button.green")
        phone.wait_for_selector(f"#contacts li[data-peer='{ids['bob']}']")
        phone.wait_for_selector("#requests-box", state="hidden")
        phone.evaluate("() => { window.__notices = []; }")

        # bob writes from the desktop; markup in a text stays text
        desk.click(f"#contacts li[data-peer='{ids['alice']}'] button.open")
        desk.wait_for_selector("#chat", state="visible")
        assert desk.is_visible("#list-pane")  # the desktop shows the list beside the chat
        text = "Hello Alice <b>not bold</b>"
        desk.fill("#message-input", text)
        desk.press("#message-input", "Enter")
        desk.wait_for_selector("#messages li[data-direction='out'][data-state='delivered']")
        assert desk.text_content("#messages li .meta").endswith("delivered")

        # alice's phone, on the contact list: badge, title, notification, a tone
        phone.wait_for_function("() => document.title === '(1) kadtalk'")
        assert phone.text_content("#unread-badge") == "1"
        notices = phone.evaluate("() => window.__notices")
        assert notices == [{"title": "Message from Bob", "body": text}]
        assert int(phone.get_attribute("body", "data-tones")) >= 1
        badge = f"#contacts li[data-peer='{ids['bob']}'] .badge"
        assert phone.text_content(badge) == "1"
        phone.tap(f"#contacts li[data-peer='{ids['bob']}'] button.open")
        phone.wait_for_selector("#messages li[data-direction='in']")
        assert not phone.is_visible("#list-pane")  # one pane at a time on a phone
        assert phone.text_content("#messages li .text") == text
        assert phone.locator("#messages b").count() == 0
        phone.wait_for_function("() => document.title === 'kadtalk'")
        assert request_sync(a.socket, "status")["history"]["unread_messages"] == 0

        # alice answers; bob's open chat shows it at once, read: no notice
        phone.fill("#message-input", "Hi Bob! " + "a-long-word-without-spaces" * 8)
        phone.tap("#send-btn")
        phone.wait_for_selector("#messages li[data-direction='out'][data-state='delivered']")
        desk.wait_for_selector("#messages li[data-direction='in']")
        assert desk.evaluate("() => window.__notices") == []
        assert desk.title() == "kadtalk"
        check_view(phone, "2-chat")
        check_view(desk, "2-chat", widths=())
        phone.tap("#back-btn")
        phone.wait_for_selector("#list-pane", state="visible")

        # a message to a node nobody finds: "sent" (kept, waiting, with the reason), then
        # "stored offline" once its mailbox holds it (that event is played here: a DHT mailbox
        # needs storers and a prekey, tests/app/test_offline_messages.py)
        nobody = "ab" * 20
        desk.evaluate(f"openChat('{nobody}')")
        desk.wait_for_selector("#chat-add-btn", state="visible")
        desk.fill("#message-input", "are you there?")
        desk.click("#send-btn")
        waiting = desk.wait_for_selector("#messages li[data-direction='out'][data-state='pending']")
        assert waiting.text_content().endswith("sent")
        desk.wait_for_function("() => document.querySelector(\"#messages li[data-state='pending'] "
                               ".meta\").title.includes('unreachable')", timeout=20_000)
        desk.evaluate("""() => onEvent({event: "message_stored", message_id:
            document.querySelector("#messages li[data-state='pending']").dataset.messageId})""")
        assert desk.text_content("#messages li[data-state='stored'] .meta").endswith("stored offline")
        for page in (phone, desk):
            assert page.errors == []
    finally:
        stop(b, a)
