"""The two halves of a clean handover, each on its own (the whole, with real worker processes,
is in test_worker_faults.py): `jobs.release` on PostgreSQL, and workers/shutdown.py's signals
in a process of its own (signal handlers are process-wide state)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service import jobs
from service.db import make_engine, session_factory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def session(postgres_url):
    engine = make_engine(postgres_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def running_job(session, worker: str = "host:1") -> str:
    spec = jobs.JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg")
    job_id = jobs.create_job(session, "tenant", spec).id
    assert jobs.claim(session, job_id, worker) is not None
    return job_id


def test_release_queues_the_job_again_at_once_and_only_for_the_lease_holder(session):
    job_id = running_job(session)
    assert not jobs.release(session, job_id, "host:2", step=7)  # not its lease
    assert jobs.get_job(session, job_id).status == jobs.RUNNING

    assert jobs.release(session, job_id, "host:1", step=7)

    job = jobs.get_job(session, job_id)
    assert (job.status, job.worker, job.heartbeat_at, job.attempt) == (jobs.QUEUED, None, None, 0)
    last = jobs.list_events(session, job_id)[-1]
    assert (last.message, last.data) == ("worker host:1 shut down at step 7: queued again", {"status": "queued", "step": 7})
    assert not jobs.release(session, job_id, "host:1", step=7)  # queued now: nothing to release
    assert jobs.claim(session, job_id, "host:2").attempt == 1  # any worker takes it; the handover used no attempt


def test_release_leaves_a_cancelling_or_ended_job_alone(session):
    cancelling = running_job(session)
    jobs.cancel(session, cancelling)
    ended = running_job(session)
    jobs.finish(session, ended, jobs.FAILED, error={"code": "internal", "message": "x"}, worker="host:1")

    assert not jobs.release(session, cancelling, "host:1", step=3)
    assert not jobs.release(session, ended, "host:1", step=3)
    assert jobs.get_job(session, cancelling).status == jobs.CANCELLING
    assert jobs.get_job(session, ended).status == jobs.FAILED


SIGNALS = """
import os, signal, subprocess, time
from workers import shutdown

sleepers = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
print(sorted(shutdown.child_pids(os.getpid())) == sorted(p.pid for p in sleepers))
shutdown.forward_to_children()
print([p.wait(10) for p in sleepers])

before = shutdown.requested()
with shutdown.listening():
    os.kill(os.getpid(), signal.SIGTERM)  # handled, not fatal, inside the block
    time.sleep(0.05)
print(before, shutdown.requested(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""


def test_the_main_process_forwards_sigterm_and_a_listening_child_only_notes_it():
    run = subprocess.run([sys.executable, "-c", SIGNALS], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["True", "[-15, -15]", "False True True"]
