"""Erasure methods by id. Importing this package does not import torch.

Each method lives in its own module with its configuration dataclass and its implementation,
which the trainer runs without asking which method it is: `rg` (restricted gradient, the
default), `graddiff`, `ga`, `esd`. `gradient` holds the step the first three share.
"""

from . import esd, ga, graddiff, rg  # noqa: F401  (registers the methods)
from .registry import CONFIGS, make_config, validate

METHOD_IDS = tuple(sorted(CONFIGS))
DEFAULT_METHOD = "rg"

__all__ = ["CONFIGS", "DEFAULT_METHOD", "METHOD_IDS", "make_config", "validate"]
