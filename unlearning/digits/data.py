"""The fixed, seeded split of scikit-learn's digits, and the pixel <-> image conversions.

The generator trains on one part; the classifier (the judge) trains and is tested on the
other part, which the generator never sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLIT_SEED = 0
GENERATOR_SHARE = 0.55  # of all 1,797 digits; the rest is the judge's
JUDGE_TEST_SHARE = 0.45  # of the judge's part
INK_MAX = 16.0  # load_digits pixels are integers 0 (paper) .. 16 (ink)


@dataclass(frozen=True)
class Part:
    pixels: np.ndarray  # (n, 64) float, 0..16
    labels: np.ndarray  # (n,) int, 0..9


@dataclass(frozen=True)
class DigitSplit:
    generator: Part
    judge_train: Part
    judge_test: Part


def load_split() -> DigitSplit:
    """The same three disjoint, class-stratified parts on every call."""
    digits = load_digits()
    x, y = digits.data.astype(np.float64), digits.target.astype(np.int64)
    x_gen, x_judge, y_gen, y_judge = train_test_split(
        x, y, train_size=GENERATOR_SHARE, stratify=y, random_state=SPLIT_SEED
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x_judge, y_judge, test_size=JUDGE_TEST_SHARE, stratify=y_judge, random_state=SPLIT_SEED
    )
    return DigitSplit(Part(x_gen, y_gen), Part(x_train, y_train), Part(x_test, y_test))


def pixels_to_images(pixels: np.ndarray) -> np.ndarray:
    """(n, 64) ink levels -> (n, 3, 8, 8) RGB in [-1, 1], dark ink on white paper."""
    gray = 1.0 - 2.0 * (pixels.reshape(-1, 1, 8, 8) / INK_MAX)
    return np.repeat(gray, 3, axis=1).astype(np.float32)


def images_to_pixels(images: np.ndarray) -> np.ndarray:
    """(n, 8, 8, 3) or (n, 8, 8) images in [0, 1] (the pipeline's numpy output) -> (n, 64) ink levels."""
    images = np.asarray(images, dtype=np.float64)
    gray = images.mean(axis=-1) if images.ndim == 4 else images
    if gray.shape[1:] != (8, 8):
        raise ValueError(f"expected 8x8 images, got {gray.shape[1:]}")
    return ((1.0 - gray) * INK_MAX).reshape(len(gray), 64)
