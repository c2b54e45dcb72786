"""The job read of `GET /v1/jobs/{id}`, the gateway's hottest route: every client that waits
for a job polls it (issue 13: p99 under 20 ms at 200 requests/s).

- SQLite: the read runs inline on the event loop, on a connection that never waits for a lock
  (`timeout=0`): a primary-key lookup, with no hand-over to a worker thread and back. Where it
  would have to wait (SQLITE_BUSY, rare in WAL mode, where readers do not wait for writers), it
  is done again in a worker thread by the gateway's usual, patient connections, so the loop
  itself never sleeps on a lock.
- PostgreSQL: in a worker thread, on connections in autocommit mode, so the read sends no
  BEGIN (only the pool's pre-ping and the query), and no ROLLBACK when the connection goes back
  to the pool (the route's session used to send that from the event loop itself). An async
  engine (psycopg's async connections) was tried first and was far slower under load: p50
  150 ms at 200 requests/s.
"""

from __future__ import annotations

import sqlite3

from anyio import to_thread
from sqlalchemy import create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service import jobs
from service.models import Job


# PostgreSQL connections kept for these reads. More concurrent reads wait in their threads for
# one; a connection opened and closed again per request under a burst (a pool's overflow) costs
# PostgreSQL a new backend process each, and every kept one counts against max_connections.
READ_CONNECTIONS = 20


class JobReads:
    """`await reads.job(job_id, tenant)`: the job, or None if it is missing or another tenant's."""

    def __init__(self, url: str, sessions: sessionmaker[Session]):
        self._patient = sessions  # the gateway's sessions, for a read that must wait
        self._inline = None
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 0, "check_same_thread": False},
                                   isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=0)  # fmt: skip
            event.listen(engine, "connect", _read_only)
            self._engine, self._inline = engine, sessionmaker(engine)
        else:
            engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True,
                                   pool_size=READ_CONNECTIONS, max_overflow=0)  # fmt: skip
            self._engine, self._patient = engine, sessionmaker(engine)

    async def job(self, job_id: str, tenant: str) -> Job | None:
        if self._inline is not None:
            try:
                with self._inline() as session:
                    return jobs.get_job(session, job_id, tenant)
            except OperationalError as error:
                if getattr(error.orig, "sqlite_errorcode", None) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    raise
        return await to_thread.run_sync(self._patient_read, job_id, tenant)

    def _patient_read(self, job_id: str, tenant: str) -> Job | None:
        with self._patient() as session:
            return jobs.get_job(session, job_id, tenant)

    def close(self) -> None:
        self._engine.dispose()


def _read_only(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA query_only=ON")
