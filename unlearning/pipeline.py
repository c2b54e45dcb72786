"""Load a Stable Diffusion pipeline (SD 1.x / 2.x family) from a local diffusers folder."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from .errors import NotAPipeline
from .folders import check_pipeline_folder

def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pipeline(path: str | Path, device: str | torch.device | None = None) -> StableDiffusionPipeline:
    """Load the pipeline in fp32 (on CUDA the work runs under bf16 autocast), eval mode, no safety checker."""
    path = check_pipeline_folder(path)
    device = torch.device(device) if device is not None else default_device()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            path, dtype=torch.float32, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError, KeyError) as error:
        raise NotAPipeline(path, [f"loadable weights ({error})"]) from None
    if device.type == "cuda":  # TF32 for fp32 matmuls and convolutions that autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    return pipe.to(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU (deterministic, comparable across runs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
