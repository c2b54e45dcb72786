"""The job store against real SQLite and PostgreSQL databases."""

import threading
import time

from sqlalchemy import update

from service import jobs
from service.db import make_engine, session_factory
from service.jobs import JobSpec
from service.models import Job

SPEC = JobSpec(base_model="tiny", base_version=1, concepts=["van gogh"], method="rg")


def new(session, tenant="tenant-a"):
    return jobs.create_job(session, tenant, SPEC)


def age_heartbeat(session, job_id, seconds):
    session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time() - seconds))
    session.commit()


def test_create_records_queued_job_and_first_event(session):
    job = new(session)
    assert job.status == "queued" and job.attempt == 0
    events = jobs.list_events(session, job.id)
    assert [e.data["status"] for e in events] == ["queued"]


def test_claim_is_won_by_exactly_one_of_many_concurrent_workers(database_url, session):
    job = new(session)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    wins = []

    def worker(name):
        with factory() as own:
            if jobs.claim(own, job.id, name) is not None:
                wins.append(name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    assert len(wins) == 1
    claimed = jobs.get_job(session, job.id)
    assert claimed.status == "running" and claimed.worker == wins[0] and claimed.attempt == 1


def test_claim_of_a_cancelled_job_is_refused(session):
    job = new(session)
    assert jobs.cancel(session, job.id).status == "cancelled"
    assert jobs.claim(session, job.id, "w") is None


def test_heartbeat_reports_cancelling_and_lost_lease(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    assert jobs.heartbeat(session, job.id, "w1") == "running"
    assert jobs.cancel(session, job.id).status == "cancelling"
    assert jobs.heartbeat(session, job.id, "w1") == "cancelling"
    assert jobs.heartbeat(session, job.id, "someone-else") is None


def test_finish_is_final(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    assert jobs.finish(session, job.id, "succeeded", result={"model": "tiny", "version": 2}, worker="w1")
    assert not jobs.finish(session, job.id, "failed", error={"code": "internal", "message": "late"})
    assert jobs.cancel(session, job.id).status == "succeeded"
    final = jobs.get_job(session, job.id)
    assert final.status == "succeeded" and final.result == {"model": "tiny", "version": 2} and final.error is None


def test_finish_by_a_worker_without_the_lease_changes_nothing(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    assert not jobs.finish(session, job.id, "succeeded", worker="w2")
    assert jobs.get_job(session, job.id).status == "running"


def test_progress_is_on_the_row_and_in_events(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    jobs.set_progress(session, job.id, "unlearning", 40, 100)
    row = jobs.get_job(session, job.id)
    assert (row.progress_stage, row.progress_step, row.progress_total) == ("unlearning", 40, 100)
    assert jobs.list_events(session, job.id)[-1].data == {"stage": "unlearning", "step": 40, "total_steps": 100}


def test_requeue_stale_then_fail_after_last_attempt(session):
    job = new(session)
    for attempt in (1, 2):
        assert jobs.claim(session, job.id, f"w{attempt}").attempt == attempt
        assert jobs.requeue_stale(session, older_than_s=60, max_attempts=2) == {}  # fresh heartbeat
        age_heartbeat(session, job.id, 120)
        changed = jobs.requeue_stale(session, older_than_s=60, max_attempts=2)
        if attempt == 1:
            assert changed == {job.id: "queued"} and jobs.get_job(session, job.id).status == "queued"
    assert changed == {job.id: "failed"}
    final = jobs.get_job(session, job.id)
    assert final.status == "failed" and final.error["code"] == "worker_lost"


def test_stale_cancelling_job_ends_cancelled(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    jobs.cancel(session, job.id)
    age_heartbeat(session, job.id, 120)
    assert jobs.requeue_stale(session, 60, 3) == {job.id: "cancelled"}
    assert jobs.get_job(session, job.id).status == "cancelled"


def test_queued_unclaimed_finds_old_unpublished_jobs(session):
    old, fresh = new(session), new(session)
    session.execute(update(Job).where(Job.id == old.id).values(enqueued_at=time.time() - 300))
    session.commit()
    assert jobs.queued_unclaimed(session, older_than_s=60) == [old.id]
    jobs.mark_enqueued(session, old.id)
    assert jobs.queued_unclaimed(session, older_than_s=60) == []
    assert fresh.id not in jobs.queued_unclaimed(session, 60)


def test_list_pages_newest_first_per_tenant_and_status(session):
    created = [new(session).id for _ in range(5)]
    other = new(session, tenant="tenant-b")
    page, more = jobs.list_jobs(session, "tenant-a", after=None, limit=2, status=None)
    assert [j.id for j in page] == created[::-1][:2] and more
    page, more = jobs.list_jobs(session, "tenant-a", after=page[-1].id, limit=10, status=None)
    assert [j.id for j in page] == created[::-1][2:] and not more
    jobs.cancel(session, created[0])
    page, _ = jobs.list_jobs(session, "tenant-a", None, 10, "cancelled")
    assert [j.id for j in page] == [created[0]]
    assert jobs.get_job(session, other.id, "tenant-a") is None


def test_finish_never_turns_a_cancelling_job_into_succeeded(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    assert jobs.cancel(session, job.id).status == "cancelling"
    assert jobs.finish(session, job.id, "succeeded", result={"model": "tiny", "version": 2}, worker="w1") == "cancelled"
    final = jobs.get_job(session, job.id)
    assert (final.status, final.result, final.error) == ("cancelled", None, None)
    assert "the worker's succeeded is not kept" in jobs.list_events(session, job.id)[-1].message


def test_a_failure_reported_while_cancelling_ends_the_job_cancelled_and_keeps_the_error_in_its_event(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    jobs.cancel(session, job.id)
    error = {"code": "internal", "message": "out of memory"}
    assert jobs.finish(session, job.id, "failed", error=error, worker="w1") == "cancelled"
    assert (jobs.get_job(session, job.id).status, jobs.get_job(session, job.id).error) == ("cancelled", None)
    assert jobs.list_events(session, job.id)[-1].data["error"] == error


def test_a_cancelling_job_is_not_ended_by_a_worker_without_the_lease(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    jobs.cancel(session, job.id)
    assert jobs.finish(session, job.id, "cancelled", worker="w2") is None
    assert jobs.get_job(session, job.id).status == "cancelling"


def test_mark_succeeded_needs_a_running_job_under_the_lease_and_leaves_the_commit_to_the_caller(session):
    job = new(session)
    jobs.claim(session, job.id, "w1")
    assert not jobs.mark_succeeded(session, job.id, "w2", {"model": "tiny", "version": 2})
    assert jobs.mark_succeeded(session, job.id, "w1", {"model": "tiny", "version": 2})
    session.rollback()
    assert jobs.get_job(session, job.id).status == "running"
    jobs.cancel(session, job.id)
    assert not jobs.mark_succeeded(session, job.id, "w1", {"model": "tiny", "version": 2})
    session.rollback()
    assert jobs.get_job(session, job.id).status == "cancelling"


def test_a_cancel_racing_a_finish_is_never_overwritten(database_url, session):
    engine = make_engine(database_url)
    factory = session_factory(engine)
    for _ in range(15):
        job = new(session)
        jobs.claim(session, job.id, "w1")
        seen = {}

        def cancel():
            with factory() as own:
                seen["cancel"] = jobs.cancel(own, job.id).status

        def finish():
            with factory() as own:
                seen["finish"] = jobs.finish(own, job.id, "succeeded", result={"model": "tiny", "version": 2}, worker="w1")

        threads = [threading.Thread(target=cancel), threading.Thread(target=finish)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = jobs.get_job(session, job.id).status
        # Either the finish came first (the cancel found it ended), or the cancel did and won; the
        # cancel returns the job as it reads after its commit, which the finish may have ended by then.
        assert (seen["cancel"], seen["finish"], final) in {("succeeded", "succeeded", "succeeded"),
                                                           ("cancelling", "cancelled", "cancelled"),
                                                           ("cancelled", "cancelled", "cancelled")}
    engine.dispose()
