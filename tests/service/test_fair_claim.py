"""The fair claim (`jobs.claim_next`) on real SQLite and PostgreSQL databases: which queued job a
worker takes, the per-tenant cap on running jobs, and many workers claiming at once."""

from __future__ import annotations

import threading
import time
from collections import Counter

from service import jobs
from service.db import make_engine, session_factory

SPEC = jobs.JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg")


def queue(session, *tenants: str) -> list[str]:
    return [jobs.create_job(session, tenant, SPEC).id for tenant in tenants]


def run_one(session, worker: str = "w") -> str | None:
    """Claim the next job and end it, as a worker would; its id (None: nothing to claim)."""
    job = jobs.claim_next(session, worker)
    if job is None:
        return None
    jobs.finish(session, job.id, jobs.SUCCEEDED, worker=worker)
    return job.id


def test_with_one_worker_tenants_take_turns(session):
    a1, a2, a3, b1 = queue(session, "a", "a", "a", "b")

    order = [run_one(session) for _ in range(5)]

    assert order == [a1, b1, a2, a3, None]  # b's first job before a's second


def test_a_tenant_that_has_not_run_for_longest_goes_first(session):
    (a0,) = queue(session, "a")
    run_one(session)
    (b0,) = queue(session, "b")
    run_one(session)
    b1, a1 = queue(session, "b", "a")  # b's is older, but a ran longer ago

    assert [run_one(session), run_one(session)] == [a1, b1]


def test_the_tenant_with_fewest_running_jobs_goes_first(session):
    a1, a2, b1 = queue(session, "a", "a", "b")
    assert jobs.claim_next(session, "w1").id == a1  # a has one running now

    assert jobs.claim_next(session, "w2").id == b1  # younger, but its tenant runs nothing
    assert jobs.claim_next(session, "w3").id == a2


def test_a_tenant_at_its_cap_of_running_jobs_waits_while_others_run(session):
    a1, a2, b1 = queue(session, "a", "a", "b")
    assert jobs.claim_next(session, "w1", max_running=1).id == a1
    assert jobs.claim_next(session, "w2", max_running=1).id == b1

    assert jobs.claim_next(session, "w3", max_running=1) is None  # a2 waits: a runs one already
    assert jobs.get_job(session, a2).status == jobs.QUEUED
    jobs.finish(session, a1, jobs.SUCCEEDED, worker="w1")
    assert jobs.claim_next(session, "w3", max_running=1).id == a2


def test_a_requeued_job_keeps_its_place(session):
    a1, a2, a3 = queue(session, "a", "a", "a")
    assert jobs.claim_next(session, "w1").id == a1
    assert jobs.release(session, a1, "w1", step=3)  # its worker shut down: queued again, behind a2 and a3 by time

    job = jobs.claim_next(session, "w2")

    assert (job.id, job.attempt, job.worker) == (a1, 1, "w2")


def test_cancelled_and_ended_jobs_are_never_claimed(session):
    a1, a2 = queue(session, "a", "a")
    jobs.cancel(session, a1)

    assert run_one(session) == a2
    assert jobs.claim_next(session, "w") is None
    assert jobs.get_job(session, a1).status == jobs.CANCELLED and jobs.get_job(session, a1).started_at is None


def test_the_claim_writes_the_lease_and_an_event(session):
    (a1,) = queue(session, "a")

    job = jobs.claim_next(session, "host:7")

    assert (job.status, job.worker, job.attempt) == (jobs.RUNNING, "host:7", 1)
    assert job.heartbeat_at == job.started_at and job.started_at >= job.created_at
    assert jobs.list_events(session, a1)[-1].message == "attempt 1 started on host:7"


def test_many_workers_claiming_at_once_take_each_job_once_and_keep_the_cap(database_url, session):
    tenants = [f"t{i % 4}" for i in range(24)]  # 4 tenants, 6 jobs each; 8 workers, at most 1 job a tenant
    queued = set(queue(session, *tenants))
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    claimed: list[tuple[str, str]] = []
    over_cap: list[Counter] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(name: str) -> None:
        start.wait()
        with sessions() as own:
            while len(claimed) < len(queued):  # with the cap, a worker may find nothing for a while
                if (job := jobs.claim_next(own, name, max_running=1)) is None:
                    time.sleep(0.01)
                    continue
                with lock:
                    claimed.append((job.id, name))
                    running = Counter(j.tenant for j in _running(own))
                    if max(running.values()) > 1:
                        over_cap.append(running)
                time.sleep(0.02)  # "runs" a while, so that claims overlap with running jobs
                jobs.finish(own, job.id, jobs.SUCCEEDED, worker=name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    engine.dispose()

    ids = [job_id for job_id, _ in claimed]
    assert sorted(ids) == sorted(queued) and len(set(ids)) == len(ids)  # every job once, none twice
    assert over_cap == []
    assert all(jobs.get_job(session, job_id).attempt == 1 for job_id in queued)


def _running(session):
    from sqlalchemy import select

    from service.models import Job

    return list(session.scalars(select(Job).where(Job.status.in_(jobs.ACTIVE))))
