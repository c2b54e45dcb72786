"""Write the result: a diffusers folder stock `from_pretrained` loads, the delta against the
parent, a LoRA erasure's adapter files (`lora/`, see `unlearning.lora`), and `manifest.json`
recording how it was made and every file's sha256.

A base whose weights are variant files only (`*.fp16.safetensors`) loads only when asked for
that variant; its result's new UNet is plain fp32. So each unchanged component kept as a variant
also gets a plain fp32 copy of its weights: the folder loads as it is, with or without
`variant=`, in one dtype; the variant files stay as the base had them (shared by content).

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
from .folders import PREFERRED_VARIANT, SAFE_SUFFIX, SHARD, weight_files
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


def add_plain_weights(staging: Path) -> None:
    """A plain fp32 `<name>.safetensors` beside the variant files of every component without plain weights."""
    for component in sorted(p for p in staging.iterdir() if p.is_dir() and p.name not in NOT_MODEL):
        variants = weight_files(component)["safe"]
        if variants and None not in variants:
            variant = PREFERRED_VARIANT if PREFERRED_VARIANT in variants else sorted(variants)[0]
            write_plain_copy(component, variants[variant])


def write_plain_copy(component: Path, names: list[str]) -> None:
    """The tensors of the variant files `names` (shards too) in one plain file, floats upcast to fp32;
    the component's config then says fp32, which transformers otherwise loads it in (its default dtype
    is the config's): the text encoder's fp16 states would meet the UNet's fp32 weights."""
    from safetensors.torch import load_file

    tensors = {}
    for name in names:
        tensors.update(load_file(component / name))
    tensors = {k: t.float() if t.is_floating_point() else t for k, t in sorted(tensors.items())}
    stem = SHARD.sub("", names[0][: -len(SAFE_SUFFIX)]).split(".", 1)[0]  # model.fp16-00001-of-00002 -> model
    save_file(tensors, component / f"{stem}{SAFE_SUFFIX}", metadata={"format": "pt"})
    config_in_fp32(component / "config.json")


def config_in_fp32(path: Path) -> None:
    """Set the dtype a transformers config names (`dtype`, or `torch_dtype` before transformers 5) to float32."""
    config = json.loads(path.read_text()) if path.is_file() else None
    keys = [k for k in ("dtype", "torch_dtype") if isinstance(config, dict) and config.get(k) not in (None, "float32")]
    if keys:
        path.write_text(json.dumps(config | {k: "float32" for k in keys}, indent=2, sort_keys=True) + "\n")


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
        add_plain_weights(staging)
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
