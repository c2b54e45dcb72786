"""Unlearning jobs: create, get, list, cancel, events (JSON or Server-Sent Events)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from service import jobs, webhooks
from service.api.deps import CallerDep, IdempotencyKeyDep, PartsDep, SessionDep
from service.api.present import delivery_public, event_public, job_public
from service.api.schemas import EventPublic, JobCreate, JobPublic, ListOf, WebhookDeliveryPublic
from service.api.event_stream import event_stream, resume_after
from service.problems import Problem
from service.api.submit import submit

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobIdParam = Annotated[str, PathParam(max_length=40)]
Status = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={200: {"model": JobPublic, "description": "The job an earlier request with this Idempotency-Key made."},
               409: {"description": "A request with this Idempotency-Key is still being processed."}},
)  # fmt: skip
def create_job(
    body: JobCreate,
    response: Response,
    session: SessionDep,
    parts: PartsDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKeyDep,
) -> JobPublic:
    job, created = submit(session, parts, caller, body, idempotency_key)
    response.status_code = 202 if created else 200
    return job_public(job)


@router.get("", response_model=ListOf[JobPublic])
def list_jobs(
    session: SessionDep,
    caller: CallerDep,
    after: Annotated[str | None, Query(max_length=40, description="The id of the last job of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Status | None = None,
) -> ListOf[JobPublic]:
    page, has_more = jobs.list_jobs(session, caller.tenant, after, limit, status)
    return ListOf[JobPublic](data=[job_public(j) for j in page], has_more=has_more)


@router.get("/{job_id}", response_model=JobPublic)
async def get_job(job_id: JobIdParam, parts: PartsDep, caller: CallerDep) -> JobPublic:
    job = await parts.job_reads.job(job_id, caller.tenant)  # on the loop: service/reads.py
    if job is None:
        raise _not_found(job_id)
    return job_public(job)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: JobIdParam, session: SessionDep, caller: CallerDep) -> JobPublic:
    """A queued job is cancelled at once; a running one becomes `cancelling`; a finished one is unchanged."""
    job = jobs.cancel(session, job_id, caller.tenant)
    if job is None:
        raise _not_found(job_id)
    return job_public(job)


@router.get(
    "/{job_id}/events",
    response_model=ListOf[EventPublic],
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                     "description": "The events; with `Accept: text/event-stream`, a live stream ending with the job."}},
)  # fmt: skip
def job_events(
    job_id: JobIdParam,
    request: Request,
    session: SessionDep,
    parts: PartsDep,
    caller: CallerDep,
    after: Annotated[int, Query(ge=0, le=2**62, description="Only events with a larger id.")] = 0,
    last_event_id: Annotated[str | None, Header(description="Stream only: resume after this event id.")] = None,
):
    _job(session, job_id, caller.tenant)
    if "text/event-stream" in request.headers.get("accept", ""):
        start = resume_after(last_event_id, after)
        stream = event_stream(parts.sessions, parts.stream_polls, job_id, start, parts.settings.sse_poll_s)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    events = jobs.list_events(session, job_id, after, limit=1001)
    return ListOf[EventPublic](data=[event_public(e) for e in events[:1000]], has_more=len(events) > 1000)


@router.get("/{job_id}/deliveries", response_model=ListOf[WebhookDeliveryPublic])
def job_deliveries(job_id: JobIdParam, session: SessionDep, caller: CallerDep) -> ListOf[WebhookDeliveryPublic]:
    """The job's webhook deliveries (one per subscribed event it reached), each with its attempts."""
    _job(session, job_id, caller.tenant)
    found = webhooks.list_deliveries(session, job_id)
    return ListOf[WebhookDeliveryPublic](data=[delivery_public(d, attempts) for d, attempts in found])


def _job(session, job_id: str, tenant: str):
    job = jobs.get_job(session, job_id, tenant)
    if job is None:
        raise _not_found(job_id)
    return job


def _not_found(job_id: str) -> Problem:
    return Problem(404, "no such job", [{"field": "job_id", "message": "no such job"}], "not_found")
