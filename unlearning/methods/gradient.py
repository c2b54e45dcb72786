"""The step that rg, graddiff and ga share (METHOD.md section 1), and its exact dot products.

Forget pass: g_f = -grad L_f, or zero once L_f exceeds the ceiling (the hinge). Retain pass:
g_r = grad L_r. Each method gives the combination d = a g_f + b g_r from the three dot
products |g_f|^2, |g_r|^2 and g_f . g_r. Gradient ascent stops after the forget pass.

No torch at import (the gateway imports the method modules): the code here works through
tensor methods and imports torch only inside `gram`.
"""

from __future__ import annotations

from typing import ClassVar

from .base import Method

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


class ForgetGradient(Method):
    """Gradient ascent on the forget batch with the hinge: the whole of `ga`, the first half of the others."""

    def forget_pass(self, batch, generator) -> tuple[float, bool]:
        """Leave g_f (or nothing, under the hinge) in the buffer; return (L_f, hinged)."""
        data = self.trainer.data
        loss = self.trainer.denoising_loss(data.forget_latents[batch], data.forget_conditioning[batch], generator)
        value = loss.item()
        ceiling = self.config.forget_loss_ceiling
        hinged = ceiling is not None and value > ceiling
        if not hinged:
            (-loss).backward()  # buffer = g_f = -grad L_f
        return value, hinged  # returning drops `loss`: a hinged step's graph is freed here, unused

    def direction(self, batch, generator) -> dict:
        forget_loss, hinged = self.forget_pass(batch, generator)
        return {"forget_loss": forget_loss, "hinge": hinged}


class CombinedGradient(ForgetGradient):
    """d = a g_f + b g_r with (a, b) from `coefficients`; a hinged step (g_f = 0) takes d = w g_r."""

    gradient_rows: ClassVar[int] = 2
    uses_retain_set: ClassVar[bool] = True

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
        """Leave g_r = grad L_r in the buffer; return L_r."""
        data = self.trainer.data
        loss = self.trainer.denoising_loss(data.retain_latents[batch], data.retain_conditioning[batch], generator)
        loss.backward()
        return loss.item()
