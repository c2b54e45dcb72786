"""Liveness, readiness (database, broker, storage) and Prometheus metrics. No auth."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from service.api.deps import PartsDep
from service.problems import Problem

router = APIRouter(tags=["health"])


@router.get("/livez")
def livez() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A part does not answer; `errors` names it."}})
def readyz(parts: PartsDep) -> dict:
    checks = {"database": lambda: _ping_database(parts), "broker": parts.check_broker, "storage": parts.storage.check}
    failures = []
    for part, check in checks.items():
        try:
            check()
        except Exception as error:  # any failure means: not ready; its text names the cause
            failures.append({"field": part, "message": f"{type(error).__name__}: {error}"[:300]})
    if failures:
        names = ", ".join(f["field"] for f in failures)
        raise Problem(503, f"not ready: {names} not answering", failures, "not_ready")
    return {"status": "ready", "checks": {part: "ok" for part in checks}}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(parts: PartsDep) -> PlainTextResponse:
    return PlainTextResponse(parts.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _ping_database(parts) -> None:
    with parts.sessions() as session:
        session.execute(text("SELECT 1"))
