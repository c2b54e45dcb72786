"""Check that a folder is a pipeline Lethe can train, without loading it.

Torch-free, so that callers can refuse a wrong folder before paying for the imports. The
folder's model_index.json names its pipeline class, which picks the family
(`unlearning.families`); the family says which components must be there.

Weights: safetensors files, with or without a variant (`unet/diffusion_pytorch_model.fp16.safetensors`).
Pickle files (.bin, .ckpt, .pt, .pth) run code when they are loaded: a component whose
weights are pickle only is refused, unless the caller allows pickle for a folder it trusts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput, NotAPipeline
from .families import BY_CLASS, Family, supported

SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
SHARD = re.compile(r"-\d+-of-\d+$")  # model-00001-of-00002, model.fp16-00001-of-00002
PREFERRED_VARIANT = "fp16"
ALLOW_PICKLE_HINT = "allow_pickle=True (CLI: --allow-pickle)"


@dataclass(frozen=True)
class PipelineFolder:
    """A checked folder: its family and the weights variant to load (None: the plain files)."""

    path: Path
    family: Family
    variant: str | None


def check_pipeline_folder(path: str | Path, allow_pickle: bool = False) -> Path:
    """Raise NotAPipeline naming every missing part, InvalidInput for a pipeline class or
    weights Lethe does not take; return the folder as a Path."""
    return inspect_pipeline_folder(path, allow_pickle).path


def inspect_pipeline_folder(path: str | Path, allow_pickle: bool = False) -> PipelineFolder:
    path = Path(path)
    family = pipeline_family(path, read_index(path))
    return PipelineFolder(path, family, weights_variant(path, family, allow_pickle))


def read_index(path: Path) -> dict:
    if not path.is_dir():
        raise NotAPipeline(path, ["the folder itself"])
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise NotAPipeline(path, ["model_index.json"])
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NotAPipeline(path, ["a readable model_index.json"]) from None
    if not isinstance(index, dict):
        raise NotAPipeline(path, ["a readable model_index.json"])
    return index


def pipeline_family(path: Path, index: dict) -> Family:
    """The family of the folder's pipeline class, whose components must all be there."""
    class_name = index.get("_class_name")
    if not isinstance(class_name, str) or not class_name:
        raise NotAPipeline(path, ["_class_name in model_index.json"])
    family = BY_CLASS.get(class_name)
    if family is None:
        raise InvalidInput("base", f"{path} holds a {class_name}, which Lethe cannot train; it takes {supported()}")
    missing = []
    for name, class_prefix in family.components.items():
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or entry[1] is None:
            missing.append(f"{name} in model_index.json")
        elif class_prefix and not str(entry[1]).startswith(class_prefix):
            missing.append(f"{name} of class {class_prefix} (found {entry[1]})")
        elif not (path / name).is_dir():
            missing.append(f"the {name}/ folder")
    if missing:
        raise NotAPipeline(path, missing)
    return family


def weight_files(folder: Path) -> dict[str, dict[str | None, list[str]]]:
    """{"safe"|"pickle": {variant or None: [file names]}} of one component folder."""
    found: dict[str, dict[str | None, list[str]]] = {"safe": {}, "pickle": {}}
    for file in sorted(folder.iterdir()):
        kind = "safe" if file.suffix == SAFE_SUFFIX else "pickle" if file.suffix in PICKLE_SUFFIXES else None
        if kind is None or not file.is_file():
            continue
        stem = SHARD.sub("", file.name[: -len(file.suffix)])
        variant = stem.split(".", 1)[1] if "." in stem else None
        found[kind].setdefault(variant, []).append(file.name)
    return found


def weights_variant(path: Path, family: Family, allow_pickle: bool, opt_in: str | None = ALLOW_PICKLE_HINT) -> str | None:
    """The variant to load: None when every component has plain weight files, else the one
    variant (fp16 first) that every component without them has. Refuses pickle-only components,
    naming `opt_in`, the caller's way to allow pickle (None: it has none)."""
    pickle_only, needs, missing = [], {}, []
    for name in family.models:
        files = weight_files(path / name)
        if not files["safe"] and not files["pickle"]:
            missing.append(f"weights in {name}/ ({SAFE_SUFFIX} files)")
        if files["pickle"] and not files["safe"] and not allow_pickle:
            pickle_only += [f"{name}/{f}" for group in files["pickle"].values() for f in group]
        usable = {**files["pickle"], **files["safe"]} if allow_pickle else files["safe"]
        if usable and None not in usable:
            needs[name] = set(usable)
    if missing:
        raise NotAPipeline(path, missing)
    if pickle_only:
        allow = f", or pass {opt_in} for a folder you trust" if opt_in else ""
        raise InvalidInput("base", f"{path} holds weights only as pickle files ({', '.join(pickle_only)}), which can run "
                                   f"code when loaded; convert them to safetensors{allow}")
    return common_variant(path, needs)


def common_variant(path: Path, needs: dict[str, set[str]]) -> str | None:
    if not needs:
        return None
    common = set.intersection(*needs.values())
    if PREFERRED_VARIANT in common:
        return PREFERRED_VARIANT
    if len(common) == 1:
        return common.pop()
    offered = "; ".join(f"{name}: {', '.join(sorted(v))}" for name, v in sorted(needs.items()))
    raise InvalidInput("base", f"{path} has components with only variant weight files and no one variant "
                               f"that all of them have ({offered})")
