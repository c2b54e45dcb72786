"""Progress and events from the library's callbacks into the job's row and event log.

A database write per training step would slow a fast loop, so progress (the row, plus
a `progress` event) is written at most every `min_interval_s` seconds, plus always on a
change of stage and on the last step. Every call, written or not, goes to the job's `StageClock`
(each stage's time, and the time left that a progress event carries as `eta_seconds`). Reporting is best effort: a database hiccup is logged and never fails the job
(the lease and the final state are what must not be lost, and they are retried elsewhere).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from workers.db_retry import TRANSIENT, retry_db
from workers.stage_clock import StageClock

log = logging.getLogger(__name__)


class Reporter:
    def __init__(self, set_progress: Callable[[str, int, int, float | None], None],
                 add_event: Callable[[str, str, dict], None], min_interval_s: float = 1.0,
                 clock: StageClock | None = None):
        self._set_progress = set_progress  # (stage, step, total, seconds left or None)
        self.clock = clock or StageClock(None)
        self.latents_drawn: int | None = None  # as the library said (None: it did not)
        self.erasure_checked = False  # the library said it runs erasure checks (stop_when_erased)
        self._add_event = add_event
        self._min_interval_s = min_interval_s
        self._stage: str | None = None
        self._written_at = float("-inf")

    def on_progress(self, stage: str, step: int, total: int) -> None:
        self.clock.progress(stage, step, total)
        new_stage = stage != self._stage
        due = time.monotonic() - self._written_at >= self._min_interval_s
        if not (new_stage or due or step >= total):
            return
        self._stage = stage
        eta = self.clock.eta()
        self._write(lambda: self._set_progress(stage, step, total, eta), "progress")
        self._written_at = time.monotonic()

    def on_event(self, type: str, message: str, data: dict | None = None) -> None:
        if isinstance((data or {}).get("latents_drawn"), int):  # the library starts on the latents
            self.latents_drawn = data["latents_drawn"]
            self.clock.mark("latents")
        if "erasure_check_every" in (data or {}):
            self.erasure_checked = True
        self._write(lambda: retry_db(lambda: self._add_event(type, message, data or {}),
                                     deadline_s=10.0, what="event"), "event")

    @staticmethod
    def _write(write: Callable[[], None], what: str) -> None:
        try:
            write()
        except TRANSIENT as error:
            log.warning("dropped a %s update: database unreachable (%s)", what, type(error).__name__)
