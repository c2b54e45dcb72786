"""The lease of a running job, renewed from a background thread, and known to lapse.

The thread calls `renew()` every `interval_s` seconds; `renew` writes the heartbeat and
returns the job's status as the database has it. The training loop reads `keep_going` (no
database access per step) to notice cancellation, a lease taken by another worker, or a
lease that lapsed: no renewal succeeded for `lease_s` seconds (the database is out of
reach), so the reconciler may already have given the job to another worker. A lapse is
final for this run: the heartbeat stops renewing, and the job stops at its next safe point
and publishes nothing.

A failed beat, whatever the exception, is logged and counted as missed; the thread keeps
beating.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from workers.db_retry import TRANSIENT

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, renew: Callable[[], str | None], interval_s: float, lease_s: float):
        self._renew = renew
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._renewed_at = time.monotonic()  # the claim has just taken the lease
        self._lapsed = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lethe-heartbeat", daemon=True)
        self.status: str | None = "running"

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.beat()

    def beat(self) -> None:
        """Renew the lease once; a failure is a missed beat, never the end of the thread."""
        if self.lapsed:
            return  # the job is being given up: renewing would only delay its next owner
        started = time.monotonic()  # the lease the database records starts no later than this
        try:
            status = self._renew()
        except TRANSIENT as error:
            log.warning("heartbeat failed (%s); %.1f s of the lease left", type(error).__name__, self.lease_left_s())
            return
        except Exception:
            log.exception("heartbeat failed; %.1f s of the lease left", self.lease_left_s())
            return
        self.status = status
        self._renewed_at = started

    def lease_left_s(self) -> float:
        return self._lease_s - (time.monotonic() - self._renewed_at)

    @property
    def lapsed(self) -> bool:
        """True once no renewal has succeeded for `lease_s` seconds; then for good."""
        if not self._lapsed and self.lease_left_s() < 0:
            self._lapsed = True
            log.warning("lease lapsed: not renewed for %.1f s (lease %.1f s); the job stops at its next safe point "
                        "and publishes nothing", time.monotonic() - self._renewed_at, self._lease_s)
        return self._lapsed

    @property
    def keep_going(self) -> bool:
        """False once the job is being cancelled, or the lease is no longer ours or lapsed."""
        return self.status == "running" and not self.lapsed
