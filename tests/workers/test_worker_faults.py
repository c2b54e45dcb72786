"""Faults, with real parts: a worker killed or stopped mid-job, Redis restarted, the database
cut away.

Each test keeps to tens of seconds: tiny model, few steps, leases of a few seconds. Where a
job moves from one worker to another, each worker has a data folder of its own (as on two
machines): only the database, the broker and the storage are shared, so a resumed job can
only have found its state in the storage.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from service import jobs
from service.storage import open_storage
from tests.workers.conftest import Deployment, make_deployment
from tests.workers.test_worker_jobs import wait_for_status
from tests.workers.worker_harness import PrivateRedis, TcpProxy, start_http, wait_until
from workers.job_run import state_key

pytestmark = pytest.mark.slow


def progress_events(deployment, job_id):
    return [e.data for e in deployment.events(job_id) if e.type == "progress"]


def first_unlearning_step_after(deployment, job_id, message: str) -> int:
    """The step the next attempt's unlearning began at, after the event holding `message`."""
    events = deployment.events(job_id)
    handed_over_at = next(i for i, e in enumerate(events) if message in e.message)
    return next(e.data["step"] for e in events[handed_over_at:] if e.type == "progress" and e.data["stage"] == "unlearning")


def stored_state(deployment, job_id, tmp_path) -> bool:
    return open_storage(deployment.settings).get_object(state_key(job_id), tmp_path / "probe" / "state.pt")


def test_a_worker_killed_mid_job_resumes_on_a_new_worker_and_one_version_is_published(distributed, workers, tmp_path):
    workers.append(first := distributed.start_worker("first.log", data_dir=tmp_path / "first"))
    long_job = {"steps": 40, "num_prompts": 2, "batch_size": 1, "generation_steps": 1, "save_every": 5, "eval_prompts": 1}
    job_id = distributed.submit(["cat"], hyperparameters=long_job)
    wait_until(lambda: (distributed.job(job_id).progress_step or 0) >= 12
               and distributed.job(job_id).progress_stage == "unlearning", 120, "step 12 of the first attempt")

    first.kill()  # SIGKILL to the worker and its task child: as if the machine were lost
    assert distributed.job(job_id).status == "running"  # nobody told the database
    assert stored_state(distributed, job_id, tmp_path), "the first attempt uploaded a resumable state"
    workers.append(distributed.start_worker("second.log", data_dir=tmp_path / "second"))

    job = wait_for_status(distributed, job_id, jobs.TERMINAL, timeout_s=180)

    assert (job.status, job.attempt, job.result) == ("succeeded", 2, {"model": "tiny", "version": 2})
    assert [(v.version, v.job_id) for v in distributed.versions()] == [(2, job_id), (1, None)]
    first_step_of_second_attempt = first_unlearning_step_after(distributed, job_id, "queued again for attempt 2")
    assert first_step_of_second_attempt >= 10 and first_step_of_second_attempt % 5 == 0  # resumed, not restarted
    assert not stored_state(distributed, job_id, tmp_path), "the stored state is deleted once the job ended"
    assert not (tmp_path / "second" / "work" / job_id).exists()


# No periodic save: a state the next attempt resumes from can only be the one saved on SIGTERM.
SAVED_ONLY_ON_STOP = {"steps": 80, "num_prompts": 2, "batch_size": 1, "generation_steps": 1, "save_every": 1000,
                      "eval_prompts": 1}


def test_a_worker_stopped_with_sigterm_hands_its_job_to_another_at_once(tmp_path, postgres_url, redis_url, tiny_base,
                                                                         workers):
    # A lease and a republish delay far beyond the test: only the handover can move the job.
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url, lease_s=600, republish_after_s=600)
    deployment.register_base(tiny_base)
    workers.append(first := deployment.start_worker("first.log", data_dir=tmp_path / "first"))
    job_id = deployment.submit(["cat"], hyperparameters=SAVED_ONLY_ON_STOP)
    wait_until(lambda: (deployment.job(job_id).progress_step or 0) >= 5
               and deployment.job(job_id).progress_stage == "unlearning", 120, "step 5 of the first attempt")

    os.kill(first.process.pid, signal.SIGTERM)  # the worker's main process only, as `docker stop` does
    stopped_at = time.monotonic()
    wait_until(lambda: deployment.job(job_id).status == "queued", 10, "the job queued again")
    assert time.monotonic() - stopped_at < 10  # not the lease (600 s): the worker gave it back
    assert first.process.wait(15) == 0
    assert deployment.job(job_id).worker is None
    assert stored_state(deployment, job_id, tmp_path)
    handover = next(e for e in deployment.events(job_id) if "shut down at step" in e.message)
    stopped_step = handover.data["step"]
    assert 5 <= stopped_step < SAVED_ONLY_ON_STOP["steps"]

    workers.append(deployment.start_worker("second.log", data_dir=tmp_path / "second"))
    job = wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=180)

    assert (job.status, job.attempt, job.result) == ("succeeded", 1, {"model": "tiny", "version": 2})
    assert [(v.version, v.job_id) for v in deployment.versions()] == [(2, job_id), (1, None)]
    assert first_unlearning_step_after(deployment, job_id, "shut down at step") == stopped_step  # where it stopped
    assert not stored_state(deployment, job_id, tmp_path)
    deployment.close()


