"""Engine, sessions and migrations.

`migrate(url)` brings a database to the newest schema with Alembic, configured in code
(no alembic.ini): the scripts are in `service/migrations/`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# One kept connection per thread that may hold a session at once (anyio's 40 for the routes,
# 8 for event streams: service/api/deps.py), so that a burst opens no connection of the pool's
# overflow: each one opened and closed again cost a request its connect and its pragmas, the
# tail of GET /v1/jobs/{id}. SQLite connections are cheap to keep.
SQLITE_POOL_SIZE = 48


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and a busy timeout so gateway and worker share it."""
    if url.startswith("sqlite"):
        _make_sqlite_folder(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: store functions commit and return them.
    return sessionmaker(engine, expire_on_commit=False)


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision (creating it if empty)."""
    if url.startswith("sqlite"):
        _make_sqlite_folder(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL is kept in the file. Set again on every new connection, it made concurrent readers
    # wait in SQLite's busy handler (sleeps of up to 100 ms): the p99 of GET /v1/jobs/{id}.
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _make_sqlite_folder(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
