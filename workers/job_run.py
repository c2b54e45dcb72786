"""One attempt at one job, in a worker's child process: claim, erase, publish, finish.

The library does the work (`unlearning.erase`); this module moves the job through its
states and keeps the database informed:
- claim `queued -> running` atomically: the best queued job in the fair order, which need not
  be the message's own (nothing to claim: a duplicate message, dropped);
- renew the lease from a heartbeat thread, which also brings back `cancelling` and stops
  the job when the lease lapses (the database out of reach for `lease_s`); between beats the
  loop reads the job's status at most every CANCEL_POLL_S when it asks whether to stop, so a
  cancel ends it within a second or so of its next safe point;
- erase from the base version's local folder. The resumable state lives in the storage
  (`jobs/<job id>/state.pt`), so that any worker, on any machine, continues where this
  attempt stopped: it is downloaded into `<data_dir>/work/<job id>/attempt-<n>-<unique>/state` before `erase`,
  uploaded after each save (every `save_every` steps, and when the loop stops on request)
  and deleted when the job ends. This worker's disk keeps no copy once the attempt is over;
- on its worker's shutdown (SIGTERM, workers/shutdown.py) the loop stops at its next step,
  saves and uploads the state, and the job goes back to `queued` at once (`jobs.release`);
  the worker's main process publishes it again as it exits, and another worker resumes it
  without waiting for the lease to lapse;
- publish the out folder as the next version (idempotent: one version per job); the
  transaction that inserts it also ends the job `succeeded`, if a cancel or another worker
  has not taken it meanwhile (then nothing is published).
Errors: the caller's (`InvalidInput`, `NotAPipeline`) fail the job at once with a caller
code, and so do those no retry can mend (workers/failures.py: a full disk, `no_space`; base
weights that cannot be read, `invalid_base_model`); anything else fails it as `internal` on
the last attempt, and otherwise leaves the lease to lapse, so that the reconciler queues the
job again for the next attempt.

The cost of the shared state: uploads are synchronous, so the loop waits for each one. A
state holds the trainable tensors and Adam's two moments, about 3x the trainable weights in
fp32 (all of SD 1.5's UNet, 860 M parameters: about 10 GB; cross-attention only: far less):
per save, about the time to copy that much to the store. A larger `save_every` saves less
often; a worker stopped with SIGTERM saves once more anyway. A failed upload is logged and
the job goes on (the next save tries again; until then the store holds the previous state).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import estimates, jobs, registry
from service.db import make_engine, session_factory
from service.models import Job
from service.storage import Storage, open_storage
from unlearning.audit import DEFAULT_AUDIT
from workers import shutdown, throughput
from workers.db_retry import TRANSIENT, retry_db
from workers.failures import permanent_failure
from workers.heartbeat import Heartbeat
from workers.materialise import materialise
from workers.reporting import Reporter

log = logging.getLogger(__name__)

FINAL_WRITE_DEADLINE_S = 300.0  # a result already computed is worth waiting for the database
HAND_BACK_DEADLINE_S = 10.0  # a stopping worker does not wait long: if it cannot, the lease lapses
# Between heartbeats (LETHE_HEARTBEAT_S, 10 s), the loop reads its job's status at most this often
# when it is asked whether to stop, so a cancel stops it within about a second of its next safe point.
CANCEL_POLL_S = 1.0
CALLER_CODES = {"concepts": "invalid_concept", "base": "invalid_base_model", "method": "invalid_method",
                "hyperparameters": "invalid_hyperparameters", "prompts": "invalid_prompts",
                "preserve": "invalid_preserve"}


def state_key(job_id: str) -> str:
    """Where the storage keeps the job's resumable state."""
    return f"jobs/{job_id}/state.pt"


def stored_event(library_type: str) -> tuple[str, str]:
    """The type and level a library event is stored with: its `warning`s (such as the audit's
    "does not seem to draw") are messages at level warning, as API.md's types are progress,
    message and metrics."""
    return ("message", "warning") if library_type == "warning" else (library_type, "info")


