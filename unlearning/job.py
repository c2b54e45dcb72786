"""What `erase` was asked, checked before anything heavy is imported, loaded or written."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import methods
from .audit import DEFAULT_AUDIT, check_audit_mode
from .errors import InvalidInput
from .folders import inspect_pipeline_folder
from .prompts import check_concepts, model_vocabulary, read_model_settings


def check_out_folder(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput("out", f"{out} already exists and is not an empty folder")
    return out


@dataclass
class Job:
    """Everything `erase` was asked, checked before anything is loaded or written."""

    base: Path
    out: Path
    concepts: list[str]
    preserve: list[str]
    prompts: dict | None
    config: methods.base.MethodConfig
    seed: int
    model_settings: dict
    audit: str = DEFAULT_AUDIT  # "quick", "full" or "off" (unlearning.audit); not part of the run's key
    family: str = ""  # the base's pipeline family ("sd", "sdxl": unlearning.families), from its folder

    def run_key(self, fingerprint: str) -> str:
        """Identifies the run, so a saved state is never resumed by a different one. The base is
        known by its content (`fingerprint`), not by its folder: a state saved on one machine
        resumes on another, whose copy of the base lies elsewhere."""
        text = json.dumps([fingerprint, self.concepts, self.preserve, self.prompts, self.config.to_dict(), self.seed], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def prepare_job(base, concepts, out, method, preserve, prompts, hyperparameters, seed, allow_pickle: bool = False,
                audit: str = DEFAULT_AUDIT) -> Job:
    folder = inspect_pipeline_folder(base, allow_pickle)
    audit = check_audit_mode(audit)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInput("seed", f"must be an integer from 0 to {2**32 - 1}, got {seed!r}")
    out = check_out_folder(out)
    model_settings = read_model_settings(folder.path)
    concepts = check_concepts(list(concepts))
    config = methods.make_config(method, _with_model_defaults(method, model_settings, concepts, hyperparameters))
    return Job(folder.path, out, concepts, list(preserve or []), prompts, config, seed,
               model_settings, audit, folder.family.name)


def _with_model_defaults(method: str, model_settings: dict, concepts: list[str], hyperparameters: dict | None) -> dict:
    """The model's own defaults (lethe.json) that this method knows, under the caller's values."""
    if hyperparameters is not None and not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters", "must be an object")
    known = set(methods.CONFIGS[method].__dataclass_fields__) if method in methods.CONFIGS else set()
    defaults = {k: v for k, v in model_defaults(model_settings, concepts, method).items() if k in known}
    return {**defaults, **(hyperparameters or {})}


# lethe.json's default hyperparameters, each laid over the ones before it (model_defaults)
LAYERS = ("hyperparameters", "hyperparameters_by_kind", "hyperparameters_for_several", "hyperparameters_by_method")


def model_defaults(model_settings: dict, concepts: list[str], method: str) -> dict:
    """lethe.json's `hyperparameters`, with `hyperparameters_by_kind[kind]` laid over them when
    every concept is a class of that kind, `hyperparameters_for_several[kind]` over those when the
    job erases more than one such class, and `hyperparameters_by_method[method]` over all: a model
    whose kinds of class erase best with different settings (a style and a digit on the canvas
    model) carries one set per kind, one for several at once where one concept's settings do not
    serve three (three styles), and a method that does worse with one of them (ESD with the
    digit's whitening) carries its own."""
    tables = {name: _object(model_settings.get(name, {}), name) for name in LAYERS}
    kind = None
    if tables["hyperparameters_by_kind"] or tables["hyperparameters_for_several"]:
        kind = model_vocabulary(model_settings).kind_of(concepts)
    several = len(set(concepts)) > 1
    layers = [tables["hyperparameters"],
              _entry(tables, "hyperparameters_by_kind", kind),
              _entry(tables, "hyperparameters_for_several", kind if several else None),
              _entry(tables, "hyperparameters_by_method", method)]
    return {key: value for layer in layers for key, value in layer.items()}


def _entry(tables: dict, name: str, key: str | None) -> dict:
    return _object(tables[name].get(key, {}), f"{name}.{key}")


def _object(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput("base", f"lethe.json {name} must be an object, got {type(value).__name__}")
    return value


def manifest_of(job: Job, lineage: dict | None) -> dict:
    lineage = dict(lineage or {})
    return {
        "name": lineage.get("name"),
        "version": lineage.get("version"),
        "parent": lineage.get("parent"),
        "job_id": lineage.get("job_id"),
        "concepts_erased": lineage.get("concepts_erased", job.concepts),
        "concepts": job.concepts,
        "preserve": job.preserve,
        "family": job.family,
        "method": job.config.method,
        "config": job.config.to_dict(),
        "seed": job.seed,
        "audit": job.audit,
    }
