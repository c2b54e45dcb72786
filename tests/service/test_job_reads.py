"""The event-loop read of GET /v1/jobs/{id} (service/reads.py), on both databases."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from service import jobs
from service.db import make_engine, session_factory
from service.jobs import JobSpec
from service.reads import JobReads

SPEC = JobSpec(base_model="tiny", base_version=1, concepts=["seven"], method="rg", hyperparameters={})


def _reads_and_job(url: str) -> tuple[JobReads, str, object]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        job = jobs.create_job(session, "acme", SPEC)
    return JobReads(url, sessions), job.id, engine


def test_a_job_is_read_for_its_tenant_only_and_its_changes_are_seen(database_url):
    reads, job_id, engine = _reads_and_job(database_url)

    async def scenario():
        first = await reads.job(job_id, "acme")
        with session_factory(engine)() as session:  # a worker's write, on another connection
            jobs.get_job(session, job_id).status = "running"
            session.commit()
        try:
            return first, await reads.job(job_id, "acme"), await reads.job(job_id, "rival"), await reads.job("nope", "acme")
        finally:
            reads.close()

    first, later, rival, missing = asyncio.run(scenario())
    engine.dispose()
    assert (first.id, first.status, later.status) == (job_id, "queued", "running")
    assert rival is None and missing is None


def test_a_locked_sqlite_database_is_waited_for_in_a_thread_and_the_loop_keeps_running(tmp_path):
    from service.db import migrate

    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    migrate(url)
    reads, job_id, engine = _reads_and_job(url)
    engine.dispose()  # its pooled connection would keep the locker out
    # A connection in exclusive locking mode keeps every other connection out, readers in WAL
    # mode too, until it closes: the inline read gets SQLITE_BUSY at once.
    locker = sqlite3.connect(tmp_path / "lethe.db", isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")

    async def scenario():
        ticks, release_after = 0, 0.5

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        asyncio.get_running_loop().call_later(release_after, locker.close)
        started = time.monotonic()
        job = await reads.job(job_id, "acme")
        waited = time.monotonic() - started
        ticker.cancel()
        reads.close()
        return job, waited, ticks

    job, waited, ticks = asyncio.run(scenario())
    engine.dispose()
    assert job.id == job_id
    assert waited >= 0.45  # it did wait for the lock...
    assert ticks >= 20  # ...and not on the event loop, which went on ticking every 10 ms
