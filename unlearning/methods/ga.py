"""Gradient ascent on the forget set alone: d = g_f. No retain pass is computed."""

from __future__ import annotations

from dataclasses import dataclass

from .base import setting
from .gradient import ForgetGradient, GradientConfig
from .rg import _check_positive
from .registry import register


@register
@dataclass(frozen=True)
class GAConfig(GradientConfig):
    method = "ga"
    implementation = ForgetGradient

    forget_loss_ceiling: float | None = setting(
        "the hinge: no forget gradient once the forget loss exceeds this level (null: never)", 1.1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.forget_loss_ceiling is not None:
            _check_positive("forget_loss_ceiling", self.forget_loss_ceiling)
