"""The step that rg, graddiff and ga share (METHOD.md section 1), and its exact dot products.

Forget pass: g_f = -grad L_f, or zero once L_f exceeds the ceiling (the hinge); with
`forget_target: "anchor"`, g_f = grad L_a instead, descent towards the original model's
prediction for the paired retain sentence (`anchor.py`), never hinged. Retain pass:
g_r = grad L_r. Each method gives the combination d = a g_f + b g_r from the three dot
products |g_f|^2, |g_r|^2 and g_f . g_r. Gradient ascent stops after the forget pass.
In the robust mode (`adversarial_steps`, `adversarial.py`) the forget pass also takes the batch's
latents under a learned adversarial conditioning; each half is hinged on its own loss (with the
anchor: the learned rows, and the empty prompt, held to the original's prediction for the empty
prompt, never hinged).

No torch at import (the gateway imports the method modules): the code here works through
tensor methods and imports torch only inside `gram`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .adversarial import Adversary
from .anchor import anchor_loss, guided_kept_loss, kept_loss, original_weights
from .base import InvalidInput, Method, MethodConfig, setting

FORGET_TARGETS = ("ascent", "anchor")
RETAIN_TARGETS = ("noise", "original", "guided")
GRAM_CHUNK = 1 << 22  # elements per fp64 block: 2 rows of it are 64 MiB, whatever N is


def gram(vectors) -> list[list[float]]:
    """The Gram matrix of equal-length 1-D tensors, exact to fp64 rounding.

    A product of two fp32 values is exact in fp64 and the sums accumulate in fp64, one
    chunk at a time through one reused (k, chunk) fp64 block, so no fp64 copy of the whole
    vectors is ever made (on SD-1.5 that would be 6.9 GB per vector). TF32 does not apply
    to fp64 matrix products.
    """
    import torch

    size, k = vectors[0].numel(), len(vectors)
    total = torch.zeros(k, k, dtype=torch.float64, device=vectors[0].device)
    block = torch.empty(k, min(size, GRAM_CHUNK), dtype=torch.float64, device=vectors[0].device)
    for start in range(0, size, GRAM_CHUNK):
        width = min(GRAM_CHUNK, size - start)
        for row, vector in zip(block, vectors):
            row[:width].copy_(vector[start:start + width])
        total += block[:, :width] @ block[:, :width].T
    return total.tolist()


@dataclass(frozen=True)
class GradientConfig(MethodConfig):
    """The settings rg, graddiff and ga share beyond the common ones: the forget target and the robust mode."""

    forget_target: str = setting(
        "the forget pass: 'ascent' (the paper's: gradient ascent on the concept's images, hinged) or 'anchor' "
        "(descent towards the original model's prediction for the paired retain sentence, on its image: the "
        "concept's sentences learn to draw their pair's; no hinge)", "ascent"
    )
    anchor_guidance: float = setting(
        "with the anchor: how far past the pair's prediction the target goes, away from the concept's, "
        "e*(c_pair) - eta (e*(c_concept) - e*(c_pair)) (0: the pair's prediction itself)", 0.0
    )

    adversarial_steps: int | None = setting(
        "robust mode: Adam steps of each search for a soft prompt that calls the concept back, whose "
        "conditioning the forget batch then also trains against (0 or null: off)", 0
    )
    # 25, not 10: on the digits model, searching every 10 steps left RG's erasure partial (UA 0.28 and
    # 0.92 on two seeds against 1.00 at 25; benchmarks/audit_table.py).
    adversarial_every: int = setting("robust mode: training steps between two searches", 25)

    BOUNDS = {**MethodConfig.BOUNDS, "adversarial_steps": (0, 10_000), "adversarial_every": (1, 100_000),
              "anchor_guidance": (0.0, 100.0)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.forget_target not in FORGET_TARGETS:
            raise InvalidInput("hyperparameters.forget_target", f"must be one of {', '.join(FORGET_TARGETS)}, got {self.forget_target!r}")

    @property
    def draws_retain_set(self) -> bool:
        return super().draws_retain_set or self.forget_target == "anchor"  # the anchor trains on the retain images

    @property
    def frozen_passes(self) -> int:
        if self.forget_target != "anchor":
            return 0
        per_row = 2 if self.anchor_guidance else 1  # e*(c_retain), and e*(c_forget) for eta
        # the robust mode: the learned rows' target (as per_row, the learned rows in c_forget's place) and the empty prompt's
        return per_row + (per_row + 1 if self.adversarial_steps else 0)

    @property
    def adversarial_passes(self) -> int:
        return 2 if self.forget_target == "anchor" else 1  # the anchor holds the empty prompt beside the rows


class ForgetGradient(Method):
    """The forget pass (ascent with the hinge, or the anchor): the whole of `ga`, the first half of the others."""

    def __init__(self, config, trainer):
        super().__init__(config, trainer)
        self.adversary = Adversary(config, trainer) if config.adversarial_steps else None
        self.original = original_weights(trainer) if self.needs_original(config) else None

    @staticmethod
    def needs_original(config) -> bool:
        return config.forget_target == "anchor"

    def forget_pass(self, batch, generator) -> dict:
        """Leave g_f (or nothing, under the hinge) in the buffer; return the losses and whether it is hinged.
        In the robust mode g_f = -grad of the mean of the unhinged halves' losses."""
        if self.config.forget_target == "anchor":
            return self.anchor_pass(batch, generator)
        data = self.trainer.data
        record: dict = {}
        losses = {"forget_loss": self.trainer.denoising_loss(data.forget_latents[batch], data.forget_conditioning[batch], generator)}
        if self.adversary is not None:
            losses["adversarial_loss"] = self.adversary.loss(batch, record)
        record.update({name: loss.item() for name, loss in losses.items()})
        ceiling = self.config.forget_loss_ceiling
        kept = [loss for name, loss in losses.items() if ceiling is None or record[name] <= ceiling]
        if kept:
            (-sum(kept) / len(kept)).backward()  # buffer = g_f = -grad L_f
        record["hinge"] = not kept
        return record  # returning drops the losses: a hinged half's graph is freed here, unused

    def anchor_pass(self, batch, generator) -> dict:
        """Leave g_f = grad L_a in the buffer (`anchor.py`); never hinged. In the robust mode
        g_f = grad of the mean of L_a and `learned_rows_loss` (the learned rows and the empty prompt
        held to the empty prompt's original prediction)."""
        record: dict = {}
        guidance = self.config.anchor_guidance
        losses = {"forget_loss": anchor_loss(self.trainer, self.original, batch, generator, guidance)}
        if self.adversary is not None:
            losses["adversarial_loss"] = self.adversary.loss(batch, record, self.original, guidance)
        (sum(losses.values()) / len(losses)).backward()
        record.update({name: loss.item() for name, loss in losses.items()})
        record["hinge"] = False
        return record

    def direction(self, batch, generator) -> dict:
        return self.forget_pass(batch, generator)

    def release(self) -> None:
        self.original = None

    def state_dict(self) -> dict:
        return self.adversary.state_dict() if self.adversary is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.adversary is not None:
            self.adversary.load_state_dict(state)


