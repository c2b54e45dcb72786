"""The gateway: `create_app(settings)` builds a FastAPI app from its settings (and nothing else).

The database must already be migrated (`service.db.migrate`, done by the `lethe` commands).
The gateway imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import console, openapi, problems
from service.api.deps import Parts
from service.api.routes import files, health, jobs, methods, models
from service.auth import parse_api_keys
from service.body_limit import BodyLimit
from service.db import make_engine, session_factory
from service.metrics import HttpMetrics, Metrics
from service.publisher import make_broker_parts
from service.reads import JobReads
from service.settings import Settings
from service.storage import open_storage


def create_app(settings: Settings, broker: tuple[Callable[[str], bool], Callable[[], None]] | None = None) -> FastAPI:
    """The app for `settings`; `broker` (publish, check) defaults to the Celery broker of the settings."""
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    publish, check_broker = broker or make_broker_parts(settings)
    parts = Parts(
        settings=settings, sessions=sessions, storage=open_storage(settings),
        keys=parse_api_keys(settings.api_keys.get_secret_value()), publish=publish, check_broker=check_broker,
        metrics=Metrics(sessions), job_reads=JobReads(settings.database_url, sessions),
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app):
        yield
        parts.job_reads.close()
        engine.dispose()

    app = FastAPI(
        title="Lethe", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,  # offline docs: openapi.install
        description="Remove concepts from text-to-image diffusion models; download the unlearned weights.",
    )  # fmt: skip
    app.state.parts = parts
    problems.install(app)
    for router in (health.router, models.router, files.router, jobs.router, methods.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=parts.metrics)
    openapi.install(app)
    console.install(app)
    return app
