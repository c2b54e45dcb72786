"""Draw style x digit pairs with the stock `StableDiffusionPipeline` call (its defaults: the
folder's scheduler, 50 steps, guidance 7.5, 16x16 images) and judge both kinds."""

from __future__ import annotations

import numpy as np

from ..digits.sampling import draw, load_pipeline  # noqa: F401 (load_pipeline: for the check and benchmark)
from .judges import recognise
from .prompts import ISSUE_TEMPLATE, prompt

Pair = tuple[int, int]  # (digit, style index)


def draw_pairs(pipe, pairs: list[Pair], per_pair: int, seed: int, template: str = ISSUE_TEMPLATE,
               batch: int = 400) -> dict[Pair, np.ndarray]:
    """`per_pair` images of each (digit, style), drawn in batches of `batch` prompts, the
    n-th batch with seed `seed + n`."""
    prompts = [prompt(template, d, s) for d, s in pairs for _ in range(per_pair)]
    images = np.concatenate([draw(pipe, prompts[i:i + batch], seed + i // batch) for i in range(0, len(prompts), batch)])
    return {pair: images[i * per_pair:(i + 1) * per_pair] for i, pair in enumerate(pairs)}


def accuracies(images: dict[Pair, np.ndarray]) -> dict[Pair, dict[str, float]]:
    """For each pair, the share of its images judged as its digit and as its style."""
    found = {}
    for (digit, style), batch in images.items():
        found[(digit, style)] = {"digit": float(np.mean(recognise(batch, "digit") == digit)),
                                 "style": float(np.mean(recognise(batch, "style") == style))}
    return found


def mean_accuracy(accuracy: dict[Pair, dict[str, float]], kind: str, pairs=None) -> float:
    """The mean over `pairs` (all by default) of one kind's accuracy; NaN over no pair."""
    chosen = [accuracy[p][kind] for p in (accuracy if pairs is None else pairs)]
    return float(np.mean(chosen)) if chosen else float("nan")
