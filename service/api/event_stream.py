"""A job's events as Server-Sent Events, read from the database until the job has ended.

Each poll borrows a session (and a thread from `limiter`) only while it reads: between
polls, and while a slow client takes its time, the stream holds neither.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from anyio import CapacityLimiter, to_thread
from sqlalchemy import select

from service import jobs
from service.api.present import event_public
from service.models import Job
from service.problems import field_problem

KEEP_ALIVE_S = 15.0
BATCH = 500
LARGEST_EVENT_ID = 2**62  # as the `after` query parameter; beyond any id the database gives
EVENT_ID = re.compile(r"[0-9]{1,19}")


def resume_after(last_event_id: str | None, after: int) -> int:
    """Where a stream starts: after `Last-Event-ID` when the client sends one (a reconnection), else after `after`.

    Our ids are non-negative integers; anything else in the header is a 400 naming it.
    """
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not EVENT_ID.fullmatch(value) or int(value) > LARGEST_EVENT_ID:
        message = f"must be an event id (an integer from 0 to {LARGEST_EVENT_ID})"
        raise field_problem("Last-Event-ID", message, status=400, code="invalid_header")
    return int(value)


async def event_stream(sessions, limiter: CapacityLimiter, job_id: str, after: int, poll_s: float) -> AsyncIterator[str]:
    """`id`, `event` and `data` lines per event; ends once the job is final and all is sent."""
    idle = 0.0
    while True:
        status, events = await to_thread.run_sync(_read, sessions, job_id, after, limiter=limiter)
        for event in events:
            after = event.id
            yield f"id: {event.id}\nevent: {event.type}\ndata: {event_public(event).model_dump_json()}\n\n"
        # The status was read before the events: if it was final then, its last event is in this batch.
        if status in jobs.TERMINAL and len(events) < BATCH:
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        if events:
            idle = 0.0
            continue
        idle += poll_s
        if idle >= KEEP_ALIVE_S:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_s)


def _read(sessions, job_id: str, after: int):
    with sessions() as session:
        # The status alone, not the whole row: a hundred streams each poll it twice a second.
        status = session.scalar(select(Job.status).where(Job.id == job_id)) or jobs.CANCELLED
        return status, jobs.list_events(session, job_id, after, limit=BATCH)
