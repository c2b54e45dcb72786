"""The lease kept honestly: a heartbeat that cannot renew for `lease_s` stops the job, and no
failure of a beat ends its thread. The renew function is the real job store's (against a
real database, reached through a proxy the test can cut) or a plain function that fails."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import exc

from service import jobs
from service.db import make_engine, migrate, session_factory
from tests.workers.conftest import Deployment, make_deployment
from tests.workers.test_worker_jobs import wait_for_status
from tests.workers.worker_harness import TcpProxy, wait_until
from workers.heartbeat import Heartbeat

INTERVAL_S = 0.02


class Renewals:
    """A renew function answering from a script: a status, or an exception to raise."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def unreachable():
    return exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_renewals_keep_the_lease_past_its_length():
    renew = Renewals("running")
    with Heartbeat(renew, INTERVAL_S, lease_s=0.2) as beat:
        time.sleep(0.5)
        assert beat.keep_going and renew.calls >= 5


def test_a_lease_not_renewed_for_lease_s_stops_the_job_and_says_why(caplog):
    renew = Renewals(unreachable())
    with caplog.at_level(logging.WARNING, logger="workers.heartbeat"), Heartbeat(renew, INTERVAL_S, 0.3) as beat:
        time.sleep(0.15)
        assert beat.keep_going, "a few missed beats are within the lease"
        wait_until(lambda: not beat.keep_going, 2, "the lease to lapse")
    assert "heartbeat failed (OperationalError)" in caplog.text
    assert "lease lapsed: not renewed for" in caplog.text


def test_a_lapse_is_final_and_the_heartbeat_stops_renewing():
    renew = Renewals(unreachable())
    with Heartbeat(renew, INTERVAL_S, lease_s=0.15) as beat:
        wait_until(lambda: beat.lapsed, 2, "the lease to lapse")
        renew.answers = ["running"]  # the database is back, too late
        time.sleep(0.05)  # a beat already past its lapse check finishes
        calls_at_lapse = renew.calls
        time.sleep(0.3)
        assert not beat.keep_going and renew.calls == calls_at_lapse


def test_any_exception_in_a_beat_is_logged_with_its_traceback_and_the_thread_keeps_beating(caplog):
    renew = Renewals(ValueError("a bug in renew"), RuntimeError("another"), "running")
    with caplog.at_level(logging.WARNING, logger="workers.heartbeat"), Heartbeat(renew, INTERVAL_S, 5.0) as beat:
        wait_until(lambda: renew.calls >= 5, 2, "beats after the failing ones")
        assert beat.keep_going
    failures = [r for r in caplog.records if r.getMessage().startswith("heartbeat failed")]
    assert [r.exc_info[0] for r in failures] == [ValueError, RuntimeError]


def test_a_missed_beat_does_not_extend_the_lease():
    renew = Renewals("running", unreachable())
    with Heartbeat(renew, 0.05, lease_s=0.4) as beat:
        wait_until(lambda: renew.calls >= 2, 2, "a failed beat")
        wait_until(lambda: beat.lapsed, 2, "the lease to lapse, counted from the last success")


@pytest.fixture(params=["sqlite", "postgresql"])
def job_store(request, tmp_path):
    """(session factory, job id): a real database with one job claimed by worker `w1`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lethe.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        job = jobs.create_job(session, "t", jobs.JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg"))
        jobs.claim(session, job.id, "w1")
    yield sessions, job.id
    engine.dispose()


def renewal_of(sessions, job_id, worker="w1"):
    def renew():
        with sessions() as session:
            return jobs.heartbeat(session, job_id, worker)

    return renew


def test_with_the_real_job_store_a_cancel_or_a_lease_taken_away_stops_the_job(job_store):
    sessions, job_id = job_store
    with Heartbeat(renewal_of(sessions, job_id), INTERVAL_S, lease_s=5.0) as beat:
        time.sleep(0.1)
        assert beat.keep_going
        with sessions() as session:
            jobs.cancel(session, job_id)
        wait_until(lambda: beat.status == "cancelling", 2, "the cancel to be seen")
        assert not beat.keep_going
    with Heartbeat(renewal_of(sessions, job_id, worker="w2"), INTERVAL_S, lease_s=5.0) as beat:
        wait_until(lambda: beat.status is None, 2, "the lease to read as not ours")
        assert not beat.keep_going


def test_with_the_real_database_cut_away_the_lease_lapses(postgres_url, caplog):
    proxy = TcpProxy(target_port=5432)
    proxy.start()
    engine = make_engine(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            job = jobs.create_job(session, "t", jobs.JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg"))
            jobs.claim(session, job.id, "w1")
        with caplog.at_level(logging.WARNING, logger="workers.heartbeat"), \
                Heartbeat(renewal_of(sessions, job.id), 0.1, lease_s=1.0) as beat:
            time.sleep(0.3)
            assert beat.keep_going
            proxy.cut()
            started = time.monotonic()
            wait_until(lambda: not beat.keep_going, 5, "the lease to lapse")
            assert 0.6 < time.monotonic() - started < 2.5
        assert "heartbeat failed (OperationalError)" in caplog.text and "lease lapsed" in caplog.text
    finally:
        proxy.cut()
        engine.dispose()


@pytest.mark.slow
def test_a_worker_cut_off_from_the_database_past_its_lease_stops_and_another_publishes_the_one_version(
    tmp_path, postgres_url, redis_url, tiny_base, workers
):
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url, lease_s=3.0)
    deployment.register_base(tiny_base)
    proxy = TcpProxy(target_port=5432)
    proxy.start()
    cut_off = Deployment(deployment.settings.model_copy(
        update={"database_url": postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")}))
    workers.append(first := cut_off.start_worker("first.log"))
    try:
        job_id = deployment.submit(["cat"], hyperparameters={"steps": 200, "num_prompts": 2, "batch_size": 1,
                                                              "generation_steps": 1, "save_every": 5, "eval_prompts": 1})
        wait_until(lambda: (deployment.job(job_id).progress_step or 0) >= 5, 120, "step 5 on the first worker")
        workers.append(deployment.start_worker("second.log"))

        proxy.cut()
        first.wait_for_output("lease lapsed", timeout_s=30)
        # It stops mid-training and returns None: it leaves the job to its next owner.
        first.wait_for_output(f"Task lethe.run_job[{job_id}] succeeded in", timeout_s=30)
        returned = next(line for line in first.output().splitlines() if f"Task lethe.run_job[{job_id}] succ" in line)
        assert returned.endswith(": None")
        # Nothing of its own published; the second worker, resuming from step 5, may already
        # have finished (it did in 3 s on a fast run). The one version is checked at the end.
        assert [v.version for v in deployment.versions()] in ([1], [2, 1])
        proxy.start()  # the first worker may reach the database again: it must have nothing left to write

        job = wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=180)
        assert (job.status, job.attempt, job.result) == ("succeeded", 2, {"model": "tiny", "version": 2})
        assert [(v.version, v.job_id) for v in deployment.versions()] == [(2, job_id), (1, None)]
        assert any("queued again for attempt 2" in e.message for e in deployment.events(job_id))
    finally:
        proxy.cut()
        deployment.close()
