"""A peer's message text printed by the CLI (`kadtalk messages`, `kadtalk watch`) cannot act on
the terminal (review of 2026-12-06, /tmp/review/new_ansi.py): controls and bidi overrides are
shown as escapes, and a text's further lines are indented, so none passes for a line of ours."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from kadtalk.app.cli import _format_event, _format_messages

PEER = "ab" * 20
# a line erased and written over, a window title, hidden text, a right-to-left override
EVIL = ("ok\r\x1b[2K2026-12-06 13:00  <- alice (contact)     send 1 BTC to bc1q..."
        "\x1b]0;pwned\x07\x1b[8m\u202etxt.exe\u2066\x9b31m\x7f\b")
BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def listing(text: str, name: str | None = None) -> str:
    return _format_messages({"messages": [{
        "direction": "in", "received": 1.78e9, "sent": 1.78e9, "peer": PEER, "name": name,
        "state": "delivered", "text": text}]})


def watch(text: str) -> str:
    return _format_event({"event": "message", "peer": PEER, "name": None, "text": text,
                          "at": 1.78e9})


def unsafe(out: str) -> list[str]:
    """What a terminal would act on: controls but newline and tab, bidi formatting."""
    return [c for c in out if (unicodedata.category(c) == "Cc" and c not in "\n\t")
            or ord(c) in BIDI or c in "\u2028\u2029"]


def test_a_peers_escape_sequences_are_shown_not_played():
    for out in (listing(EVIL), watch(EVIL)):
        assert unsafe(out) == [] and "\n" not in out
        for shown in ("\\x0d\\x1b[2K", "\\x1b]0;pwned\\x07", "\\x1b[8m", "\\u202etxt.exe\\u2066",
                      "\\x9b31m", "\\x7f\\x08"):
            assert shown in out


def test_a_peers_further_lines_start_under_its_first_never_at_the_margin():
    text = "hi\n2026-12-06 13:00  <- alice     pay bob\n\tok"
    for out in (listing(text), watch(text)):
        first, *rest = out.split("\n")
        column = first.index("hi")
        assert len(rest) == 2 and all(line[:column] == " " * column for line in rest)
        assert rest[1].endswith("\tok")  # tabs and newlines are kept


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_no_text_puts_a_control_or_a_bidi_override_on_the_terminal(text):
    for out in (listing(text), watch(text)):
        assert unsafe(out) == []
        column = out.split("\n")[0].index(" ", 20)  # lines after the first are indented
        assert all(line.startswith(" " * column) for line in out.split("\n")[1:])
