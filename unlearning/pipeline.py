"""Load a Stable Diffusion pipeline (SD 1.x / 2.x family) from a local diffusers folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from .errors import NotAPipeline

REQUIRED = {
    "unet": "UNet2DConditionModel",
    "vae": "AutoencoderKL",
    "text_encoder": "CLIPTextModel",
    "tokenizer": "CLIPTokenizer",
    "scheduler": None,  # any diffusers scheduler
}


def check_pipeline_folder(path: str | Path) -> Path:
    """Raise NotAPipeline naming every missing part; return the folder as a Path."""
    path = Path(path)
    if not path.is_dir():
        raise NotAPipeline(path, ["the folder itself"])
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise NotAPipeline(path, ["model_index.json"])
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NotAPipeline(path, ["a readable model_index.json"]) from None
    missing = []
    for name, class_name in REQUIRED.items():
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None:
            missing.append(f"{name} in model_index.json")
        elif class_name and not str(entry[1]).startswith(class_name):
            missing.append(f"{name} of class {class_name} (found {entry[1]})")
        elif not (path / name).is_dir():
            missing.append(f"the {name}/ folder")
    if missing:
        raise NotAPipeline(path, missing)
    return path


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
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False).eval()
    return pipe.to(device)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on CPU (deterministic, comparable across runs)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
