"""The webhook sender: each worker process posts the deliveries due, in a thread of its own.

Every `webhook_poll_s` it lists the pending deliveries whose next attempt is due, claims each
one atomically (service/webhooks.py: two workers never post the same attempt at once) and
posts it: the job as `GET /v1/jobs/{id}` shows it, signed per Standard Webhooks. Each attempt
is logged with its status code or error and its duration; a failure is tried again after a
doubling wait. It runs beside the jobs and never touches them: a receiver that is slow,
down or wrong costs this thread time, never a job its result.

Timeouts: 2 s to connect, 5 s for each read and write; the answer's body is not read. Redirects are not followed (a public
URL must not lead the server to a private one), and the URL's host is checked again before
each post unless private hosts are allowed.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from service import jobs, webhooks
from service.api.present import job_public
from service.models import WebhookDelivery
from workers.db_retry import TRANSIENT

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class WebhookSender:
    def __init__(self, settings, sessions):
        self.settings = settings
        self.sessions = sessions
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lethe-webhooks", daemon=True)

    def start(self) -> None:
        if not self.settings.webhook_secret.get_secret_value():
            log.info("webhooks are not configured (no LETHE_WEBHOOK_SECRET): this worker posts none")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            while not self._stopped.wait(self.settings.webhook_poll_s):
                try:
                    self.run_once(client)
                except TRANSIENT as error:
                    log.warning("webhooks: database unreachable (%s); next round", type(error).__name__)
                except Exception:  # one bad round must not end the thread
                    log.exception("webhook round failed")

    def run_once(self, client: httpx.Client) -> int:
        """Post every delivery due that this worker could claim; returns how many it posted."""
        with self.sessions() as session:
            due = webhooks.due(session)
        posted = 0
        for delivery_id in due:
            if self._stopped.is_set():
                break
            with self.sessions() as session:
                delivery = webhooks.claim(session, delivery_id)
                if delivery is not None:
                    self._attempt(session, client, delivery)
                    posted += 1
        return posted

    def _attempt(self, session, client: httpx.Client, delivery: WebhookDelivery) -> None:
        started, clock = time.time(), time.monotonic()
        status_code, error = self._post(session, client, delivery, started)
        duration = time.monotonic() - clock
        status = webhooks.record_attempt(session, delivery, started, duration, status_code, error, self.settings)
        log.info("webhook %s (%s of %s), attempt %d: %s -> %s", delivery.id, delivery.event, delivery.job_id,
                 delivery.attempts + 1, status_code or error, status)

    def _post(self, session, client: httpx.Client, delivery: WebhookDelivery, now: float) -> tuple[int | None, str | None]:
        """(the receiver's status code, None) or (None, what went wrong)."""
        if not self.settings.webhook_allow_private:
            if (problem := webhooks.url_problem(delivery.url, allow_private=False)) is not None:
                return None, f"not posted: the URL {problem}"
        body = self._body(session, delivery)
        headers = webhooks.signed_headers(self.settings.webhook_secret.get_secret_value(), delivery.id, body, now)
        try:
            # Only the status line is wanted: the receiver's body is never read.
            with client.stream("POST", delivery.url, content=body.encode(), headers=headers) as response:
                return response.status_code, None
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"[:500]

    @staticmethod
    def _body(session, delivery: WebhookDelivery) -> str:
        job = jobs.get_job(session, delivery.job_id)
        return webhooks.payload(delivery.event, job.finished_at or delivery.created_at,
                                job_public(job).model_dump(mode="json"))