class CombinedGradient(ForgetGradient):
    """d = a g_f + b g_r with (a, b) from `coefficients`; a hinged step (g_f = 0) takes d = w g_r."""

    gradient_rows: ClassVar[int] = 2
    uses_retain_set: ClassVar[bool] = True

    @staticmethod
    def needs_original(config) -> bool:
        return ForgetGradient.needs_original(config) or config.retain_target in ("original", "guided")

    def coefficients(self, ff: float, rr: float, fr: float) -> tuple[float, float]:
        raise NotImplementedError

    def direction(self, batch, generator) -> dict:
        record = super().direction(batch, generator)
        grads = self.trainer.grads
        if not record["hinge"]:
            grads.stash.copy_(grads.buffer)
            grads.zero()
        record["retain_loss"] = self.retain_pass(batch, generator)
        if record["hinge"]:  # g_f = 0: no projection
            grads.buffer.mul_(self.config.retain_weight)
            return record
        ff, rr, fr = grads.gram()
        a, b = self.coefficients(ff, rr, fr)
        grads.buffer.mul_(b).add_(grads.stash, alpha=a)  # the buffer now holds d
        record["conflict"] = fr < 0
        return record

    def retain_pass(self, batch, generator) -> float:
        """Leave g_r = grad L_r in the buffer; return L_r (the denoising loss, or with
        `retain_target` "original" or "guided" the distance to the original model's prediction,
        conditional or guided)."""
        data = self.trainer.data
        if self.config.retain_target == "original":
            loss = kept_loss(self.trainer, self.original, batch, generator)
        elif self.config.retain_target == "guided":
            loss = guided_kept_loss(self.trainer, self.original, batch, generator, self.config.guidance_scale)
        else:
            loss = self.trainer.denoising_loss(data.retain_latents[batch], data.retain_conditioning[batch], generator)
        loss.backward()
        return loss.item()
