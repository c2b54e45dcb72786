"""Liveness and readiness (database, broker, storage, free disk space), with no auth; Prometheus
metrics behind a token.

Readiness wants `LETHE_MIN_FREE_BYTES` free in the data folder (the embedded database, the
broker's files, caches, job folders) and in a local storage folder: a full disk fails jobs
and requests alike, so a gateway on one is not ready.

`/metrics` shows every tenant's activity (requests by route, jobs by status), so it answers only
`Authorization: Bearer <LETHE_METRICS_TOKEN>`, and not at all (404) while no token is configured.
"""

from __future__ import annotations

import hmac
import logging
import shutil
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from service.api.deps import PartsDep
from service.problems import Problem
from service.storage import LocalStorage

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/livez")
def livez() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A part does not answer; `errors` names it."}})
def readyz(parts: PartsDep) -> dict:
    checks = {"database": lambda: _ping_database(parts), "broker": parts.check_broker, "storage": parts.storage.check,
              "disk": lambda: _check_free_space(parts)}  # fmt: skip
    failures = []
    for part, check in checks.items():
        try:
            check()
        except LowDiskSpace as error:
            failures.append({"field": part, "message": str(error)})
        except Exception as error:  # any failure means: not ready
            # The route needs no key: the cause's text (hosts, database names, paths) goes to the log only.
            log.warning("readyz: %s failing: %s: %s", part, type(error).__name__, error)
            failures.append({"field": part, "message": f"does not answer ({type(error).__name__}); the server log says why"})
    if failures:
        names = ", ".join(f["field"] for f in failures)
        raise Problem(503, f"not ready: {names} failing", failures, "not_ready")
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


class LowDiskSpace(Exception):
    pass


def _check_free_space(parts) -> None:
    """LowDiskSpace naming each folder (not its path: /readyz needs no key) with too little space free."""
    wanted = parts.settings.min_free_bytes
    if not wanted:
        return
    folders = {"the data folder": parts.settings.data_dir}
    if isinstance(parts.storage, LocalStorage):
        folders["the storage folder"] = parts.storage.root
    short = [f"{name} has {_size(free)} free, below the {_size(wanted)} of LETHE_MIN_FREE_BYTES"
             for name, folder in folders.items() if (free := _free_bytes(folder)) < wanted]  # fmt: skip
    if short:
        raise LowDiskSpace("; ".join(short))


def _free_bytes(folder: Path) -> int:
    """Free space for unprivileged writers on the file system of `folder` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
