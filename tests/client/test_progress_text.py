"""The progress bar prints the server's words with control characters escaped."""

from __future__ import annotations

import io

from service.cli.client import _estimate_of
from service.cli.progress import ProgressBar, duration
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


def test_the_progress_line_shows_the_time_left_and_the_job_its_estimate():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.show({"type": "progress", "data": {"stage": "preparing", "step": 0, "total_steps": 3}})
    bar.show({"type": "progress", "data": {"stage": "unlearning", "step": 5, "total_steps": 100, "eta_seconds": 65.2}})
    assert out.getvalue().splitlines() == ["preparing 0/3", "unlearning 5/100  ETA 1 min 05 s"]
    assert [duration(s) for s in (4.6, 600, 7440)] == ["5 s", "10 min 00 s", "2 h 04 min"]
    assert _estimate_of({"estimated_seconds": 95.0, "estimated_finish_at": None}) == "about 1 min 35 s once started"
    assert _estimate_of({"estimated_seconds": None}).startswith("no estimate yet")
