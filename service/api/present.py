"""Database rows as the public objects of API.md.

A job's error and its events are written by workers, whose messages may quote the server's
folders (`/data/cache/versions/...`, a library's `No such file: '/...'`): every absolute path
in them is shown to the caller as `<path>`.
"""

from __future__ import annotations

import re
from typing import Any

from service.api.schemas import EventPublic, FilePublic, JobPublic, VersionPublic, WebhookDeliveryPublic
from service.models import Job, JobEvent, ModelVersion, WebhookAttempt, WebhookDelivery
from service.registry import version_visibility


# A `/` that starts a word (not `a/b`, `3/10`, `./x`) and what follows up to a space, quote or bracket.
SERVER_PATH = re.compile(r"(?<![\w.~-])/[^\s'\"`()\[\]{}<>,;]+")
HIDDEN_PATH = "<path>"


def without_paths(text: str) -> str:
    """`text` with every absolute path in it replaced by `<path>`."""
    return SERVER_PATH.sub(HIDDEN_PATH, text)


def _error_public(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return error
    return error | {"message": without_paths(error["message"])}


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def job_public(job: Job) -> JobPublic:
    progress = None
    if job.progress_stage is not None:
        progress = {"stage": job.progress_stage, "step": job.progress_step or 0, "total_steps": job.progress_total or 0}
    return JobPublic(
        id=job.id, status=job.status, created_at=int(job.created_at), started_at=_seconds(job.started_at),
        finished_at=_seconds(job.finished_at), attempt=job.attempt,
        base_model={"name": job.base_model, "version": job.base_version}, concepts=job.concepts, method=job.method,
        preserve=job.preserve, prompts=job.prompts, hyperparameters=job.hyperparameters, seed=job.seed,
        progress=progress, error=_error_public(job.error), result=job.result, metadata=job.meta,
        webhook=job.webhook, audit=job.audit, estimated_seconds=job.estimated_seconds,
        estimated_finish_at=_estimated_finish(job),
    )  # fmt: skip


def _estimated_finish(job: Job) -> int | None:
    if job.estimated_seconds is None or job.started_at is None or job.status not in ("running", "cancelling"):
        return None
    return int(job.started_at + job.estimated_seconds)


def version_public(version: ModelVersion) -> VersionPublic:
    return VersionPublic(
        name=version.model.name, version=version.version, parent=version.parent, status=version.status,
        job_id=version.job_id, concepts_erased=version.concepts_erased, method=version.method,
        family=version.family, trainable=version.trainable, adapter=version.adapter,
        created_at=int(version.created_at), evaluation=version.evaluation, visibility=version_visibility(version),
        files=[FilePublic(path=f.path, size=f.size, sha256=f.sha256) for f in version.files],
    )  # fmt: skip


def event_public(event: JobEvent) -> EventPublic:
    data = event.data
    if isinstance(data, dict) and "error" in data:  # a job's final event repeats its error
        data = data | {"error": _error_public(data["error"])}
    return EventPublic(
        id=event.id, created_at=int(event.created_at), level=event.level, type=event.type,
        message=without_paths(event.message), data=data,
    )  # fmt: skip


def delivery_public(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=delivery.id, event=delivery.event, url=delivery.url, status=delivery.status,
        created_at=int(delivery.created_at),
        next_attempt_at=int(delivery.next_attempt_at) if delivery.status == "pending" else None,
        attempts=[{"at": a.started_at, "duration_s": a.duration_s, "status_code": a.status_code, "error": a.error}
                  for a in attempts],
    )  # fmt: skip
