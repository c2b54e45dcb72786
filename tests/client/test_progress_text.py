"""The progress bar prints the server's words with control characters escaped."""

from __future__ import annotations

import io

from service.cli.progress import ProgressBar
from service.cli.text import shown


def test_event_messages_reach_the_terminal_with_their_control_characters_escaped():
    out = io.StringIO()  # not a terminal: one plain line per event
    bar = ProgressBar(out)
    bar.show({"type": "message", "level": "info", "message": "erasing \x1b[2Jcat\x07\nnext"})
    bar.show({"type": "progress", "data": {"stage": "unl\x1b[31mearning", "step": 1, "total_steps": 2}})
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert text.splitlines() == ["[info] erasing \\x1b[2Jcat\\x07\\nnext", "unl\\x1b[31mearning 1/2"]


def test_shown_leaves_printable_text_and_unicode_as_it_is():
    assert shown("Café 東京 seven") == "Café 東京 seven"
    assert shown("\x00\x7f\x9b") == "\\x00\\x7f\\x9b"
