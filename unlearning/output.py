"""Write the result: a diffusers folder stock `from_pretrained` loads, the delta against the
parent, a LoRA erasure's adapter files (`lora/`, see `unlearning.lora`), and `manifest.json`
recording how it was made and every file's sha256.

The folder is assembled under a temporary name beside `out` and renamed at the end, so a
crash never leaves a half-written result under the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from .fingerprint import NOT_MODEL, file_sha256
from .lora import FOLDER as LORA
from .lora import file_stem
from .versions import library_versions

DELTA = "delta.safetensors"
MANIFEST = "manifest.json"


def staging_folder(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def copy_unchanged(base: Path, staging: Path) -> None:
    """Every component but the UNet's weights; Lethe's records of the base (and the adapter
    of a base that was itself a LoRA erasure: NOT_MODEL) stay behind."""
    for entry in base.iterdir():
        if entry.name in NOT_MODEL - {"lethe.json"} or entry.name == "unet":
            continue
        target = staging / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)


def changed_tensors(unet, original: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's tensors named in `original` (the parent's values) that now differ, on the CPU."""
    delta = {}
    for name, p in unet.named_parameters():
        if name not in original:
            continue
        value = p.detach().cpu()
        if not torch.equal(value, original[name]):
            delta[name] = value.contiguous()
    return delta


def file_records(folder: Path) -> list[dict]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return [
        {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in files
    ]


def write_result(base: Path, out: Path, unet, original, manifest: dict, evaluation_dir: Path | None,
                 adapter=None) -> dict:
    """Assemble the folder, then publish it under `out` in one rename. Returns the manifest.

    `original` holds the parent's values of the tensors the run could change; `adapter` (a
    `lora.Adapter`, already fused into `unet`) is written under `lora/` too."""
    staging = staging_folder(out)
    try:
        copy_unchanged(base, staging)
        unet.save_pretrained(staging / "unet", safe_serialization=True)
        delta = changed_tensors(unet, original)
        save_file(delta, staging / DELTA, metadata={"parent_unet": "unet/diffusion_pytorch_model.safetensors"})
        if evaluation_dir is not None:
            shutil.copytree(evaluation_dir, staging / "evaluation")
        manifest = {**manifest, "versions": library_versions(), "delta": {"path": DELTA, "tensors": len(delta)}}
        if adapter is not None:
            manifest["lora"] = adapter.write(staging / LORA, file_stem(manifest["concepts"]))
        manifest["files"] = file_records(staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            out.rmdir()  # checked empty before the run
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
