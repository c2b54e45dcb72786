"""Liveness and readiness (database, broker, storage), with no auth; Prometheus metrics behind a token.

`/metrics` shows every tenant's activity (requests by route, jobs by status), so it answers only
`Authorization: Bearer <LETHE_METRICS_TOKEN>`, and not at all (404) while no token is configured.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
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


@router.get("/metrics", response_class=PlainTextResponse, responses={
    401: {"description": "Missing or wrong metrics token."},
    404: {"description": "No metrics token is configured (LETHE_METRICS_TOKEN): the route is off."},
})  # fmt: skip
def metrics(request: Request, parts: PartsDep) -> PlainTextResponse:
    _check_metrics_token(parts.settings.metrics_token.get_secret_value(), request.headers.get("authorization"))
    return PlainTextResponse(parts.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _check_metrics_token(token: str, header: str | None) -> None:
    if not token:
        raise Problem(404, "Not Found", code="not_found")  # as for any path that is not there
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        detail = "missing metrics token" if not header else "wrong metrics token"
        raise Problem(401, detail, [{"field": "Authorization", "message": detail}], headers={"WWW-Authenticate": "Bearer"})


def _ping_database(parts) -> None:
    with parts.sessions() as session:
        session.execute(text("SELECT 1"))
