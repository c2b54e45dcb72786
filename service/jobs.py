"""The job store: every change of a job row, used by the gateway and by the workers.

The database, not the broker, is the source of truth. Each function is one transaction and
commits it, except `mark_succeeded`, a part of the registry's publishing transaction. State
machine:

    queued -> running -> succeeded | failed | cancelled
    queued -> cancelled                       (cancel before it started)
    running -> cancelling -> cancelled        (cooperative cancel: never overwritten by a finish)
    running -> queued                         (stale lease: the reconciler, attempt left)
    running -> queued                         (its worker shuts down: `release`)

`succeeded`, `failed` and `cancelled` never change again. Every transaction that ends a job
also queues its webhook delivery, if it subscribed to that end (`_job_ended`, service/webhooks.py).

A message on the queue is a wake-up call, not an order: the worker that takes one claims the
best queued job by the fair order of `claim_next` (one message per queued job keeps the two
counts equal; a message that finds no job is dropped).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, text, update
from sqlalchemy.orm import Session, aliased

from service import idempotency, webhooks
from service.models import Job, JobEvent

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (RUNNING, CANCELLING)  # a worker holds the lease
STATUSES = (QUEUED, RUNNING, CANCELLING, SUCCEEDED, FAILED, CANCELLED)
CLAIM_LOCK = 0x6C65746865  # PostgreSQL advisory lock taken by every claim_next ("lethe")
CLAIM_TRIES = 3


@dataclass
class JobSpec:
    """What a caller asked for, validated."""

    base_model: str
    base_version: int
    concepts: list[str]
    method: str
    preserve: list[str] = field(default_factory=list)
    prompts: dict[str, list[str]] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    webhook: dict[str, Any] | None = None  # {"url": ..., "events": [...]}, checked by service.webhooks
    audit: str | None = None  # quick, full or off; None: the library's default
    estimated_seconds: float | None = None  # service/estimates.py; None: nothing to go by


_last_micros = 0
_id_lock = threading.Lock()


def new_job_id() -> str:
    """Time-ordered ids (microseconds, strictly increasing within a process, then random), so
    listing by id is listing by creation even for jobs made in the same millisecond."""
    global _last_micros
    with _id_lock:
        _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
        micros = _last_micros
    return f"job_{micros:014x}{secrets.token_hex(4)}"


def create_job(session: Session, tenant: str, spec: JobSpec, idempotency_key: str | None = None) -> Job:
    """Insert a queued job and its first event (and link its reserved Idempotency-Key); commit."""
    now = time.time()
    job = Job(
        id=new_job_id(), tenant=tenant, status=QUEUED, attempt=0, created_at=now, enqueued_at=now,
        base_model=spec.base_model, base_version=spec.base_version, concepts=spec.concepts,
        method=spec.method, preserve=spec.preserve, prompts=spec.prompts,
        hyperparameters=spec.hyperparameters, seed=spec.seed, meta=spec.metadata, webhook=spec.webhook,
        audit=spec.audit, estimated_seconds=spec.estimated_seconds,
    )  # fmt: skip
    session.add(job)
    session.flush()
    _event(session, job.id, "message", "job queued", {"status": QUEUED})
    if idempotency_key is not None:
        idempotency.link(session, tenant, idempotency_key, job.id)
    session.commit()
    return job


def get_job(session: Session, job_id: str, tenant: str | None = None) -> Job | None:
    """The job, or None if it does not exist or belongs to another tenant (when one is given)."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or (tenant is not None and job.tenant != tenant):
        return None
    return job


def list_jobs(session: Session, tenant: str, after: str | None, limit: int, status: str | None) -> tuple[list[Job], bool]:
    """A page of the tenant's jobs, newest first, starting after the job `after`; and has_more."""
    query = select(Job).where(Job.tenant == tenant).order_by(Job.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Job.id < after)
    if status is not None:
        query = query.where(Job.status == status)
    jobs = list(session.scalars(query))
    return jobs[:limit], len(jobs) > limit


