"""Check that a folder is a Stable Diffusion pipeline (SD 1.x / 2.x family), without loading it.

Torch-free, so that callers can refuse a wrong folder before paying for the imports.
"""

from __future__ import annotations

import json
from pathlib import Path

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
