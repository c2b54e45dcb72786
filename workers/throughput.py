"""What a succeeded job measured, kept as one `Throughput` row for the estimates of later jobs
(service/estimates.py): each stage's (or part's) seconds (workers/stage_clock.py) and units of work."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from service import estimates
from service.models import Job, ModelVersion, Throughput


def worker_kind() -> str:
    """`cpu`, or the name of the GPU the library runs on (its default device)."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def job_work(job: Job) -> estimates.Work:
    return estimates.Work(job.method, job.hyperparameters, job.audit, len(job.concepts))


def measured_units(work: estimates.Work, latents_drawn: int | None, erasure_checked: bool = False) -> dict[str, float]:
    """The job's units of work, its latents counted as those it did draw (the rest came from the
    cache) when the library said how many (None: all of them). A run with erasure checks has no
    unlearning units: it may have stopped before its steps, and its checks drew images besides."""
    units = estimates.units(work)
    if latents_drawn is not None:
        units["latents"] = latents_drawn * work.config().generation_steps
    if erasure_checked:
        units = {stage: amount for stage, amount in units.items() if not stage.startswith("unlearning:")}
    return units


def record(session: Session, job: Job, base: ModelVersion, seconds: dict[str, float],
           latents_drawn: int | None, kind: str, erasure_checked: bool = False) -> Throughput:
    """Store what the job measured; stages without work (every latent cached) are left out."""
    units = measured_units(job_work(job), latents_drawn, erasure_checked)
    stage_seconds = {}
    for stage, amount in units.items():
        spent = seconds.get(stage.split(":")[0])
        if amount and spent is not None:
            stage_seconds[stage] = spent
    row = Throughput(
        created_at=time.time(), job_id=job.id, worker_kind=kind, base_model=job.base_model,
        base_version=job.base_version, unet_parameters=estimates.unet_parameters(base.files),
        seconds=stage_seconds, units={stage: units[stage] for stage in stage_seconds},
    )  # fmt: skip
    session.add(row)
    session.commit()
    return row
