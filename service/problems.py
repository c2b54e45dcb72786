"""RFC 9457 problem details: the only shape of an error a client ever sees.

`Problem` is raised by routes and dependencies; the handlers installed by `install` turn it,
FastAPI's validation errors, Starlette's HTTP errors and any unexpected exception into
`application/problem+json` (`type`, `title`, `status`, `detail`, `instance`, `errors`).
A database that does not answer is a 503 (retry), and so is one whose disk is full, saying
so; any other unexpected exception is logged here and answered with a bare 500. No stack trace ever leaves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDocument(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] = []


class Problem(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict] | None = None, code: str | None = None, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors or [], headers
        self.code = code or _slug(status)


def field_problem(field: str, message: str, status: int = 422, code: str = "invalid_request") -> Problem:
    return Problem(status, f"{field}: {message}", [{"field": field, "message": message}], code)


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": f"urn:lethe:problem:{problem.code}",
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        "errors": problem.errors,
    }
    return JSONResponse(body, status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, problem_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [_field_error(e) for e in error.errors()]
    if any(e.get("type") == "json_invalid" for e in error.errors()):
        detail = "the body is not valid JSON"
        return problem_response(request, Problem(400, detail, [{"field": "body", "message": detail}], "malformed_json"))
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(request, Problem(422, detail, errors, "invalid_request"))


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    return problem_response(request, Problem(error.status_code, detail, headers=error.headers))


async def _database_error(request: Request, error: DBAPIError) -> JSONResponse:
    if not error.connection_invalidated and not isinstance(error, (OperationalError, InterfaceError)):
        return await _unexpected_error(request, error)
    if _disk_full(error):
        log.error("database disk full on %s %s: %s", request.method, request.url.path, error.orig)
        problem = Problem(503, "the server's disk is full: the database cannot write; retry later", code="no_space",
                          headers={"Retry-After": "60"})  # fmt: skip
        return problem_response(request, problem)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error.orig)
    problem = Problem(503, "the database is not answering; retry shortly", code="unavailable", headers={"Retry-After": "5"})
    return problem_response(request, problem)


def _disk_full(error: DBAPIError) -> bool:
    """SQLite's SQLITE_FULL, or PostgreSQL's disk_full (SQLSTATE 53100)."""
    return getattr(error.orig, "sqlstate", None) == "53100" or "database or disk is full" in str(error.orig)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(request, Problem(500, "internal error", code="internal"))


def _field_error(error: dict) -> dict:
    location = list(error.get("loc", ()))
    if location and location[0] in ("body", "query", "path", "header"):  # where it came from, not a field
        location = location[1:]
    field = ""
    for part in location:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return {"field": field or "body", "message": message}


def _slug(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
