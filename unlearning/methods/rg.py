"""Restricted gradient (Ko et al., NeurIPS 2024), METHOD.md section 1.

g_f = -grad L_f (zero once L_f exceeds the ceiling), g_r = grad L_r, one global vector each.
Under conflict (g_f . g_r < 0) each is projected onto the normal plane of the other,
and d = proj(g_f) + w proj(g_r); otherwise d = g_f + w g_r. Then d . g_f >= 0 and
d . g_r >= 0: to first order neither objective gets worse.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import InvalidInput, setting
from .gradient import RETAIN_TARGETS, CombinedGradient, GradientConfig, gram
from .registry import register


class RestrictedGradient(CombinedGradient):
    def coefficients(self, ff: float, rr: float, fr: float) -> tuple[float, float]:
        return coefficients(ff, rr, fr, self.config.retain_weight)


@register
@dataclass(frozen=True)
class RGConfig(GradientConfig):
    method = "rg"
    implementation = RestrictedGradient

    retain_weight: float = setting("weight w of the retain direction in d = g_f + w g_r (the paper's alpha)", 1.6)
    retain_target: str = setting(
        "the retain loss: 'noise' (the paper's: the denoising loss of the pairs' images), 'original' (the "
        "pairs' sentences held to the original model's prediction on the same noisy images) or 'guided' "
        "(their guided prediction, with the empty prompt's at guidance_scale, held to the original's: what "
        "the sampler steps with); the last two keep a copy of the trainable tensors", "noise"
    )
    forget_loss_ceiling: float | None = setting(
        "the hinge: no forget gradient once the forget loss exceeds this level (null: never)", 1.1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive("retain_weight", self.retain_weight)
        if self.retain_target not in RETAIN_TARGETS:
            raise InvalidInput("hyperparameters.retain_target", f"must be one of {', '.join(RETAIN_TARGETS)}, got {self.retain_target!r}")
        if self.forget_loss_ceiling is not None:
            _check_positive("forget_loss_ceiling", self.forget_loss_ceiling)

    @property
    def frozen_passes(self) -> int:
        return super().frozen_passes + {"noise": 0, "original": 1, "guided": 2}[self.retain_target]

    @property
    def trained_passes(self) -> int:
        return super().trained_passes + (self.retain_target == "guided")  # the empty prompt beside the pair


def _check_positive(name: str, value: float) -> None:
    if not 0 < value <= 1e6:
        raise InvalidInput(f"hyperparameters.{name}", f"must be above 0 and at most 1e6, got {value!r}")


def coefficients(ff: float, rr: float, fr: float, retain_weight: float) -> tuple[float, float]:
    """(a, b) with d = a g_f + b g_r, from ff = |g_f|^2, rr = |g_r|^2, fr = g_f . g_r.

    Expanding both projections: d = (1 - w fr/ff) g_f + (w - fr/rr) g_r under conflict.
    A projection onto a zero vector is no projection (fr < 0 already implies both are nonzero,
    the guards only keep rounding from dividing by zero).
    """
    if fr >= 0:
        return 1.0, retain_weight
    a = 1.0 - retain_weight * fr / ff if ff > 0 else 1.0
    b = retain_weight - fr / rr if rr > 0 else retain_weight
    return a, b


def restricted_gradient(forget_grad, retain_grad, retain_weight: float):
    """The update direction d for flat 1-D tensors; `forget_grad` is already g_f = -grad L_f.

    The dot products are accumulated in fp64 whatever the tensors' dtype; d has their dtype.
    """
    if forget_grad.shape != retain_grad.shape or forget_grad.dim() != 1:
        raise ValueError(f"expected two flat tensors of one shape, got {tuple(forget_grad.shape)} and {tuple(retain_grad.shape)}")
    (ff, fr), (_, rr) = gram([forget_grad, retain_grad])
    a, b = coefficients(ff, rr, fr, retain_weight)
    return forget_grad * a + retain_grad * b
