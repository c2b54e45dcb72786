"""Gradient difference (the paper's ablation): d = g_f + w g_r, no projection."""

from __future__ import annotations

from dataclasses import dataclass

from .gradient import CombinedGradient
from .registry import register
from .rg import RGConfig


class GradientDifference(CombinedGradient):
    def coefficients(self, ff: float, rr: float, fr: float) -> tuple[float, float]:
        return 1.0, self.config.retain_weight


@register
@dataclass(frozen=True)
class GradDiffConfig(RGConfig):
    method = "graddiff"
    implementation = GradientDifference
