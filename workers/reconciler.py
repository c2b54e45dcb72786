"""The reconciler: no job is lost, whatever happens to a worker or to a message.

Each round, in one thread of every worker process:
1. a `running` job whose lease went stale (worker killed, machine lost) goes back to
   `queued` with its attempt count kept, and is published again: the next worker resumes
   from the job's stored state. After the last attempt it fails, and a stale `cancelling`
   job ends `cancelled`; their stored states are deleted (nobody will resume them);
2. a `queued` job published long ago and still unclaimed lost its message (the broker
   lost it, or a worker died between taking and claiming it): it is published again.
   Only when the broker holds fewer messages than there are queued jobs, so that a long
   but healthy queue is not flooded with duplicates.
Several reconcilers may run at once: the job store's updates are atomic and a duplicate
message is dropped by the worker's claim.
"""

from __future__ import annotations

import logging
import threading

from service import jobs
from service.storage import open_storage
from workers.db_retry import TRANSIENT
from workers.job_run import state_key
from workers.queue import enqueue, waiting_messages

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, settings, app, sessions, storage=None):
        self.settings = settings
        self.app = app
        self.sessions = sessions
        self.storage = storage or open_storage(settings)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lethe-reconciler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self.settings.reconcile_interval_s):
            try:
                self.run_once()
            except TRANSIENT as error:
                log.warning("reconciler: database unreachable (%s); next round", type(error).__name__)
            except Exception:  # one bad round must not end the thread
                log.exception("reconciler round failed")

    def run_once(self) -> list[str]:
        """One round; returns the ids published again."""
        with self.sessions() as session:
            changed = jobs.requeue_stale(session, self.settings.lease_s, self.settings.max_attempts)
        requeued = [job_id for job_id, status in changed.items() if status == jobs.QUEUED]
        self._forget_states([job_id for job_id, status in changed.items() if status in jobs.TERMINAL])
        published = [job_id for job_id in [*requeued, *self._lost_messages()] if self._publish(job_id)]
        if published:
            log.info("reconciler published again: %s", ", ".join(published))
        return published

    def _forget_states(self, ended: list[str]) -> None:
        for job_id in ended:
            try:
                self.storage.delete_object(state_key(job_id))
            except Exception as error:  # a leftover state costs space, never correctness
                log.warning("reconciler: could not delete the stored state of %s (%s)", job_id, error)

    def _lost_messages(self) -> list[str]:
        with self.sessions() as session:
            unclaimed = jobs.queued_unclaimed(session, self.settings.republish_after_s)
            queued = jobs.count_by_status(session)[jobs.QUEUED]
        if not unclaimed or waiting_messages(self.app) >= queued:
            return []
        return unclaimed

    def _publish(self, job_id: str) -> bool:
        if not enqueue(self.app, job_id):
            return False
        with self.sessions() as session:
            jobs.mark_enqueued(session, job_id)
        return True
