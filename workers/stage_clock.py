"""The wall time of each stage of a running job, from its progress calls, and the time it has left.

A stage's time runs from its first progress call to the first call of another stage (evaluating
comes twice: its two spells add up). Preparing is timed in two parts, its set-up (`setup`) and,
once `mark("latents")` is called, the latents (service/estimates.py counts them apart). The time left is the current stage's (from its own rate so
far: elapsed x steps left / steps done in this spell; before its first step, the plan's share less the time
spent) plus the plan's seconds for the stages still to come (service/estimates.ORDER).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.estimates import ORDER

FIRST_PART = {"preparing": "setup"}  # the name a stage's time is kept under until `mark`


class StageClock:
    def __init__(self, plan: dict[str, float] | None, now: Callable[[], float] = time.monotonic):
        self.plan = plan  # seconds per stage (service.estimates.estimate); None: no estimate
        self.now = now
        self.seconds: dict[str, float] = {}
        self.stage: str | None = None
        self.entered = 0.0
        self.part, self.part_began = "", 0.0  # what the time now counts as (the stage, or a part of it)
        self.position = -1  # where in ORDER the job is
        self.step, self.total, self.first_step = 0, 0, 0

    def progress(self, stage: str, step: int, total: int) -> None:
        if stage != self.stage:
            self.stop()
            self.stage, self.entered, self.first_step = stage, self.now(), step  # (a resumed run starts midway)
            self.part, self.part_began = FIRST_PART.get(stage, stage), self.entered
            later = [i for i, name in enumerate(ORDER) if name == stage and i > self.position]
            self.position = later[0] if later else self.position
        self.step, self.total = step, total

    def mark(self, part: str) -> None:
        """From now on, the current stage's time counts as `part`."""
        if self.stage is not None:
            self._add_spell()
            self.part = part

    def stop(self) -> None:
        """End the current stage's spell (the job is over, or another stage begins)."""
        if self.stage is not None:
            self._add_spell()
        self.stage = None

    def _add_spell(self) -> None:
        now = self.now()
        self.seconds[self.part] = self.seconds.get(self.part, 0.0) + now - self.part_began
        self.part_began = now

    def eta(self) -> float | None:
        """Seconds left; None without a plan or a stage."""
        if self.plan is None or self.stage is None:
            return None
        spent = self.now() - self.entered
        if self.first_step < self.step < self.total:
            left = spent * (self.total - self.step) / (self.step - self.first_step)
        elif self.total and self.step >= self.total:
            left = 0.0
        else:
            left = max(0.0, self._planned(self.position) - spent)
        return left + sum(self._planned(i) for i in range(self.position + 1, len(ORDER)))

    def _planned(self, position: int) -> float:
        if position < 0:
            return 0.0
        stage = ORDER[position]
        return self.plan.get(stage, 0.0) / ORDER.count(stage)
