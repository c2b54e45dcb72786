"""The lease of a running job, renewed from a background thread.

The thread calls `renew()` every `interval_s` seconds; `renew` writes the heartbeat and
returns the job's status as the database has it. The training loop reads `status` (no
database access per step) to notice cancellation or a lost lease.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from workers.db_retry import TRANSIENT

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, renew: Callable[[], str | None], interval_s: float):
        self._renew = renew
        self._interval_s = interval_s
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
        try:
            self.status = self._renew()
        except TRANSIENT as error:
            # The lease outlives a few missed beats; the next beat tries again.
            log.warning("heartbeat failed (%s); will retry", type(error).__name__)

    @property
    def keep_going(self) -> bool:
        """False once the job is being cancelled or the lease is no longer ours."""
        return self.status == "running"
