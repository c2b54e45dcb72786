"""The reconciler's round against a real database and storage: what it does with stale jobs' states."""

from __future__ import annotations

import time

from sqlalchemy import update

from service import jobs
from service.models import Job
from service.storage import open_storage
from tests.workers.conftest import make_deployment
from workers.job_run import state_key
from workers.reconciler import Reconciler


def stale_job(deployment, storage, tmp_path, cancel: bool = False) -> str:
    """A running job with a stored state whose worker stopped beating long ago."""
    job_id = deployment.submit(publish=False)
    with deployment.sessions() as session:
        jobs.claim(session, job_id, "lost-worker")
        if cancel:
            jobs.cancel(session, job_id)
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=time.time() - 3600))
        session.commit()
    state = tmp_path / f"{job_id}.pt"
    state.write_bytes(b"a saved state")
    storage.put_object(state_key(job_id), state)
    return job_id


def test_the_stored_state_of_a_job_the_reconciler_ends_is_deleted_and_a_requeued_ones_kept(tmp_path):
    deployment = make_deployment(tmp_path / "data", "", "filesystem://", max_attempts=1, republish_after_s=600)
    storage = open_storage(deployment.settings)
    failed, cancelled = stale_job(deployment, storage, tmp_path), stale_job(deployment, storage, tmp_path, cancel=True)
    reconciler = Reconciler(deployment.settings, deployment.celery, deployment.sessions, storage)

    reconciler.run_once()

    assert deployment.job(failed).status == jobs.FAILED and deployment.job(cancelled).status == jobs.CANCELLED
    for job_id in (failed, cancelled):
        assert not storage.get_object(state_key(job_id), tmp_path / "read-back.pt")

    retried = make_deployment(tmp_path / "again", "", "filesystem://", max_attempts=3, republish_after_s=600)
    storage = open_storage(retried.settings)
    requeued = stale_job(retried, storage, tmp_path)
    Reconciler(retried.settings, retried.celery, retried.sessions, storage).run_once()
    assert retried.job(requeued).status == jobs.QUEUED
    assert storage.get_object(state_key(requeued), tmp_path / "kept.pt")  # the next attempt resumes from it
    deployment.close()
    retried.close()
