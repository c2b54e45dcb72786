"""The canvas renderings: the digits model's split, each digit drawn in every style.

The generator sees the generator part's digits; the judges train and are tested on the
judge parts' digits, which the generator never sees (`unlearning.digits.data.load_split`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..digits.data import INK_MAX, Part
from .styles import SIZE, STYLES, paint


@dataclass(frozen=True)
class Renderings:
    images: np.ndarray  # (n, 16, 16, 3) RGB in [0, 1]
    digits: np.ndarray  # (n,) 0..9
    styles: np.ndarray  # (n,) index into STYLES


def ink_16(pixels: np.ndarray) -> np.ndarray:
    """(n, 64) ink levels 0..16 -> (n, 16, 16) ink in [0, 1]: each pixel doubled, then a
    [1, 2, 1] blur along both axes to round the blocky strokes."""
    ink = np.kron(pixels.reshape(-1, 8, 8) / INK_MAX, np.ones((2, 2)))
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)), mode="edge")
    ink = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) / 4
    ink = (ink[:, :, :-2] + 2 * ink[:, :, 1:-1] + ink[:, :, 2:]) / 4
    assert ink.shape[1:] == (SIZE, SIZE)
    return ink


def render(part: Part) -> Renderings:
    """Every digit of `part` in every style, style-major."""
    ink = ink_16(part.pixels)
    images = np.concatenate([paint(ink, style) for style in STYLES])
    styles = np.repeat(np.arange(len(STYLES)), len(ink))
    return Renderings(images, np.tile(part.labels, len(STYLES)), styles)


def to_model_space(images: np.ndarray) -> np.ndarray:
    """(n, 16, 16, 3) in [0, 1] -> (n, 3, 16, 16) in [-1, 1], the VAE's input."""
    return (images.transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)
