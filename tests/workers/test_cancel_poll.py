"""A cancel reaches a running job within about CANCEL_POLL_S of its next safe point, not a
heartbeat interval later: the loop's `should_stop` reads the job's status between beats."""

from __future__ import annotations

import time
from types import SimpleNamespace

from service import jobs
from tests.workers.test_heartbeat import job_store  # noqa: F401  (the fixture: a real database, one claimed job)
from workers.heartbeat import Heartbeat
from workers.job_run import CANCEL_POLL_S, JobRun


def test_should_stop_sees_a_cancel_long_before_the_next_heartbeat(job_store, tmp_path):  # noqa: F811
    sessions, job_id = job_store
    run = JobRun(SimpleNamespace(work_dir=tmp_path), job_id, sessions, storage=None)
    renewals = []
    with Heartbeat(lambda: renewals.append(1) or "running", interval_s=600, lease_s=1200) as beat:
        assert not run._should_stop(beat)
        with sessions() as session:
            jobs.cancel(session, job_id)
        started = time.monotonic()
        while not run._should_stop(beat):
            assert time.monotonic() - started < CANCEL_POLL_S + 2, "the cancel was not seen"
            time.sleep(0.01)  # a training step
        assert beat.status == jobs.CANCELLING and not renewals  # seen by reading, no heartbeat beat meanwhile
