"""Kernel Inception Distance, computed on the judge's input space instead of Inception's.

The features are the 64 ink levels of each 8x8 image scaled to [0, 1] (the space the judge
classifies in; an SVM has no hidden layer to borrow). KID is the unbiased squared MMD with
the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3 of Binkowski et al. (2018).
"""

from __future__ import annotations

import numpy as np

from .data import INK_MAX, images_to_pixels


def features(images: np.ndarray) -> np.ndarray:
    return images_to_pixels(images) / INK_MAX


def kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two feature sets (n, d) and (m, d)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((a @ b.T / d + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid_of_images(images: np.ndarray, reference: np.ndarray) -> float:
    return kid(features(images), features(reference))
