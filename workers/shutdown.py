"""A worker's warm shutdown reaches its running job, which then hands itself back.

Celery's warm shutdown (SIGTERM or SIGINT to the worker's main process: `docker stop`, `lethe
serve` stopping its worker, Ctrl+C) waits for the running task and tells it nothing; and the
task's prefork child has SIGTERM reset to billiard's default (exit at once) and ignores
SIGINT. So:
1. the main process, on `worker_shutting_down`, notes the jobs it is running and passes
   SIGTERM on to its children (the pool's task child): `forward_to_children`;
2. the task's child, while it runs a job (`listening`), takes SIGTERM as a request only: it
   raises a flag that the training loop reads at its next step (`requested`); the job saves
   and uploads its state and goes back to `queued` (workers/job_run.py);
3. the main process, once its consumer has stopped and its pool is done (`worker_shutdown`),
   publishes those jobs again: `publish_handed_back`. Not the child: the main process may
   still be consuming then (the filesystem broker's poll runs on up to 2 s after the signal)
   and would take the message itself, into a fresh child that no signal reaches.
A SIGTERM that reaches a child outside `listening` (idle, or starting its task) still ends
it at once: a job it had claimed is then found by the reconciler when its lease goes stale;
a job handed back but not published (the main process killed first) is published by a
reconciler once `republish_after_s` has passed.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service import jobs
from workers.queue import enqueue

log = logging.getLogger(__name__)

_requested = False


def requested() -> bool:
    """True once this process was asked to shut down while `listening`."""
    return _requested


@contextmanager
def listening() -> Iterator[None]:
    """While the block runs (in the process's main thread), SIGTERM only raises the flag."""
    previous = signal.signal(signal.SIGTERM, _request)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _request(signum, frame) -> None:
    global _requested
    _requested = True


def running_jobs() -> list[str]:
    """Main process: the jobs its pool holds now, reserved or running (a task's id is its job's id)."""
    from celery.worker import state

    return list(state.requests)


def publish_handed_back(app, sessions, job_ids: list[str]) -> None:
    """Main process, its pool done: publish again each job of `job_ids` now `queued` (handed back)."""
    for job_id in job_ids:
        try:
            with sessions() as session:
                job = jobs.get_job(session, job_id)
                if job is None or job.status != jobs.QUEUED or not enqueue(app, job_id):
                    continue
                jobs.mark_enqueued(session, job_id)
        except Exception as error:  # a reconciler publishes it later
            log.warning("could not publish job %s again (%s)", job_id, type(error).__name__)
            continue
        log.info("job %s handed back: published again", job_id)


def forward_to_children() -> None:
    """Send SIGTERM to every child process of this one (Linux: found in /proc)."""
    for pid in child_pids(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it ended meanwhile
            continue
        log.info("shutting down: passed SIGTERM on to task process %d", pid)


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (none where there is no /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (command) state ppid ...": the command may hold spaces and parentheses
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while we looked
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children
