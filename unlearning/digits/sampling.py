"""Draw digits with the stock `StableDiffusionPipeline` call (its defaults: the folder's
scheduler, 50 steps, guidance 7.5, 8x8 images) and judge them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from .classifier import share_recognised
from .data import CLASSES
from .prompts import TEMPLATES, prompt

ISSUE_TEMPLATE = TEMPLATES[0]  # "a handwritten digit {concept}"


def load_pipeline(folder: str | Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe: StableDiffusionPipeline, prompts: list[str], seed: int) -> np.ndarray:
    """(len(prompts), 8, 8, 3) images in [0, 1], with the pipeline's default settings."""
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        return pipe(prompts, generator=generator, output_type="np").images


def draw_digits(pipe, digits, per_digit: int, seed: int, template: str = ISSUE_TEMPLATE) -> dict[int, np.ndarray]:
    """`per_digit` images for each digit, all drawn in one batch (one seed)."""
    prompts = [prompt(template, d) for d in digits for _ in range(per_digit)]
    images = draw(pipe, prompts, seed)
    return {d: images[i * per_digit:(i + 1) * per_digit] for i, d in enumerate(digits)}


def accuracy_by_digit(images: dict[int, np.ndarray]) -> dict[int, float]:
    return {d: share_recognised(batch, d) for d, batch in images.items()}


def accuracy_table(accuracy: dict[int, float]) -> str:
    rows = ["| digit | recognised |", "|---|---|"]
    rows += [f"| {CLASSES[d]} | {a:.2f} |" for d, a in accuracy.items()]
    rows.append(f"| mean | {np.mean(list(accuracy.values())):.3f} |")
    return "\n".join(rows)