def claim(session: Session, job_id: str, worker: str) -> Job | None:
    """Move `queued -> running` under `worker`'s lease in ONE atomic UPDATE.

    None: the job is not queued (a duplicate message, or cancelled): drop the message.
    """
    now = time.time()
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED)
        .values(status=RUNNING, worker=worker, heartbeat_at=now, started_at=now, attempt=Job.attempt + 1)
    ).rowcount
    if claimed != 1:
        session.rollback()
        return None
    job = session.get(Job, job_id, populate_existing=True)
    _event(session, job_id, "message", f"attempt {job.attempt} started on {worker}", {"status": RUNNING})
    session.commit()
    return job


def claim_next(session: Session, worker: str, max_running: int = 0) -> Job | None:
    """Claim the best queued job for `worker` (`queued -> running` under its lease), in ONE
    atomic UPDATE; None when no queued job may start.

    The fair order: first the jobs of the tenant with the fewest running jobs, then of the
    tenant whose last job started longest ago (so that with one worker the tenants take turns),
    then the oldest job. A job put back in the queue keeps its place: the order is by creation,
    not by when its message was sent. With `max_running`, a tenant with that many running jobs
    has none claimed. Claims are one at a time (SQLite writes are; on PostgreSQL an advisory
    lock held to the commit), so the order and the cap hold however many workers claim at once.
    """
    for _ in range(CLAIM_TRIES):
        _one_claim_at_a_time(session)
        now = time.time()
        job_id = session.execute(
            update(Job)
            .where(Job.id == _best_queued(max_running), Job.status == QUEUED)
            .values(status=RUNNING, worker=worker, heartbeat_at=now, started_at=now, attempt=Job.attempt + 1)
            .returning(Job.id)
        ).scalar_one_or_none()
        if job_id is not None:
            job = session.get(Job, job_id, populate_existing=True)
            _event(session, job_id, "message", f"attempt {job.attempt} started on {worker}", {"status": RUNNING})
            session.commit()
            return job
        session.rollback()  # nothing queued, or a cancel took the chosen job meanwhile: look again
    return None


def _best_queued(max_running: int):
    """The id of the first queued job in the fair order (a scalar subquery; NULL when none may start)."""
    seen, queued_tenants, queued = aliased(Job), aliased(Job), aliased(Job)
    tenants = (
        select(
            seen.tenant.label("tenant"),
            func.sum(case((seen.status.in_(ACTIVE), 1), else_=0)).label("running"),
            func.coalesce(func.max(seen.started_at), 0.0).label("last_start"),
        )
        .where(seen.tenant.in_(select(queued_tenants.tenant).where(queued_tenants.status == QUEUED)))
        .group_by(seen.tenant)
        .subquery()
    )
    best = (
        select(queued.id)
        .join(tenants, tenants.c.tenant == queued.tenant)
        .where(queued.status == QUEUED)
        .order_by(tenants.c.running, tenants.c.last_start, queued.created_at, queued.id)
        .limit(1)
    )
    if max_running:
        best = best.where(tenants.c.running < max_running)
    return best.scalar_subquery()


def _one_claim_at_a_time(session: Session) -> None:
    """PostgreSQL: wait for the claim lock, held until this transaction ends. (SQLite needs none:
    its UPDATE takes the database's one write lock before it reads.)"""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})


def heartbeat(session: Session, job_id: str, worker: str) -> str | None:
    """Renew `worker`'s lease; return the job's status (`cancelling` means: stop soon).

    None: the lease is no longer this worker's (the job was given to another one, or it
    ended): stop at once and publish nothing.
    """
    renewed = session.execute(
        update(Job).where(Job.id == job_id, Job.worker == worker, Job.status.in_(ACTIVE)).values(heartbeat_at=time.time())
    ).rowcount
    session.commit()
    if renewed != 1:
        return None
    return session.scalar(select(Job.status).where(Job.id == job_id))


def add_event(
    session: Session, job_id: str, type: str, message: str, data: dict | None = None, level: str = "info"
) -> None:
    """Append one event (`type`: progress, message or metrics) and commit."""
    _event(session, job_id, type, message, data, level)
    session.commit()


