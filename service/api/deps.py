"""What routes receive: the app's parts, a database session, and the authenticated caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from service.auth import Caller, authenticate
from service.metrics import Metrics
from service.problems import Problem
from service.settings import Settings
from service.storage import Storage


@dataclass
class Parts:
    """Everything a request may need, built once by `create_app`."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    keys: dict[str, Caller]
    publish: Callable[[str], bool]  # job id -> whether the broker took the message
    check_broker: Callable[[], None]
    metrics: Metrics


# The dependencies below do no blocking I/O, so they are `async`: FastAPI would run a plain
# `def` dependency in the thread pool, one thread hop each, per request.


async def get_parts(request: Request) -> Parts:
    return request.app.state.parts


# `get_session` and `get_caller` take the request itself rather than other dependencies:
# each level of dependencies costs FastAPI time on every request (GET /v1/jobs/{id} is hot).


async def get_session(request: Request) -> AsyncIterator[Session]:
    # A session connects lazily, inside the (threaded) route; closing only returns the connection.
    with request.app.state.parts.sessions() as session:
        yield session


async def get_caller(request: Request) -> Caller:
    """The caller of `Authorization: Bearer <key>` (the scheme is declared in the OpenAPI document)."""
    header = request.headers.get("authorization")
    caller = authenticate(request.app.state.parts.keys, header)
    if caller is None:
        detail = "missing API key" if not header else "wrong API key"
        raise Problem(401, detail, [{"field": "Authorization", "message": detail}], headers={"WWW-Authenticate": "Bearer"})
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if not caller.admin:
        raise Problem(403, "this route needs an admin key", [{"field": "Authorization", "message": "not an admin key"}])
    return caller


PartsDep = Annotated[Parts, Depends(get_parts)]
SessionDep = Annotated[Session, Depends(get_session)]
CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(get_admin)]
