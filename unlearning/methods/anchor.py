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

In the robust mode the learned conditioning that calls the concept back has no pair sentence: on
the concept's images it was fitted to, it is held to what the prompt it was learned from (the empty
one) draws, mean((e(z_t, c_learned) - e*(z_t, c_empty))^2) with z the forget latents (AdvUnlearn's
ESD target; eta as above), and the empty prompt itself to its own original prediction. The rows
share most positions with the empty prompt, and without that second term training them moved the
empty prompt's prediction, which guidance subtracts from every prompt: on the canvas model the
style of every prompt went (README, Benchmarks).

The same frozen prediction can hold the retain side (`retain_target` of rg and graddiff): the
pair's sentence keeps predicting what the original model predicts ("original", `kept_loss`), or
its guided prediction, with the empty prompt's, keeps the original's ("guided", `guided_kept_loss`).
The sampler steps with e(empty) + s (e(c) - e(empty)), s = 7.5 by default: on the canvas model the
erased version's sentence and empty prompt drift together, which the sampler cancels, while a
small change in their difference, which the denoising loss weighs no more than the rest, turned a
kept digit into another (README, Benchmarks).

e* is the UNet with its trainable tensors' original values, kept as ESD keeps them (`esd.py`).
No torch at import (the gateway imports the method modules).
"""

from __future__ import annotations

from typing import Any


def original_weights(trainer: Any) -> dict:
    """Copies of the trainable tensors as they are now: before any step, and before a resumed state
    is loaded (the method is built in the trainer's constructor)."""
    return {name: p.detach().clone() for name, p in trainer.named}


def anchor_loss(trainer: Any, original: dict, batch, generator, guidance: float = 0.0):
    """L_a on the batch's retain latents, the target from the original weights (no graph)."""
    data = trainer.data
    return _towards_original(trainer, original, data.retain_latents[batch], generator,
                             data.forget_conditioning[batch], data.retain_conditioning[batch], guidance)


def learned_rows_loss(trainer: Any, original: dict, batch, generator, rows, guidance: float = 0.0):
    """The robust mode's learned rows held, on the batch's forget latents, to the original's
    prediction for the empty prompt they were learned from (`adversarial.py`), plus the empty
    prompt held to that same prediction (two draws from `generator`, in that order)."""
    latents, empty = trainer.data.forget_latents[batch], trainer.data.unconditional.expand(len(batch))
    moved = _towards_original(trainer, original, latents, generator, rows, empty, guidance)
    return moved + _towards_original(trainer, original, latents, generator, empty, empty)


def kept_loss(trainer: Any, original: dict, batch, generator):
    """The retain loss with `retain_target: "original"`: the pair's sentence held to the original
    model's prediction on the same noisy retain latents, mean((e(z_t, c_retain) - e*(z_t, c_retain))^2).
    Zero with a zero gradient until the weights move, where the denoising loss (towards the drawn
    noise) pulls every step, in a direction that changes with the draw."""
    data = trainer.data
    retain = data.retain_conditioning[batch]
    return _towards_original(trainer, original, data.retain_latents[batch], generator, retain, retain)


def guided_kept_loss(trainer: Any, original: dict, batch, generator, scale: float):
    """The retain loss with `retain_target: "guided"`: on the same noisy retain latents, the pair's
    guided prediction, the one the sampler steps with at guidance scale s,
    g(c) = e(z_t, empty) + s (e(z_t, c) - e(z_t, empty)), held to the original's:
    mean((g(c_retain) - g*(c_retain))^2) / max(s, 1)^2. A change that the sentence's prediction and
    the empty prompt's share moves g as much as it moves each, and costs 1/s^2 of what it costs in
    `kept_loss`; a change in their difference moves g s times as much, and costs the same."""
    import torch.nn.functional as F

    data = trainer.data
    retain, empty = data.retain_conditioning[batch], data.unconditional.expand(len(batch))
    noisy, _, t, _ = trainer.noise.noised(data.retain_latents[batch], generator, trainer.device)
    top = max(scale, 1.0)

    def guided(weights=None):  # g(c_retain) / max(s, 1)
        cond = trainer.prediction(noisy, t, retain, weights).float()
        uncond = trainer.prediction(noisy, t, empty, weights).float()
        return uncond / top + (scale / top) * (cond - uncond)

    return F.mse_loss(guided(), guided(original))


def _towards_original(trainer: Any, original: dict, latents, generator, conditioning, stand_in, guidance: float = 0.0):
    """mean((e(z_t, conditioning) - goal)^2) on the noised latents, with
    goal = e*(z_t, stand_in) - guidance (e*(z_t, conditioning) - e*(z_t, stand_in))."""
    import torch.nn.functional as F

    noisy, _, t, _ = trainer.noise.noised(latents, generator, trainer.device)
    goal = trainer.prediction(noisy, t, stand_in, weights=original).float()
    if guidance:
        goal = goal - guidance * (trainer.prediction(noisy, t, conditioning, weights=original).float() - goal)
    return F.mse_loss(trainer.prediction(noisy, t, conditioning).float(), goal)