def test_a_job_running_when_lethe_serve_stops_resumes_where_it_stopped_at_the_next_start(tmp_path, tiny_base, workers):
    # Embedded: the filesystem broker, polled by the stopping worker for a while after SIGTERM.
    deployment = make_deployment(tmp_path / "data", "", "filesystem://", lease_s=600, republish_after_s=600)
    deployment.register_base(tiny_base)
    server, _ = start_http("serve", deployment.env(), tmp_path / "serve.log")
    workers.append(server)
    job_id = deployment.submit(["cat"], hyperparameters=SAVED_ONLY_ON_STOP)
    wait_until(lambda: (deployment.job(job_id).progress_step or 0) >= 5
               and deployment.job(job_id).progress_stage == "unlearning", 120, "step 5")

    server.process.send_signal(signal.SIGTERM)  # `serve` stops its worker with SIGTERM
    assert server.process.wait(30) == 0
    job = deployment.job(job_id)
    assert (job.status, job.attempt) == ("queued", 0)  # handed back (no attempt used), not taken again by the stopping worker
    workers.append(start_http("serve", deployment.env(), tmp_path / "serve-again.log")[0])
    job = wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=120)

    assert (job.status, job.attempt) == ("succeeded", 1)
    assert [v.version for v in deployment.versions()] == [2, 1]
    stopped_step = next(e for e in deployment.events(job_id) if "shut down at step" in e.message).data["step"]
    assert first_unlearning_step_after(deployment, job_id, "shut down at step") == stopped_step > 0
    deployment.close()


def test_a_job_waiting_in_redis_survives_a_redis_restart(tmp_path, postgres_url, tiny_base, workers):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        # No republishing by the reconciler within the test: only the persisted message can run it.
        deployment = make_deployment(tmp_path / "data", postgres_url, server.url, republish_after_s=600)
        deployment.register_base(tiny_base)
        job_id = deployment.submit(["cat"])

        server.restart()  # the message waits in Redis' append-only file meanwhile
        workers.append(worker := deployment.start_worker())
        job = wait_for_status(deployment, job_id, jobs.TERMINAL)
        assert (job.status, job.attempt) == ("succeeded", 1)
        assert "reconciler published again" not in worker.output()

        server.restart()  # under a running, idle worker: it reconnects and takes the next job
        quick = deployment.submit(["   "])  # fails at once (a blank concept), proving it was consumed
        assert wait_for_status(deployment, quick, jobs.TERMINAL, timeout_s=60).error["code"] == "invalid_concept"
        deployment.close()
    finally:
        for started in workers:
            started.stop()
        server.stop()


def test_the_worker_rides_out_a_database_outage_and_the_job_is_not_lost(tmp_path, postgres_url, redis_url, tiny_base, workers):
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url)
    deployment.register_base(tiny_base)
    proxy = TcpProxy(target_port=5432)
    proxy.start()
    proxied_url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    worker_side = Deployment(deployment.settings.model_copy(update={"database_url": proxied_url}))
    workers.append(worker := worker_side.start_worker())
    try:
        proxy.cut()  # the database is unreachable when the job's message arrives
        job_id = deployment.submit(["cat"], hyperparameters={"steps": 12, "num_prompts": 2, "batch_size": 1,
                                                              "generation_steps": 1, "save_every": 4, "eval_prompts": 1})
        worker.wait_for_output(f"claim {job_id} failed (OperationalError); retrying", timeout_s=30)
        proxy.start()
        wait_until(lambda: deployment.job(job_id).progress_stage == "unlearning", 120, "the unlearning stage")

        proxy.cut()  # and once more in the middle of the run, shorter than the lease
        wait_until(lambda: "heartbeat failed" in worker.output(), 10, "a failed heartbeat")
        proxy.start()

        job = wait_for_status(deployment, job_id, jobs.TERMINAL)
        assert (job.status, job.attempt, job.result) == ("succeeded", 1, {"model": "tiny", "version": 2})
        assert [v.version for v in deployment.versions()] == [2, 1]
    finally:
        proxy.cut()
        deployment.close()
