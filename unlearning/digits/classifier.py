"""The judge: a digit classifier trained on the split's judge part, never on the generator's.

An RBF support-vector machine on the 64 ink levels, seeded and retrained in about a second
(so nothing binary is committed). `accuracy_by_digit` is what the checks and the benchmark
report: for images generated for digit d, the share the judge recognises as d.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from sklearn.svm import SVC

from .data import images_to_pixels, load_split


@lru_cache(maxsize=1)
def train_judge() -> SVC:
    split = load_split()
    return SVC(gamma=0.001, C=1.0).fit(split.judge_train.pixels, split.judge_train.labels)


def held_out_accuracy() -> float:
    """Accuracy on the judge's held-out part (real digits)."""
    split = load_split()
    return float(train_judge().score(split.judge_test.pixels, split.judge_test.labels))


def recognise(images: np.ndarray) -> np.ndarray:
    """Predicted digit for each generated image ((n, 8, 8, 3) in [0, 1])."""
    return train_judge().predict(images_to_pixels(images))


def share_recognised(images: np.ndarray, digit: int) -> float:
    """Share of `images` the judge recognises as `digit`."""
    return float(np.mean(recognise(images) == digit)) if len(images) else 0.0
