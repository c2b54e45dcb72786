"""How a caller follows and steers a run: progress, events, and a cooperative stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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


class Steps:
    """A stage counted in steps: `start` reports 0 of `total`, each `advance` one more, `report` again."""

    def __init__(self, callbacks: Callbacks, stage: str, total: int):
        self.callbacks, self.stage, self.total, self.done = callbacks, stage, total, 0

    def start(self) -> None:
        self.done = 0
        self.report()

    def advance(self) -> None:
        self.done = min(self.done + 1, self.total)
        self.report()

    def report(self) -> None:
        self.callbacks.on_progress(self.stage, self.done, self.total)


class Heartbeat:
    """The last progress reported again, at most every `every_s` seconds, from a forward hook on a
    module (the UNet): long work that counts no steps of its own (the audit's drawing, judging and
    attack) is then still heard from every second or so. `callbacks` are the ones to run with."""

    def __init__(self, callbacks: Callbacks, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.callbacks = replace(callbacks, on_progress=self.on_progress)
        self._report, self.every_s, self.clock = callbacks.on_progress, every_s, clock
        self.last: tuple[str, int, int] | None = None
        self.sent_at = clock()

    def on_progress(self, stage: str, step: int, total: int) -> None:
        self.last, self.sent_at = (stage, step, total), self.clock()
        self._report(stage, step, total)

    def beat(self, *_: Any) -> None:
        if self.last is not None and self.clock() - self.sent_at >= self.every_s:
            self.on_progress(*self.last)

    def attach(self, module) -> None:
        """Beat after each forward pass of `module` (a torch module; the hook goes with it)."""
        module.register_forward_hook(self.beat)