@dataclass
class Outcome:
    status: str | None  # a terminal status, or None: leave the job to its next owner
    error: dict | None = None
    result: dict | None = None


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new folder of a unique name in `parent`, made with `parent` if needed."""
    while True:
        parent.mkdir(parents=True, exist_ok=True)
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except FileNotFoundError:  # another attempt's cleanup removed the empty parent just now
            continue


class JobRun:
    def __init__(self, settings, job_id: str, sessions: sessionmaker[Session], storage: Storage):
        self.settings = settings
        self.job_id = job_id
        self.sessions = sessions
        self.storage = storage
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.work = Path(settings.work_dir) / job_id  # its attempt's own folder once claimed
        self._status_read_at = 0.0

    @classmethod
    def open(cls, settings, job_id: str) -> "JobRun":
        return cls(settings, job_id, session_factory(make_engine(settings.database_url)), open_storage(settings))

    def call(self, function, *args, **kwargs):
        """`function(session, *args)` in a fresh session."""
        with self.sessions() as session:
            return function(session, *args, **kwargs)

    def run(self) -> str | None:
        """Claim the best queued job (the message's own job or another: service.jobs.claim_next) and
        run it; returns its final status (None: nothing to run, or not ours to end)."""
        with shutdown.listening():
            claim = lambda: self.call(jobs.claim_next, self.worker, self.settings.max_running_jobs)  # noqa: E731
            job = retry_db(claim, what=f"claim {self.job_id}")  # the message's job: the claim may take another
            if job is None:
                log.info("job %s is not queued: duplicate message dropped (no queued job may start)", self.job_id)
                return None
            if job.id != self.job_id:
                log.info("the message of job %s runs job %s, first in the fair order", self.job_id, job.id)
            with self._attempt_folder(job):
                return self._run_claimed(job)

    @contextlib.contextmanager
    def _attempt_folder(self, job: Job):
        """Work in a folder of this attempt's own, removed after it (the store holds the state).

        Two workers may share a disk: one whose lease lapsed goes on writing in its folder until
        its next safe point while the job's next attempt starts; neither may delete the other's.
        The name is unique, not just the attempt's number: a job handed back on SIGTERM keeps its
        number, and its next worker may start before the stopping one has cleaned up.
        """
        self.job_id = job.id
        self.work = _new_folder(Path(self.settings.work_dir) / job.id, prefix=f"attempt-{job.attempt}-")
        try:
            yield self.work
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.work.parent.rmdir()  # the job's folder, unless another attempt still works in it

    def _run_claimed(self, job: Job) -> str | None:
        renew = lambda: self.call(jobs.heartbeat, self.job_id, self.worker)  # noqa: E731
        with Heartbeat(renew, self.settings.heartbeat_s, self.settings.lease_s) as beat:
            outcome = self._attempt(job, beat)
        return self._conclude(job, outcome)

    def _attempt(self, job: Job, beat: Heartbeat) -> Outcome:
        import unlearning  # torch is imported here, in the task's child, never in the worker's parent

        try:
            return self._erase_and_publish(job, beat)
        except unlearning.Stopped as stop:
            return self._stopped(beat, stop.step)
        except unlearning.InvalidInput as error:
            code = CALLER_CODES.get(error.field.split(".")[0].split("[")[0], "invalid_input")
            return Outcome(jobs.FAILED, error={"code": code, "message": str(error)})
        except Exception as error:
            log.exception("job %s, attempt %d failed", job.id, job.attempt)
            if (permanent := permanent_failure(error)) is not None:  # no retry can mend it: fail now
                return Outcome(jobs.FAILED, error=permanent)
            if job.attempt >= self.settings.max_attempts:
                message = f"failed on each of {job.attempt} attempts; last: {type(error).__name__}: {error}"
                return Outcome(jobs.FAILED, error={"code": "internal", "message": message})
            self._note(f"attempt {job.attempt} failed ({type(error).__name__}); it will be retried", "warning")
            return Outcome(None)

    def _erase_and_publish(self, job: Job, beat: Heartbeat) -> Outcome:
        import unlearning

        reporter = Reporter(
            lambda *progress: self.call(jobs.set_progress, job.id, *progress),
            self._library_event,
        )
        base = retry_db(lambda: self.call(registry.get_version, job.base_model, job.base_version, job.tenant))
        if base is None:
            return Outcome(jobs.FAILED, error={"code": "invalid_base_model",
                                               "message": f"{job.base_model} v{job.base_version} does not exist"})
        reporter.clock.plan = self._estimate(job, base)
        reporter.on_progress("preparing", 0, 1)
        folder = materialise(self.storage, base, self.settings.cache_dir)
        if self._should_stop(beat):
            return self._stopped(beat)
        out = self.work / "out"
        shutil.rmtree(out, ignore_errors=True)  # a half-written folder of a killed attempt
        concepts_erased = [*base.concepts_erased, *(c for c in job.concepts if c not in base.concepts_erased)]
        unlearning.erase(
            folder, job.concepts, out, method=job.method, preserve=job.preserve, prompts=job.prompts,
            hyperparameters=job.hyperparameters, seed=job.seed, cache_dir=self.settings.cache_dir,
            state_dir=self._restore_state(), erased=list(base.concepts_erased), audit=job.audit or DEFAULT_AUDIT,
            callbacks=unlearning.Callbacks(on_progress=reporter.on_progress, on_event=reporter.on_event,
                                           should_stop=lambda: self._should_stop(beat),
                                           on_state_saved=self._upload_state),
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
        self._record_throughput(job, base, reporter)
        return Outcome(jobs.SUCCEEDED, result={"model": job.base_model, "version": version.version})

    def _estimate(self, job: Job, base) -> dict[str, float] | None:
        """Seconds per stage by the throughput recorded so far (for the progress events' ETA)."""
        parameters = estimates.unet_parameters(base.files)
        try:
            return self.call(estimates.estimate, job.base_model, job.base_version, parameters, throughput.job_work(job))
        except Exception as error:  # an ETA is not worth failing or delaying a job for
            log.warning("job %s: no estimate (%s: %s)", job.id, type(error).__name__, error)
            return None

    def _record_throughput(self, job: Job, base, reporter: Reporter) -> None:
        """Keep what this job measured for later estimates; only a first attempt ran every stage whole."""
        reporter.clock.stop()
        if job.attempt != 1:
            return
        try:
            self.call(throughput.record, job, base, reporter.clock.seconds, reporter.latents_drawn,
                      throughput.worker_kind(), reporter.erasure_checked)
        except Exception as error:
            log.warning("job %s: its throughput was not recorded (%s: %s)", job.id, type(error).__name__, error)

    def _library_event(self, type: str, message: str, data: dict) -> None:
        stored_type, level = stored_event(type)
        self.call(jobs.add_event, self.job_id, stored_type, message, data, level=level)

    def _should_stop(self, beat: Heartbeat) -> bool:
        self._notice_cancel(beat)
        return not beat.keep_going or shutdown.requested()

    def _notice_cancel(self, beat: Heartbeat) -> None:
        """Read the job's status (not renewing the lease) if the last read is CANCEL_POLL_S old."""
        now = time.monotonic()
        if now - self._status_read_at < CANCEL_POLL_S or not beat.keep_going:
            return
        self._status_read_at = now
        try:
            status = self.call(lambda session: session.scalar(select(Job.status).where(Job.id == self.job_id)))
        except TRANSIENT:
            return  # the heartbeat deals with a database out of reach
        except Exception:
            log.exception("job %s: reading its status failed; the heartbeat still brings a cancel", self.job_id)
            return
        if status == jobs.CANCELLING:
            beat.status = status

    def _stopped(self, beat: Heartbeat, step: int = 0) -> Outcome:
        """Stopped on request: cancelled; handed back, its worker shutting down (`step`: where it
        stopped); or (lease lost) left to the worker that has it now."""
        if beat.status == jobs.CANCELLING:
            return Outcome(jobs.CANCELLED)
        if shutdown.requested() and beat.status == jobs.RUNNING:
            if self._hand_back(step):
                return Outcome(None)
            beat.beat()  # not running under this worker any more: cancelled meanwhile?
            if beat.status == jobs.CANCELLING:
                return Outcome(jobs.CANCELLED)
        log.warning("job %s: lease lost (status %s); stopping without a result", self.job_id, beat.status)
        return Outcome(None)

    def _hand_back(self, step: int) -> bool:
        """Queue the job again now, for another worker to resume from the stored state (the
        worker's main process publishes it as it exits: workers/shutdown.py)."""
        try:
            released = retry_db(lambda: self.call(jobs.release, self.job_id, self.worker, step),
                                deadline_s=HAND_BACK_DEADLINE_S, what=f"release {self.job_id}")
        except Exception as error:
            log.warning("job %s: could not hand it back (%s); it goes back once its lease is stale",
                        self.job_id, type(error).__name__)
            return False
        if released:
            log.info("job %s: shutting down at step %d; queued again", self.job_id, step)
        return released

    def _restore_state(self) -> Path:
        """A fresh local state folder, holding the job's stored state if an earlier attempt saved one.

        The store's copy is the one to resume from, never what an older attempt left on this disk.
        A store that does not answer fails this attempt (a retry resumes later) rather than
        start over from step 0.
        """
        from unlearning.api import STATE_FILE

        state_dir = self.work / "state"
        shutil.rmtree(state_dir, ignore_errors=True)
        if self.storage.get_object(state_key(self.job_id), state_dir / STATE_FILE):
            log.info("job %s: resuming from its stored state", self.job_id)
        return state_dir

    def _upload_state(self, state_file: Path) -> None:
        """Keep the state just saved in the store, for whichever worker runs the job next.

        A failed upload is logged and does not stop the job: the next save uploads again, and
        until then the store keeps the previous state (a later attempt resumes from there).
        """
        try:
            self.storage.put_object(state_key(self.job_id), state_file)
        except Exception as error:
            log.warning("job %s: could not upload its state (%s: %s); the next save tries again",
                        self.job_id, type(error).__name__, error)

    def _forget_state(self) -> None:
        try:
            self.storage.delete_object(state_key(self.job_id))
        except Exception as error:
            log.warning("job %s: could not delete its stored state (%s); it stays behind", self.job_id, error)

    def _conclude(self, job: Job, outcome: Outcome) -> str | None:
        if outcome.status is None:
            return None  # the stored state stays, for the next attempt
        if outcome.status == jobs.SUCCEEDED:
            ended = jobs.SUCCEEDED  # by the transaction that published its version
        else:
            ended = self._finish(job, outcome)
        if not ended:
            log.warning("job %s had already ended or changed hands; left as it is", job.id)
            return None
        self._forget_state()
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
