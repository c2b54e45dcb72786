"""How long a job will take: its units of work per stage, times the seconds per unit that
the newest succeeded jobs measured (`Throughput` rows, written by workers/throughput.py).

Units of work, from the job's configuration: the method's defaults under the job's own values
(a base's `lethe.json` defaults are not seen here: the gateway does not open the base's files;
the rates measured on that base already include what they change, such as the batch sizes):
- preparing, in two parts: its set-up, one per job and audit level (`setup:quick`, `setup:off`...:
  loading the base, the audit's check that it draws the concept, the prompt sets), and `latents`:
  the latents the original model draws (the training pairs the steps reach, and the held-out
  sets) x sampler steps. A cold latent cache is assumed: a job whose latents are cached prepares
  faster than its estimate;
- unlearning: steps x batch_size, per method (`unlearning:rg`...: a step of rg or graddiff takes
  two gradients, one of ga or esd one);
- evaluating: the before and after sample grids (forget and retain, at most 4 prompts each)
  x sampler steps;
- auditing: per mode (`auditing:quick`, `auditing:full`; none when off): concepts x held-out
  references x sampler steps;
- writing and publishing: one per job.

A stage's rate is the median of its seconds per unit over the newest RECENT records of the same
base version on the worker kind that ran the newest of them; with none on that base, the newest
records of any base, each scaled by the ratio of UNet parameter counts. With no rate for one of
the job's stages (nothing recorded yet, or that audit mode never ran), there is no estimate (a
set-up measured at another audit level, or steps of another method, stand in for missing ones).
This module imports no torch: the gateway estimates at submission.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Throughput
from unlearning.audit import SETTINGS, DEFAULT_AUDIT
from unlearning.methods import make_config
from unlearning.methods.base import MethodConfig

RECENT = 5  # records per stage whose median is the rate
GRID_SAMPLES = 4  # unlearning.evaluate.Evaluation's num_samples
# The order a job goes through its stages (evaluating twice: before and after the steps).
ORDER = ("preparing", "evaluating", "unlearning", "evaluating", "auditing", "writing", "publishing")
PART_OF = {"setup": "preparing", "latents": "preparing"}  # the stage of a part measured apart
STAND_INS = ("setup", "unlearning")  # parts whose rate under another audit level or method will do


@dataclass(frozen=True)
class Work:
    """What the estimate needs to know of a job."""

    method: str
    hyperparameters: dict
    audit: str | None  # None: the library's default
    concepts: int = 1

    def config(self) -> MethodConfig:
        return make_config(self.method, self.hyperparameters)


def units(work: Work) -> dict[str, float]:
    """The job's units of work per stage (the keys of a `Throughput` row's `units`)."""
    c = work.config()
    pairs = min(c.steps * c.batch_size, c.num_prompts)  # unlearning.api.rows_used
    drawn = pairs * (2 if c.draws_retain_set else 1) + 2 * c.eval_prompts
    mode = work.audit or DEFAULT_AUDIT
    result = {
        f"setup:{mode}": 1,
        "latents": drawn * c.generation_steps,
        f"unlearning:{work.method}": c.steps * c.batch_size,
        "evaluating": 2 * 2 * min(GRID_SAMPLES, c.eval_prompts) * c.generation_steps,
        "writing": 1,
        "publishing": 1,
    }
    if mode != "off":
        result[f"auditing:{mode}"] = work.concepts * audit_references(mode, c.eval_prompts) * c.generation_steps
    return result


def audit_references(mode: str, eval_prompts: int) -> int:
    """The audit's held-out images per concept (unlearning.audit.run.references, without torch)."""
    count = SETTINGS[mode].references
    return max(4, min(count, count * eval_prompts // 8))


def rates(records: list[Throughput], unet_parameters: int | None) -> dict[str, float]:
    """Seconds per unit of each stage: the median over the newest RECENT records that measured it
    (`records` newest first), each scaled to `unet_parameters` when both counts are known."""
    by_stage: dict[str, list[float]] = {}
    for record in records:
        scale = 1.0
        if unet_parameters and record.unet_parameters:
            scale = unet_parameters / record.unet_parameters
        for stage, seconds in record.seconds.items():
            amount = record.units.get(stage)
            if amount and len(by_stage.setdefault(stage, [])) < RECENT:
                by_stage[stage].append(seconds / amount * scale)
    return {stage: statistics.median(values) for stage, values in by_stage.items() if values}


def plan(job_units: dict[str, float], stage_rates: dict[str, float]) -> dict[str, float] | None:
    """Seconds per stage (`ORDER`'s names); None when a part of the job has no rate. A set-up
    measured only at another audit level, or steps only of other methods, stand in for the job's."""
    stage_rates = dict(stage_rates)
    for key in [k for k in job_units if k.split(":")[0] in STAND_INS and k not in stage_rates]:
        others = [rate for k, rate in stage_rates.items() if k.split(":")[0] == key.split(":")[0]]
        if others:
            stage_rates[key] = statistics.median(others)
    if not set(job_units) <= set(stage_rates):
        return None
    stages: dict[str, float] = {}
    for key, amount in job_units.items():
        stage = PART_OF.get(key.split(":")[0], key.split(":")[0])
        stages[stage] = stages.get(stage, 0.0) + amount * stage_rates[key]
    return stages


def usable_records(session: Session, base_model: str, base_version: int) -> tuple[list[Throughput], bool]:
    """The newest records of this base version (True), else of any base (False), each on the
    worker kind of the newest one: that kind is the one most likely to run the next job."""
    for same_base in (True, False):
        query = select(Throughput).order_by(Throughput.created_at.desc(), Throughput.id.desc()).limit(20 * RECENT)
        if same_base:
            query = query.where(Throughput.base_model == base_model, Throughput.base_version == base_version)
        found = list(session.scalars(query))
        if found:
            return [r for r in found if r.worker_kind == found[0].worker_kind], same_base
    return [], False


def estimate(session: Session, base_model: str, base_version: int, unet_parameters: int | None,
             work: Work) -> dict[str, float] | None:
    """Seconds per stage of a job of `work` on this base version; None: nothing to go by."""
    records, _ = usable_records(session, base_model, base_version)
    return plan(units(work), rates(records, unet_parameters))


def unet_parameters(files: Iterable) -> int | None:
    """The UNet's parameter count from its weight files' sizes (fp32 4 bytes each, an fp16 variant
    2; plain files preferred; the small safetensors header is ignored). None: no UNet weights."""
    weights = [f for f in files if f.path.startswith("unet/") and f.path.endswith(".safetensors")]
    plain = [f for f in weights if ".fp16." not in f.path]
    if plain:
        return sum(f.size for f in plain) // 4
    return sum(f.size for f in weights) // 2 or None


def total(stages: dict[str, float] | None) -> float | None:
    return None if stages is None else sum(stages.values())
