"""From a validated job body to a queued, published job (ARCHITECTURE.md, step 1).

Order matters: everything that can refuse the request runs before anything is written
(the body, then the limits of service/limits.py: the job's cost, the tenant's queued jobs);
then the job row and its first event commit together; only then is the message published.
A failed publish leaves the job queued for the reconciler to publish again.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from service import estimates, idempotency, jobs, limits, registry, webhooks
from service.api.schemas import JobCreate
from service.auth import Caller
from service.jobs import JobSpec
from service.models import Job
from service.problems import Problem, field_problem
from unlearning.errors import InvalidInput
from unlearning.methods import METHOD_IDS, validate

log = logging.getLogger(__name__)


def submit(session: Session, parts, caller: Caller, body: JobCreate, key: str | None) -> tuple[Job, bool]:
    """The job for this request and whether it was created now (False: an Idempotency-Key replay)."""
    spec = job_spec(session, caller.tenant, body)
    spec.webhook = webhooks.subscription(body.webhook, parts.settings)
    limits.check_job_cost(parts.settings, caller.tenant, spec.method, spec.hyperparameters, len(spec.concepts))
    if key is None:
        return _create_and_publish(session, parts, caller.tenant, spec, None, body.force), True
    digest = idempotency.request_hash(body)
    earlier = idempotency.reserve(session, caller.tenant, key, digest, parts.settings.idempotency_wait_s)
    if earlier is not None:
        return _replay(session, earlier, digest), False
    try:
        return _create_and_publish(session, parts, caller.tenant, spec, key, body.force), True
    except BaseException:
        idempotency.release(session, caller.tenant, key)
        raise


def job_spec(session: Session, tenant: str, body: JobCreate) -> JobSpec:
    """Check what the body refers to (base version, method and its settings) and build the spec."""
    ref = body.base_model
    base = registry.get_version(session, ref.name, ref.version, tenant)
    if base is None:
        known = registry.find_model(session, ref.name, tenant) is not None  # as this tenant sees it
        if known and ref.version is not None:
            raise field_problem("base_model.version", f"model {ref.name!r} has no version {ref.version}", code="unknown_version")
        raise field_problem("base_model.name", f"no model named {ref.name!r}", code="unknown_model")
    if body.method not in METHOD_IDS:
        raise field_problem("method", f"unknown method {body.method!r}; known: {', '.join(METHOD_IDS)}", code="unknown_method")
    _refuse_erased_again(base, body)
    hyperparameters = body.hyperparameters.model_dump(exclude_unset=True)
    try:
        validate(body.method, hyperparameters)
    except InvalidInput as error:
        raise field_problem(error.field, error.message) from None
    work = estimates.Work(body.method, hyperparameters, body.audit, len(body.concepts))
    stages = estimates.estimate(session, ref.name, base.version, estimates.unet_parameters(base.files), work)
    return JobSpec(
        base_model=ref.name, base_version=base.version, concepts=body.concepts, method=body.method,
        preserve=body.preserve, prompts=body.prompts.model_dump() if body.prompts else None,
        hyperparameters=hyperparameters, seed=body.seed, metadata=body.metadata, audit=body.audit,
        estimated_seconds=estimates.total(stages),
    )  # fmt: skip


def already_erased(concepts_erased: list[str], concepts: list[str]) -> list[str]:
    """The concepts asked for that the base has erased already (trimmed, case-insensitive)."""
    erased = {concept.strip().casefold() for concept in concepts_erased}
    return [concept for concept in concepts if concept.strip().casefold() in erased]


def _refuse_erased_again(base, body: JobCreate) -> None:
    again = already_erased(base.concepts_erased or [], body.concepts)
    if again and not body.force:
        raise Problem(409, f"concepts: version {base.version} has already erased {', '.join(map(repr, again))}; "
                           "set force: true to erase again", [{"field": "concepts", "message": f"already erased: {', '.join(again)}"}],
                      "already_erased")  # fmt: skip


def _create_and_publish(session, parts, tenant: str, spec: JobSpec, key: str | None, force: bool = False) -> Job:
    limits.check_queue(session, parts.settings, tenant)  # not for a replay: its job exists already
    job = jobs.create_job(session, tenant, spec, idempotency_key=key)
    if force:
        jobs.add_event(session, job.id, "message", "force: concepts the base has erased may be erased again", {"force": True})
    if not parts.publish(job.id):
        log.warning("job %s stays queued: the broker did not take its message; the reconciler will", job.id)
    return job


def _replay(session: Session, earlier, digest: str) -> Job:
    if earlier.body_hash != digest:
        raise field_problem("Idempotency-Key", "was already used with a different body", code="idempotency_mismatch")
    if earlier.job_id is None:
        raise Problem(409, "a request with this Idempotency-Key is still being processed",
                      [{"field": "Idempotency-Key", "message": "still being processed"}], "idempotency_in_flight")  # fmt: skip
    return jobs.get_job(session, earlier.job_id)
