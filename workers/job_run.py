"""One attempt at one job, in a worker's child process: claim, erase, publish, finish.

The library does the work (`unlearning.erase`); this module moves the job through its
states and keeps the database informed:
- claim `queued -> running` atomically (nothing to claim: a duplicate message, dropped);
- renew the lease from a heartbeat thread, which also brings back `cancelling` and stops
  the job when the lease lapses (the database out of reach for `lease_s`);
- erase from the base version's local folder, with a resumable state under
  `<data_dir>/work/<job id>/state`, so a later attempt continues where this one stopped;
- publish the out folder as the next version (idempotent: one version per job); the
  transaction that inserts it also ends the job `succeeded`, if a cancel or another worker
  has not taken it meanwhile (then nothing is published).
Errors: the caller's (`InvalidInput`, `NotAPipeline`) fail the job at once with a caller
code; anything else fails it as `internal` on the last attempt, and otherwise leaves the
lease to lapse, so that the reconciler queues the job again for the next attempt.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service import jobs, registry
from service.db import make_engine, session_factory
from service.models import Job
from service.storage import Storage, open_storage
from workers.db_retry import retry_db
from workers.heartbeat import Heartbeat
from workers.materialise import materialise
from workers.reporting import Reporter

log = logging.getLogger(__name__)

FINAL_WRITE_DEADLINE_S = 300.0  # a result already computed is worth waiting for the database
CALLER_CODES = {"concepts": "invalid_concept", "base": "invalid_base_model", "method": "invalid_method",
                "hyperparameters": "invalid_hyperparameters", "prompts": "invalid_prompts",
                "preserve": "invalid_preserve"}


@dataclass
class Outcome:
    status: str | None  # a terminal status, or None: leave the job to its next owner
    error: dict | None = None
    result: dict | None = None


class JobRun:
    def __init__(self, settings, job_id: str, sessions: sessionmaker[Session], storage: Storage):
        self.settings = settings
        self.job_id = job_id
        self.sessions = sessions
        self.storage = storage
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.work = Path(settings.work_dir) / job_id

    @classmethod
    def open(cls, settings, job_id: str) -> "JobRun":
        return cls(settings, job_id, session_factory(make_engine(settings.database_url)), open_storage(settings))

    def call(self, function, *args, **kwargs):
        """`function(session, *args)` in a fresh session."""
        with self.sessions() as session:
            return function(session, *args, **kwargs)

    def run(self) -> str | None:
        """Run the job if it can be claimed; returns its final status (None: not ours to end)."""
        job = retry_db(lambda: self.call(jobs.claim, self.job_id, self.worker), what=f"claim {self.job_id}")
        if job is None:
            log.info("job %s is not queued: duplicate message dropped", self.job_id)
            return None
        renew = lambda: self.call(jobs.heartbeat, self.job_id, self.worker)  # noqa: E731
        with Heartbeat(renew, self.settings.heartbeat_s, self.settings.lease_s) as beat:
            outcome = self._attempt(job, beat)
        return self._conclude(job, outcome)

    def _attempt(self, job: Job, beat: Heartbeat) -> Outcome:
        import unlearning  # torch is imported here, in the task's child, never in the worker's parent

        try:
            return self._erase_and_publish(job, beat)
        except unlearning.Stopped:
            return self._stopped(beat)
        except unlearning.InvalidInput as error:
            code = CALLER_CODES.get(error.field.split(".")[0].split("[")[0], "invalid_input")
            return Outcome(jobs.FAILED, error={"code": code, "message": str(error)})
        except Exception as error:
            log.exception("job %s, attempt %d failed", job.id, job.attempt)
            if job.attempt >= self.settings.max_attempts:
                message = f"failed on each of {job.attempt} attempts; last: {type(error).__name__}: {error}"
                return Outcome(jobs.FAILED, error={"code": "internal", "message": message})
            self._note(f"attempt {job.attempt} failed ({type(error).__name__}); it will be retried", "warning")
            return Outcome(None)

    def _erase_and_publish(self, job: Job, beat: Heartbeat) -> Outcome:
        import unlearning

        reporter = Reporter(
            lambda *progress: self.call(jobs.set_progress, job.id, *progress),
            lambda type, message, data: self.call(jobs.add_event, job.id, type, message, data),
        )
        base = retry_db(lambda: self.call(registry.get_version, job.base_model, job.base_version, job.tenant))
        if base is None:
            return Outcome(jobs.FAILED, error={"code": "invalid_base_model",
                                               "message": f"{job.base_model} v{job.base_version} does not exist"})
        reporter.on_progress("preparing", 0, 1)
        folder = materialise(self.storage, base, self.settings.cache_dir)
        if not beat.keep_going:
            return self._stopped(beat)
        out = self.work / "out"
        shutil.rmtree(out, ignore_errors=True)  # a half-written folder of a killed attempt
        concepts_erased = [*base.concepts_erased, *(c for c in job.concepts if c not in base.concepts_erased)]
        unlearning.erase(
            folder, job.concepts, out, method=job.method, preserve=job.preserve, prompts=job.prompts,
            hyperparameters=job.hyperparameters, seed=job.seed, cache_dir=self.settings.cache_dir,
            state_dir=self.work / "state",
            callbacks=unlearning.Callbacks(on_progress=reporter.on_progress, on_event=reporter.on_event,
                                           should_stop=lambda: not beat.keep_going),
            lineage={"name": job.base_model, "parent": job.base_version, "job_id": job.id,
                     "concepts_erased": concepts_erased},
        )  # fmt: skip
        if not beat.keep_going:
            return self._stopped(beat)
        reporter.on_progress("publishing", 0, 1)
        version = retry_db(
            lambda: self.call(registry.publish_version, self.storage, job.base_model, job.base_version, job.id,
                              out, concepts_erased, job.method, worker=self.worker),
            deadline_s=FINAL_WRITE_DEADLINE_S, what=f"publish {job.id}",
        )  # fmt: skip
        if version is None:  # cancelled meanwhile, or the lease is gone: nothing was published
            beat.beat()  # the status as the database has it now
            return self._stopped(beat)
        reporter.on_progress("publishing", 1, 1)
        return Outcome(jobs.SUCCEEDED, result={"model": job.base_model, "version": version.version})

    def _stopped(self, beat: Heartbeat) -> Outcome:
        """Stopped on request: cancelled, or (lease lost) left to the worker that has it now."""
        if beat.status == jobs.CANCELLING:
            return Outcome(jobs.CANCELLED)
        log.warning("job %s: lease lost (status %s); stopping without a result", self.job_id, beat.status)
        return Outcome(None)

    def _conclude(self, job: Job, outcome: Outcome) -> str | None:
        if outcome.status is None:
            return None  # the state stays, for the next attempt
        if outcome.status == jobs.SUCCEEDED:
            ended = jobs.SUCCEEDED  # by the transaction that published its version
        else:
            ended = self._finish(job, outcome)
        if not ended:
            log.warning("job %s had already ended or changed hands; left as it is", job.id)
            return None
        shutil.rmtree(self.work, ignore_errors=True)
        return ended

    def _finish(self, job: Job, outcome: Outcome) -> str | None:
        return retry_db(
            lambda: self.call(jobs.finish, job.id, outcome.status, error=outcome.error, result=outcome.result,
                              worker=self.worker),
            deadline_s=FINAL_WRITE_DEADLINE_S, what=f"finish {job.id}",
        )  # fmt: skip

    def _note(self, message: str, level: str = "info") -> None:
        try:
            retry_db(lambda: self.call(jobs.add_event, self.job_id, "message", message, level=level), deadline_s=10)
        except Exception:
            log.warning("job %s: could not record %r", self.job_id, message)
