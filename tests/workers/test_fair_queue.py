"""One tenant cannot hold the queue: with one real `lethe worker`, when tenant A queued three
jobs and then tenant B one, B's job runs second (messages are wake-up calls; the worker claims
the best job in the fair order of `jobs.claim_next`, service/jobs.py)."""

from __future__ import annotations

import pytest

from service import jobs, registry
from service.storage import open_storage
from tests.workers.conftest import make_deployment
from tests.workers.test_worker_jobs import wait_for_status
from workers.queue import enqueue

TINY_JOB = {"steps": 2, "num_prompts": 2, "batch_size": 1, "generation_steps": 1, "save_every": 2, "eval_prompts": 1}


@pytest.fixture
def deployment(tmp_path, postgres_url, redis_url, tiny_base):
    """PostgreSQL and Redis (SQLite's claim order is tested in tests/service/test_fair_claim.py)."""
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url)
    with deployment.sessions() as session:  # a public base: both tenants may use it
        registry.register_base(session, open_storage(deployment.settings), "tiny", tiny_base, owner=None,
                               visibility="public")  # fmt: skip
    yield deployment
    deployment.close()


def submit(deployment, tenant: str) -> str:
    spec = jobs.JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg", hyperparameters=TINY_JOB)
    with deployment.sessions() as session:
        job_id = jobs.create_job(session, tenant, spec).id
    assert enqueue(deployment.celery, job_id)
    return job_id


@pytest.mark.slow
def test_another_tenants_first_job_runs_before_a_tenants_second(deployment, workers):
    a1, a2, a3 = (submit(deployment, "tenant-a") for _ in range(3))
    b1 = submit(deployment, "tenant-b")  # its message is the last on the queue
    workers.append(deployment.start_worker())

    wait_for_status(deployment, b1, (jobs.RUNNING, *jobs.TERMINAL), timeout_s=120)

    assert deployment.job(a1).status == jobs.SUCCEEDED  # first: the oldest job
    assert [deployment.job(job_id).status for job_id in (a2, a3)] == [jobs.QUEUED, jobs.QUEUED]
    with deployment.sessions() as session:  # no need to run them
        assert [jobs.cancel(session, job_id).status for job_id in (a2, a3)] == [jobs.CANCELLED] * 2
    b1_ended = wait_for_status(deployment, b1, jobs.TERMINAL, timeout_s=120)
    assert (b1_ended.status, b1_ended.attempt) == (jobs.SUCCEEDED, 1)
    assert deployment.job(a1).started_at < b1_ended.started_at


@pytest.mark.slow
def test_a_tenant_at_its_cap_of_running_jobs_waits_with_a_worker_idle(tmp_path, postgres_url, redis_url, tiny_base,
                                                                      workers):
    # A held-back job's message was dropped: the reconciler publishes it again (after republish_after_s).
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url, max_running_jobs=1, republish_after_s=1.0)
    with deployment.sessions() as session:
        registry.register_base(session, open_storage(deployment.settings), "tiny", tiny_base, owner=None,
                               visibility="public")  # fmt: skip
    workers.extend([deployment.start_worker("w1.log"), deployment.start_worker("w2.log")])  # both idle, ready
    a1, a2 = submit(deployment, "tenant-a"), submit(deployment, "tenant-a")

    first, second = (wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=180) for job_id in (a1, a2))

    assert (first.status, second.status) == (jobs.SUCCEEDED, jobs.SUCCEEDED)
    assert second.started_at >= first.finished_at  # never both at once, though a worker was free
    assert any("no queued job may start" in worker.output() for worker in workers)  # a2's message found it held
    deployment.close()