def set_progress(session: Session, job_id: str, stage: str, step: int, total: int,
                 eta_seconds: float | None = None) -> None:
    """Record the stage and step on the job row, and a `progress` event (with the seconds the job
    has left, `eta_seconds`, when known); commit."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(progress_stage=stage, progress_step=step, progress_total=total)
    )
    data = {"stage": stage, "step": step, "total_steps": total}
    if eta_seconds is not None:
        data["eta_seconds"] = round(eta_seconds, 1)
    _event(session, job_id, "progress", f"{stage} {step}/{total}", data)
    session.commit()


def finish(
    session: Session,
    job_id: str,
    status: str,
    error: dict | None = None,
    result: dict | None = None,
    worker: str | None = None,
) -> str | None:
    """End the job; returns the status it ended with, or None if it had already ended (then
    nothing changes).

    A cancel is never overwritten: a `cancelling` job ends `cancelled` whatever `status` is
    asked for, since the user's request to stop is the last word on it (a `failed` finish's
    error is kept in the final event only). `error` is `{"code": ..., "message": ...}`;
    `result` is `{"model": ..., "version": ...}`. With `worker`, only the lease holder may end it.
    """
    if status not in TERMINAL:
        raise ValueError(f"status must be one of {TERMINAL}, not {status!r}")
    now = time.time()
    # In this order: a job that leaves queued/running between the two can only become
    # cancelling (which the second one sees) or ended.
    if _end_lease(session, job_id, worker, (QUEUED, RUNNING), status=status, error=error, result=result,
                  finished_at=now):
        ended = status
    elif _end_lease(session, job_id, worker, (CANCELLING,), status=CANCELLED, finished_at=now):
        ended, result = CANCELLED, None
    else:
        session.rollback()
        return None
    _ended_event(session, job_id, ended, error, result, asked=status)
    _job_ended(session, job_id, ended)
    session.commit()
    return ended


def mark_succeeded(session: Session, job_id: str, worker: str, result: dict) -> bool:
    """End the job `succeeded` if it is still `running` under `worker`'s lease, in the CALLER's
    transaction (no commit: the registry commits it with the version it inserts).

    False: it is being cancelled, or the lease is no longer `worker`'s; nothing changed.
    """
    if not _end_lease(session, job_id, worker, (RUNNING,), status=SUCCEEDED, result=result, finished_at=time.time()):
        return False
    _ended_event(session, job_id, SUCCEEDED, None, result, asked=SUCCEEDED)
    _job_ended(session, job_id, SUCCEEDED)
    return True


def cancel(session: Session, job_id: str, tenant: str | None = None) -> Job | None:
    """API cancel: a queued job becomes `cancelled`, a running one `cancelling`, others stay.

    None if the job does not exist (or belongs to another tenant).
    """
    if get_job(session, job_id, tenant) is None:
        return None
    now = time.time()
    if _move(session, job_id, QUEUED, CANCELLED, finished_at=now):
        _event(session, job_id, "message", "job cancelled before it started", {"status": CANCELLED})
        _job_ended(session, job_id, CANCELLED)
    elif _move(session, job_id, RUNNING, CANCELLING):
        _event(session, job_id, "message", "cancellation requested", {"status": CANCELLING})
    session.commit()
    return get_job(session, job_id)


def requeue_stale(session: Session, older_than_s: float, max_attempts: int) -> dict[str, str]:
    """Jobs whose lease holder stopped beating for `older_than_s`: put back to queued, or end them.

    A stale `running` job with attempts left goes back to `queued` (its next worker resumes
    from the saved state); after `max_attempts` it fails. A stale `cancelling` job is
    `cancelled`. Returns {job id: its new status}: the queued ones are to be published again,
    the ended ones' stored states to be deleted.
    """
    cutoff = time.time() - older_than_s
    stale = session.execute(
        select(Job.id, Job.status, Job.attempt, Job.worker).where(Job.status.in_(ACTIVE), Job.heartbeat_at < cutoff)
    ).all()
    changed = {}
    for job_id, status, attempt, worker in stale:
        if new_status := _end_or_requeue(session, job_id, status, attempt, worker, cutoff, max_attempts):
            changed[job_id] = new_status
    session.commit()
    return changed


def release(session: Session, job_id: str, worker: str, step: int) -> bool:
    """Hand a running job back to the queue because `worker` is shutting down; commit.

    `running -> queued` now, not once the lease would go stale, so that any worker resumes
    it from its stored state at once. Only the lease holder may: the lease is cleared, and
    the attempt given back (a clean handover is not a failure: rolling restarts of the
    workers must not use up `max_attempts`). False: the job is not `running` under `worker`
    (cancelling, ended, or taken over); nothing changes.
    """
    values = {"status": QUEUED, "worker": None, "heartbeat_at": None, "enqueued_at": time.time(),
              "attempt": Job.attempt - 1}
    query = update(Job).where(Job.id == job_id, Job.status == RUNNING, Job.worker == worker).values(**values)
    if session.execute(query).rowcount != 1:
        session.rollback()
        return False
    _event(session, job_id, "message", f"worker {worker} shut down at step {step}: queued again",
           {"status": QUEUED, "step": step})
    session.commit()
    return True


def queued_unclaimed(session: Session, older_than_s: float) -> list[str]:
    """Queued jobs last published more than `older_than_s` ago: their message may be lost."""
    cutoff = time.time() - older_than_s
    query = select(Job.id).where(Job.status == QUEUED, Job.enqueued_at < cutoff).order_by(Job.id)
    return list(session.scalars(query))


def mark_enqueued(session: Session, job_id: str) -> None:
    """Record that the job's message was just published (again)."""
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=time.time()))
    session.commit()


