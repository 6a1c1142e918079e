"""The web GUI shows the status' reachability (public address, NAT, relay) and runs `doctor`
from its "Check connection" button, in Debian's headless Chromium (Playwright); a
screenshot goes to test-artifacts/app/doctor/."""

from __future__ import annotations

import pytest

from .conftest import DaemonProcess, request_sync
from .test_web import ARTIFACTS, chromium  # noqa: F401 (a fixture)


@pytest.mark.timeout(120)
def test_the_gui_shows_reachability_and_checks_the_connection(sock_root, chromium):  # noqa: F811
    a = DaemonProcess(sock_root, "alice", "--capture", "none", "--playback", "none")
    b = None
    try:
        a.ready_sync()
        port = request_sync(a.socket, "status")["network"]["port"]
        b = DaemonProcess(sock_root, "bob", "--capture", "none", "--playback", "none",
                          "--web", "--web-port", "0", "--bootstrap", f"127.0.0.1:{port}")
        b.ready_sync()
        url = b.stdout_line_sync("web GUI:").split()[-1]
        page = chromium.new_context(viewport={"width": 1100, "height": 720}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#net-status.up")
        page.wait_for_function(  # the keep-alives' answers: where alice sees bob
            "() => document.getElementById('reach-public').textContent.startsWith('127.0.0.1:')",
            timeout=20_000)
        bob_port = request_sync(b.socket, "status")["network"]["port"]
        assert page.text_content("#reach-public") == f"127.0.0.1:{bob_port}"
        assert page.text_content("#reach-nat").startswith("none")
        assert page.text_content("#reach-relay").startswith("calls need none")
        page.click("#doctor-btn")
        page.wait_for_selector("#doctor[data-code='0']", timeout=20_000)
        items = page.eval_on_selector_all("#doctor li", "els => els.map(e => [e.dataset.ok, "
                                          "e.textContent])")
        assert [ok for ok, _ in items] == ["true", "true", "null"]
        assert items[1][1].startswith("Calls can reach you directly")
        assert not page.is_disabled("#doctor-btn")
        (ARTIFACTS / "doctor").mkdir(parents=True, exist_ok=True)  # test_web counts its own
        page.screenshot(path=str(ARTIFACTS / "doctor" / "check-connection.png"))
        assert errors == []
    finally:
        for d in (b, a):
            if d is not None:
                try:
                    assert d.terminate_sync() == 0
                finally:
                    d.kill()
