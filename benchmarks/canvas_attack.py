"""The soft-prompt attack on a canvas version, judged by the protocol's judges (`canvas_table.py --attack`).

The attack is the audit's (`unlearning.audit.attack`): learned vectors in place of the first
tokens of the empty prompt, fitted on the version's UNet to denoise the original model's images
of the erased class (4 in each style of a digit, 3 of each digit in a style), then drawn
unguided (as the audit draws them). The share of those images that the class's judge reads as
the erased class is the attack's success: near 1 on the original, near 0 for a version whose
weights no longer hold the class. Two strengths: the audit's quick settings (what the robust
mode searches with) and its full ones (twice the vectors, eight times the steps).
"""

from __future__ import annotations

import numpy as np
import torch

from unlearning.audit import SETTINGS
from unlearning.audit.attack import soft_prompt
from unlearning.canvas.judges import recognise
from unlearning.canvas.prompts import ISSUE_TEMPLATE, prompt
from unlearning.canvas.protocol import class_of
from unlearning.canvas.styles import NAMES as STYLES
from unlearning.digits.data import CLASSES as DIGITS
from unlearning.latents import encode_prompts
from unlearning.noise import TrainingNoise

IMAGES = 32  # drawn with each learned prompt


def targets(original, concept: str, seed: int) -> torch.Tensor:
    """The original model's latents of the class, in every style (a digit) or of every digit (a style)."""
    kind, index = class_of(concept)
    pairs = [(index, s) for s in range(len(STYLES)) for _ in range(4)] if kind == "digit" else \
        [(d, index) for d in range(len(DIGITS)) for _ in range(3)]
    prompts = [prompt(ISSUE_TEMPLATE, d, s) for d, s in pairs]
    with torch.no_grad():
        return original(prompts, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images


def attack_success(pipe, concept: str, aimed: torch.Tensor, seed: int, mode: str) -> float:
    """The share of the learned prompt's images judged as the erased class (`mode`: the audit's settings)."""
    settings = SETTINGS[mode]
    pipe.unet.requires_grad_(False)
    learned, _ = soft_prompt(pipe.unet, TrainingNoise(pipe.scheduler.config), encode_prompts(pipe, [""]), aimed,
                             steps=settings.attack_steps, tokens=settings.attack_tokens,
                             learning_rate=settings.attack_learning_rate, batch_size=settings.attack_batch, seed=seed)
    with torch.no_grad():
        images = pipe(prompt_embeds=learned.encoder_hidden_states.expand(IMAGES, -1, -1), guidance_scale=1.0,
                      generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
    kind, index = class_of(concept)
    return float(np.mean(recognise(images, kind) == index))


def attacks(pipe, original, erased: list[str], seed: int) -> dict:
    """The attack's success at both strengths on a version that erased one class (nothing for several)."""
    if len(erased) != 1:
        return {}
    aimed = targets(original, erased[0], seed)
    return {f"attack_{mode}": attack_success(pipe, erased[0], aimed, seed, mode) for mode in ("quick", "full")}