def list_events(session: Session, job_id: str, after_id: int = 0, limit: int = 1000) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after_id).order_by(JobEvent.id)
    return list(session.scalars(query.limit(limit)))


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: 0 for status in STATUSES} | dict(rows)


def _end_or_requeue(session, job_id, status, attempt, worker, cutoff, max_attempts) -> str | None:
    """The job's new status, or None if it changed meanwhile (then nothing is written)."""
    # The WHERE repeats the staleness test: a heartbeat that landed meanwhile wins.
    still_stale = (Job.id == job_id, Job.status == status, Job.worker == worker, Job.heartbeat_at < cutoff)
    if status == CANCELLING:
        values = {"status": CANCELLED, "finished_at": time.time()}
        note = "its worker was lost while cancelling: cancelled"
    elif attempt >= max_attempts:
        error = {"code": "worker_lost", "message": f"the worker was lost on each of {attempt} attempts"}
        values = {"status": FAILED, "finished_at": time.time(), "error": error}
        note = f"worker {worker} lost; no attempt left: failed"
    else:
        values = {"status": QUEUED, "worker": None, "heartbeat_at": None, "enqueued_at": time.time()}
        note = f"worker {worker} lost: queued again for attempt {attempt + 1}"
    if session.execute(update(Job).where(*still_stale).values(**values)).rowcount != 1:
        return None
    _event(session, job_id, "message", note, {"status": values["status"]}, "warning")
    if values["status"] in TERMINAL:
        _job_ended(session, job_id, values["status"])
    return values["status"]


def _job_ended(session: Session, job_id: str, status: str) -> None:
    """What every path that ends a job does in its ending transaction: this one place, so that
    none is missed. Today: queue the job's webhook delivery, if it subscribed to `status`."""
    webhooks.add_delivery(session, job_id, status)


def _end_lease(session: Session, job_id: str, worker: str | None, sources: tuple[str, ...], **values) -> bool:
    query = update(Job).where(Job.id == job_id, Job.status.in_(sources))
    if worker is not None:
        query = query.where(Job.worker == worker)
    return session.execute(query.values(**values)).rowcount == 1


def _ended_event(session: Session, job_id: str, status: str, error: dict | None, result: dict | None, asked: str):
    message = f"job {status}" + (f": {error.get('message', '')}" if error and status == FAILED else "")
    if status != asked:
        message += f" (it was being cancelled; the worker's {asked} is not kept)"
    level = "error" if status == FAILED else "info"
    _event(session, job_id, "message", message, {"status": status, "error": error, "result": result}, level)


def _move(session: Session, job_id: str, source: str, target: str, **values) -> bool:
    query = update(Job).where(Job.id == job_id, Job.status == source).values(status=target, **values)
    return session.execute(query).rowcount == 1


def _event(session: Session, job_id: str, type: str, message: str, data: dict | None = None, level: str = "info"):
    session.add(JobEvent(job_id=job_id, created_at=time.time(), level=level, type=type, message=message, data=data))
