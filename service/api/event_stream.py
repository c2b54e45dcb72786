"""A job's events as Server-Sent Events, read from the database until the job has ended."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from service import jobs
from service.api.present import event_public

KEEP_ALIVE_S = 15.0
BATCH = 500


async def event_stream(sessions, job_id: str, after: int, poll_s: float) -> AsyncIterator[str]:
    """`id`, `event` and `data` lines per event; ends once the job is final and all is sent."""
    idle = 0.0
    while True:
        status, events = await run_in_threadpool(_read, sessions, job_id, after)
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
        job = jobs.get_job(session, job_id)
        status = job.status if job is not None else jobs.CANCELLED
        return status, jobs.list_events(session, job_id, after, limit=BATCH)
