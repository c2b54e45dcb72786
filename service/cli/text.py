"""Server text on a terminal: every control character written as an escape (`\\x1b`, `\\n`), as
`repr` writes it, so that a job's concept or message cannot move the cursor or recolour the screen."""

from __future__ import annotations

import re

CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(value) -> str:
    return CONTROL_CHARACTER.sub(lambda found: repr(found.group())[1:-1], str(value))
