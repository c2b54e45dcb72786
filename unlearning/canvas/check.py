"""Does the canvas model follow its prompts? Every style x digit pair, drawn with the stock
pipeline call, judged for its digit and its style (targets: each mean >= 0.80)."""

from __future__ import annotations

from itertools import product

import numpy as np
import torch

from ..digits.data import CLASSES as DIGITS
from .data import to_model_space
from .judges import held_out_accuracy, held_out_renderings, recognise
from .prompts import TEMPLATES, TEST_TEMPLATES
from .sampling import accuracies, draw_pairs, load_pipeline, mean_accuracy
from .styles import NAMES as STYLES

MEAN_TARGET = 0.80
ALL_PAIRS = list(product(range(len(DIGITS)), range(len(STYLES))))


def table(accuracy: dict) -> str:
    """Rows styles, columns digits: digit accuracy / style accuracy."""
    lines = ["| style | " + " | ".join(DIGITS) + " | digit | style |", "|---" * (len(DIGITS) + 3) + "|"]
    for s, name in enumerate(STYLES):
        cells = [f"{accuracy[(d, s)]['digit']:.1f}/{accuracy[(d, s)]['style']:.1f}" for d in range(len(DIGITS))]
        mine = [(d, s) for d in range(len(DIGITS))]
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {mean_accuracy(accuracy, 'digit', mine):.2f} | {mean_accuracy(accuracy, 'style', mine):.2f} |")
    return "\n".join(lines)


@torch.no_grad()
def round_trip_accuracy(vae, per_style: int = 200) -> dict[str, float]:
    """Style accuracy of the judge's held-out renderings once encoded and decoded by `vae`: what
    the autoencoder lets the model draw at best, style by style."""
    drawn = held_out_renderings()
    found = {}
    for s, name in enumerate(STYLES):
        images = drawn.images[drawn.styles == s][:per_style]
        latents = vae.encode(torch.from_numpy(to_model_space(images))).latent_dist.mean
        decoded = (vae.decode(latents).sample.permute(0, 2, 3, 1).numpy() + 1.0) / 2.0
        found[name] = float(np.mean(recognise(decoded.clip(0.0, 1.0), "style") == s))
    return found


def check(model: str, per_pair: int, seed: int, all_templates: bool = False) -> bool:
    print(f"judges' accuracy on the held-out renderings: digit {held_out_accuracy('digit'):.4f}, "
          f"style {held_out_accuracy('style'):.4f}")
    pipe = load_pipeline(model)
    ceiling = round_trip_accuracy(pipe.vae)
    print("style accuracy of those renderings after the model's autoencoder (encode, decode): "
          + ", ".join(f"{name} {value:.2f}" for name, value in ceiling.items()))
    passed = True
    for template in (TEMPLATES + TEST_TEMPLATES) if all_templates else TEMPLATES[:1]:
        accuracy = accuracies(draw_pairs(pipe, ALL_PAIRS, per_pair, seed, template))
        digit, style = mean_accuracy(accuracy, "digit"), mean_accuracy(accuracy, "style")
        print(f"\nprompt {template!r}, {per_pair} images per pair, seed {seed} (cells: digit/style accuracy)\n")
        print(table(accuracy))
        print(f"\nmean over the {len(ALL_PAIRS)} pairs: digit {digit:.3f}, style {style:.3f}")
        if template == TEMPLATES[0]:
            passed = min(digit, style) >= MEAN_TARGET
    print(f"\ntargets (digit and style accuracy >= {MEAN_TARGET} on {TEMPLATES[0]!r}): {'met' if passed else 'NOT met'}")
    return passed
