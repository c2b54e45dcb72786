"""A real `lethe worker` runs jobs from the broker: Redis + PostgreSQL and the embedded
filesystem broker + SQLite. Jobs are created as the gateway creates them (row, then message)."""

from __future__ import annotations

import shutil

import pytest

from service import jobs
from tests.workers.conftest import make_deployment
from workers.queue import enqueue, waiting_messages
from tests.workers.worker_harness import wait_until


def wait_for_status(deployment, job_id, statuses, timeout_s=180.0):
    def ended():
        job = deployment.job(job_id)
        return job if job.status in statuses else None

    return wait_until(ended, timeout_s, f"job {job_id} to be {'/'.join(statuses)}", every_s=0.2)


@pytest.fixture(params=["distributed", "embedded"])
def deployment(request):
    return request.getfixturevalue(request.param)


@pytest.mark.slow
def test_a_job_runs_to_a_new_version_and_a_duplicate_message_is_dropped(distributed, workers):
    # (The embedded mode runs a whole job in test_worker_end_to_end.py.)
    deployment = distributed
    workers.append(worker := deployment.start_worker())
    job_id = deployment.submit(["cat"], audit="off")

    job = wait_for_status(deployment, job_id, jobs.TERMINAL)

    assert (job.status, job.error, job.result) == ("succeeded", None, {"model": "tiny", "version": 2})
    assert job.attempt == 1 and job.started_at and job.finished_at
    newest = deployment.versions()[0]
    assert (newest.version, newest.parent, newest.job_id, newest.concepts_erased) == (2, 1, job_id, ["cat"])
    assert newest.evaluation["audit"] == {"mode": "off"}  # the job's audit level reached the library
    stages = {event.data["stage"] for event in deployment.events(job_id) if event.type == "progress"}
    assert {"preparing", "unlearning", "evaluating", "publishing"} <= stages
    # The job ends in the commit that publishes its version; the folder goes just after.
    wait_until(lambda: not (deployment.settings.work_dir / job_id).exists(), 10, "the work folder removed")

    assert enqueue(deployment.celery, job_id)  # the same message again
    worker.wait_for_output(f"job {job_id} is not queued: duplicate message dropped")
    assert [v.version for v in deployment.versions()] == [2, 1]
    assert deployment.job(job_id).finished_at == job.finished_at


def test_a_job_cancelled_while_queued_never_starts(deployment, workers):
    job_id = deployment.submit(["cat"])  # published, but no worker yet
    with deployment.sessions() as session:
        assert jobs.cancel(session, job_id).status == "cancelled"

    workers.append(worker := deployment.start_worker())
    worker.wait_for_output(f"job {job_id} is not queued: duplicate message dropped")

    job = deployment.job(job_id)
    assert (job.status, job.started_at, job.attempt) == ("cancelled", None, 0)
    assert waiting_messages(deployment.celery) == 0
    assert [v.version for v in deployment.versions()] == [1]


@pytest.mark.slow
def test_a_running_job_is_cancelled_within_a_few_steps(distributed, workers):
    workers.append(distributed.start_worker())
    long_job = {"steps": 400, "num_prompts": 2, "batch_size": 1, "generation_steps": 1, "save_every": 50, "eval_prompts": 1}
    job_id = distributed.submit(["cat"], hyperparameters=long_job)
    wait_until(lambda: distributed.job(job_id).progress_stage == "unlearning", 120, "the unlearning stage")

    with distributed.sessions() as session:
        assert jobs.cancel(session, job_id).status == "cancelling"
    job = wait_for_status(distributed, job_id, jobs.TERMINAL, timeout_s=30)

    assert job.status == "cancelled" and job.result is None
    assert job.progress_step < 400
    assert [v.version for v in distributed.versions()] == [1]
    wait_until(lambda: not (distributed.settings.work_dir / job_id).exists(), 10, "the work folder removed")


def test_bad_input_fails_the_job_with_a_caller_code(distributed, workers):
    workers.append(distributed.start_worker())
    job_id = distributed.submit(["   "])  # blank concept: the library refuses it

    job = wait_for_status(distributed, job_id, jobs.TERMINAL, timeout_s=60)

    assert job.status == "failed" and job.attempt == 1
    assert job.error["code"] == "invalid_concept"
    assert "concepts" in job.error["message"]
    assert [v.version for v in distributed.versions()] == [1]


def test_a_queued_job_whose_message_was_lost_is_published_again(distributed, workers):
    job_id = distributed.submit(["cat"], publish=False)  # as if the publish had failed
    workers.append(worker := distributed.start_worker())

    job = wait_for_status(distributed, job_id, ("running", *jobs.TERMINAL), timeout_s=30)
    assert job.status == "running" and job.attempt == 1
    assert "reconciler published again" in worker.output()
    with distributed.sessions() as session:
        jobs.cancel(session, job_id)  # no need to run it to the end
    assert wait_for_status(distributed, job_id, jobs.TERMINAL, timeout_s=120).status == "cancelled"


def test_an_unexpected_error_is_retried_then_fails_as_internal_on_the_last_attempt(tmp_path, postgres_url, redis_url,
                                                                                    tiny_base, workers):
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url, max_attempts=2)
    deployment.register_base(tiny_base)
    shutil.rmtree(deployment.settings.data_dir / "storage")  # every blob of the base is gone: not the caller's fault
    workers.append(deployment.start_worker())
    job_id = deployment.submit(["cat"])

    job = wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=60)

    assert (job.status, job.attempt, job.error["code"]) == ("failed", 2, "internal")
    assert "FileNotFoundError" in job.error["message"]
    messages = [event.message for event in deployment.events(job_id)]
    assert any("attempt 1 failed (FileNotFoundError); it will be retried" in m for m in messages)
    assert any("queued again for attempt 2" in m for m in messages)
    deployment.close()
