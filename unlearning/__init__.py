"""Lethe's algorithm library: erase concepts from Stable Diffusion pipelines.

    import unlearning
    result = unlearning.erase("path/to/sd", ["van gogh"], "out/")

Restricted gradient with diversified forget and retain sets (Ko et al., NeurIPS 2024),
and the usual baselines (graddiff, ga, esd) on the same loop. Importing this package
is cheap: torch loads with the first call that needs it.
"""

from __future__ import annotations

from .callbacks import Callbacks
from .errors import InvalidInput, LetheError, NotAPipeline, Stopped

__all__ = ["Callbacks", "EraseResult", "InvalidInput", "LetheError", "NotAPipeline", "Stopped", "erase", "restricted_gradient"]


def __getattr__(name: str):
    if name in ("erase", "EraseResult"):
        from . import api

        return getattr(api, name)
    if name == "restricted_gradient":
        from .methods.rg import restricted_gradient

        return restricted_gradient
    raise AttributeError(name)
