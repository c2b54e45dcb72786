"""Gradient difference (the paper's ablation): d = g_f + w g_r, no projection."""

from __future__ import annotations

from dataclasses import dataclass

from .rg import RGConfig
from .registry import register


@register
@dataclass(frozen=True)
class GradDiffConfig(RGConfig):
    method = "graddiff"


def coefficients(ff: float, rr: float, fr: float, retain_weight: float) -> tuple[float, float]:
    return 1.0, retain_weight
