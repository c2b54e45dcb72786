"""ESD-x (Gandikota et al., ICCV 2023): steer the conditioned prediction away from the concept.

Target, from a frozen copy e* of the original UNet: e*(x_t) - eta (e*(x_t, c) - e*(x_t)),
trained on the conditioned prediction e(x_t, c) with text input only. ESD-x trains the
cross-attention layers. Here x_t is the original model's own latent of a forget prompt,
noised to a random t (the released code samples x_t by running the sampler to t instead).

The frozen copy is only the trainable tensors' original values: every other tensor of the
UNet never changes, so e* is the UNet evaluated with those values put back in place.
The target is an affine combination of e*'s two predictions (weights 1 + eta and -eta sum
to 1), so it holds as written for v- and sample-prediction models too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anchor import original_weights
from .base import Method, MethodConfig, setting
from .rg import _check_positive
from .registry import register


class ErasedStableDiffusion(Method):
    def __init__(self, config, trainer):
        super().__init__(config, trainer)
        self.frozen = original_weights(trainer)

    def direction(self, batch, generator) -> dict:
        import torch.nn.functional as F

        trainer, data = self.trainer, self.trainer.data
        cond = data.forget_conditioning[batch]  # B rows
        uncond = data.unconditional.expand(len(cond))
        noisy, _, t, _ = trainer.noise.noised(data.forget_latents[batch], generator, trainer.device)
        frozen_cond = trainer.prediction(noisy, t, cond, weights=self.frozen).float()
        frozen_uncond = trainer.prediction(noisy, t, uncond, weights=self.frozen).float()
        goal = target(frozen_uncond, frozen_cond, self.config.negative_guidance)
        loss = F.mse_loss(trainer.prediction(noisy, t, cond).float(), goal)
        loss.backward()
        return {"forget_loss": loss.item()}

    def release(self) -> None:
        self.frozen = {}


@register
@dataclass(frozen=True)
class ESDConfig(MethodConfig):
    method = "esd"
    implementation = ErasedStableDiffusion

    steps: int = setting("optimizer steps (the released code's default)", 200)
    batch_size: int = setting("forget samples per step", 1)
    num_prompts: int = setting("forget prompts in the training set", 200)
    trainable: str = setting("which UNet parameters change (ESD-x: cross-attention)", "cross_attention")
    negative_guidance: float = setting("eta: how far past the unconditioned prediction to push", 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive("negative_guidance", self.negative_guidance)

    @property
    def frozen_passes(self) -> int:
        return 2  # e*(x_t) and e*(x_t, c)


def target(uncond, cond, negative_guidance: float):
    """e*(x_t) - eta (e*(x_t, c) - e*(x_t)), from the frozen model's two predictions."""
    return uncond - negative_guidance * (cond - uncond)
