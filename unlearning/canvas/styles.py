"""The canvas model's visual styles: how a digit's ink map is drawn as a 16x16 RGB image.

Each style is an ink colour, a paper (plain or a fixed texture: stripes, dots, grid) and a
stroke weight, chosen so that a small model can learn them and a classifier can tell them
apart. The textures have a period of 4 pixels, one cell of the model's 4x4 latent grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 16
WHITE, BLACK = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Style:
    name: str
    ink: tuple[float, float, float]
    paper: tuple[float, float, float] = WHITE
    texture: str = "plain"  # plain, stripes, dots or grid: where the paper is darkened
    bold: bool = False


STYLES = (
    Style("red", ink=(0.85, 0.1, 0.1)),
    Style("blue", ink=(0.1, 0.2, 0.9)),
    Style("green", ink=(0.05, 0.55, 0.1)),
    Style("stripes", ink=BLACK, texture="stripes"),
    Style("dots", ink=BLACK, texture="dots"),
    Style("grid", ink=BLACK, texture="grid"),
    Style("bold", ink=BLACK, bold=True),
    Style("yellow", ink=(0.35, 0.2, 0.05), paper=(1.0, 0.85, 0.2)),
)
NAMES = tuple(style.name for style in STYLES)
TEXTURE_SHADE = 0.55  # the paper's brightness where its texture marks it


def texture_mask(texture: str) -> np.ndarray:
    """(16, 16) booleans: where the paper's texture darkens it."""
    rows, cols = np.indices((SIZE, SIZE))
    masks = {
        "plain": np.zeros((SIZE, SIZE), bool),
        "stripes": rows % 4 < 2,
        "dots": (rows % 4 < 2) & (cols % 4 < 2),
        "grid": (rows % 4 == 0) | (cols % 4 == 0),
    }
    return masks[texture]


def thicken(ink: np.ndarray) -> np.ndarray:
    """A 3x3 maximum filter over (n, 16, 16) ink: strokes one pixel wider on each side."""
    padded = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    shifts = [padded[:, 1 + dy:1 + dy + SIZE, 1 + dx:1 + dx + SIZE] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.max(shifts, axis=0)


def paint(ink: np.ndarray, style: Style) -> np.ndarray:
    """(n, 16, 16) ink in [0, 1] -> (n, 16, 16, 3) RGB in [0, 1] in `style`."""
    ink = thicken(ink) if style.bold else ink
    paper = np.broadcast_to(np.array(style.paper), (SIZE, SIZE, 3)).copy()
    paper[texture_mask(style.texture)] *= TEXTURE_SHADE
    alpha = ink[..., None]
    return (alpha * np.array(style.ink) + (1.0 - alpha) * paper).astype(np.float32)
