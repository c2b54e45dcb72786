"""Pipeline families by the diffusers class that a folder's model_index.json names.

`sd` (StableDiffusionPipeline: SD 1.x and 2.x) and `sdxl` (StableDiffusionXLPipeline).
A new family is one new module with a `Family` subclass, listed here. Importing this
package does not import torch.
"""

from __future__ import annotations

from .base import Conditioning, Family, image_size
from .sd import StableDiffusion
from .sdxl import StableDiffusionXL

FAMILIES: tuple[Family, ...] = (StableDiffusion(), StableDiffusionXL())
BY_CLASS = {family.pipeline_class: family for family in FAMILIES}

__all__ = ["BY_CLASS", "FAMILIES", "Conditioning", "Family", "family_of", "image_size", "supported"]


def family_of(pipe) -> Family:
    """The family of a loaded pipeline."""
    return BY_CLASS[type(pipe).__name__]


def supported() -> str:
    """The supported pipeline classes, for messages."""
    return "; ".join(f"{f.pipeline_class} ({f.description})" for f in FAMILIES)
