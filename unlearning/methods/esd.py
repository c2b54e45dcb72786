"""ESD-x (Gandikota et al., ICCV 2023): steer the conditioned prediction away from the concept.

Target, from a frozen copy e* of the original UNet: e*(x_t) - eta (e*(x_t, c) - e*(x_t)),
trained on the conditioned prediction e(x_t, c) with text input only. ESD-x trains the
cross-attention layers. Here x_t is the original model's own latent of a forget prompt,
noised to a random t (the released code samples x_t by running the sampler to t instead).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, setting
from .rg import _check_positive
from .registry import register


@register
@dataclass(frozen=True)
class ESDConfig(MethodConfig):
    method = "esd"

    steps: int = setting("optimizer steps (the released code's default)", 200)
    batch_size: int = setting("forget samples per step", 1)
    num_prompts: int = setting("forget prompts in the training set", 200)
    trainable: str = setting("which UNet parameters change (ESD-x: cross-attention)", "cross_attention")
    negative_guidance: float = setting("eta: how far past the unconditioned prediction to push", 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive("negative_guidance", self.negative_guidance)


def target(uncond, cond, negative_guidance: float):
    """e*(x_t) - eta (e*(x_t, c) - e*(x_t)), from the frozen model's two predictions."""
    return uncond - negative_guidance * (cond - uncond)
