"""How a caller follows and steers a run: progress, events, and a cooperative stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _nothing(*args: Any) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class Callbacks:
    on_progress: Callable[[str, int, int], None] = _nothing  # (stage, step, total)
    on_event: Callable[[str, str, dict], None] = _nothing  # (type, message, data)
    should_stop: Callable[[], bool] = _never  # asked once per step; True ends the run with Stopped
    on_state_saved: Callable[[Path], None] = _nothing  # (state file) after each resumable state is written
