"""Targets from the original model: the anchored forget target of the gradient methods
(`forget_target: "anchor"`), and the retain target that holds the pairs to the original.

Gradient ascent raises the denoising loss of the concept's images by any means; on the canvas
model the cheapest means is to change the rest of the prompt (a digit's sentences lose their
ink colour first; README, Benchmarks). The anchor gives the forget pass a place to go instead:
the concept's sentence is taught to predict, on its pair's image, what the original model
predicts for the pair's own sentence (the same sentence with the concept replaced),

    L_a = mean((e_theta(z_t, t, c_forget) - e*(z_t, t, c_retain))^2),  z = the retain latents,

and the forget pass descends on it: g_f = grad L_a, with no hinge (L_a falls as the model
forgets). The idea is Concept Ablation's (Kumari et al., ICCV 2023, model-based variant);
rg, graddiff and ga combine g_f with the retain gradient as they do the ascent's. With
`anchor_guidance` eta > 0 the target is e*(c_retain) - eta (e*(c_forget) - e*(c_retain)):
past the pair's prediction, away from the concept's (ESD's negative guidance, the pair's
sentence in place of the empty one); on the canvas model eta 1 erased digits further than 0.

In the robust mode the learned conditioning that calls the concept back takes the concept's
sentence's place in a second L_a on the same rows: whatever draws the concept learns to draw the pair.

The same frozen prediction can hold the retain side (`retain_target: "original"` of rg and
graddiff): the pair's sentence keeps predicting what the original model predicts (`kept_loss`).

e* is the UNet with its trainable tensors' original values, kept as ESD keeps them (`esd.py`).
No torch at import (the gateway imports the method modules).
"""

from __future__ import annotations

from typing import Any


def original_weights(trainer: Any) -> dict:
    """Copies of the trainable tensors as they are now: before any step, and before a resumed state
    is loaded (the method is built in the trainer's constructor)."""
    return {name: p.detach().clone() for name, p in trainer.named}


def anchor_loss(trainer: Any, original: dict, batch, generator, guidance: float = 0.0, conditioning=None):
    """L_a on the batch's retain latents, the target from the original weights (no graph). `conditioning`
    takes the place of the concept's sentences (the robust mode's learned rows, `adversarial.py`)."""
    if conditioning is None:
        conditioning = trainer.data.forget_conditioning[batch]
    return _towards_original(trainer, original, batch, generator, conditioning, guidance)


def kept_loss(trainer: Any, original: dict, batch, generator):
    """The retain loss with `retain_target: "original"`: the pair's sentence held to the original
    model's prediction on the same noisy retain latents, mean((e(z_t, c_retain) - e*(z_t, c_retain))^2).
    Zero with a zero gradient until the weights move, where the denoising loss (towards the drawn
    noise) pulls every step, in a direction that changes with the draw."""
    return _towards_original(trainer, original, batch, generator, trainer.data.retain_conditioning[batch])


def _towards_original(trainer: Any, original: dict, batch, generator, conditioning, guidance: float = 0.0):
    """mean((e(z_t, conditioning) - goal)^2) on the batch's noised retain latents, with
    goal = e*(z_t, c_retain) - guidance (e*(z_t, conditioning) - e*(z_t, c_retain))."""
    import torch.nn.functional as F

    data = trainer.data
    noisy, _, t, _ = trainer.noise.noised(data.retain_latents[batch], generator, trainer.device)
    goal = trainer.prediction(noisy, t, data.retain_conditioning[batch], weights=original).float()
    if guidance:
        goal = goal - guidance * (trainer.prediction(noisy, t, conditioning, weights=original).float() - goal)
    return F.mse_loss(trainer.prediction(noisy, t, conditioning).float(), goal)
