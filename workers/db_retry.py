"""Riding out a short database outage: retry a call with a bounded exponential backoff.

Only connection-level failures are retried (the server went away, a connection was cut);
an error in the statement itself is raised at once.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from sqlalchemy import exc

T = TypeVar("T")
TRANSIENT = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError)

log = logging.getLogger(__name__)


def retry_db(call: Callable[[], T], *, deadline_s: float = 60.0, first_wait_s: float = 0.2,
             max_wait_s: float = 5.0, what: str = "database call") -> T:
    """`call()`, retried on connection failures until `deadline_s` has passed, then re-raised."""
    give_up_at = time.monotonic() + deadline_s
    wait = first_wait_s
    while True:
        try:
            return call()
        except TRANSIENT as error:
            if time.monotonic() + wait > give_up_at:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, type(error).__name__, wait)
            time.sleep(wait)
            wait = min(wait * 2, max_wait_s)
