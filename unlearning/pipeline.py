"""Load a pipeline of any family Lethe trains (`unlearning.families`) from a local diffusers folder."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import NotAPipeline
from .folders import inspect_pipeline_folder


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pipeline(path: str | Path, device: str | torch.device | None = None, allow_pickle: bool = False):
    """Load the pipeline in fp32 (on CUDA the work runs under bf16 autocast), eval mode, no
    safety checker. Variant weights (fp16) are upcast; pickle weights only with `allow_pickle`."""
    folder = inspect_pipeline_folder(path, allow_pickle)
    device = torch.device(device) if device is not None else default_device()
    try:
        pipe = folder.family.load(folder.path, folder.variant, allow_pickle)
    except (OSError, ValueError, KeyError) as error:
        raise NotAPipeline(folder.path, [f"loadable weights ({error})"]) from None
    if device.type == "cuda":  # TF32 for fp32 matmuls and convolutions that autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    pipe.set_progress_bar_config(disable=True)
    for module in folder.family.modules(pipe):
        module.requires_grad_(False).eval()
    return pipe.to(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU (deterministic, comparable across runs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def import_libraries() -> None:
    """Import now what loading a pipeline imports lazily: diffusers, every family's pipeline class
    and the transformers models it uses (with torch, tens of seconds the first time in a process on
    a busy CPU), so that a caller can pay it ahead: `lethe worker`'s parent, once, before it
    forks a task child for each job."""
    import diffusers

    from . import api  # noqa: F401  (the loop, the audit, what erase imports)
    from .families import FAMILIES

    for family in FAMILIES:
        getattr(diffusers, family.pipeline_class)
