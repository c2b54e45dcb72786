"""What routes receive: the app's parts, a database session, and the authenticated caller,
counted against the request rates (service/limits.py).

The session lives only as long as the route function: it is closed (its connection back in
the pool) before the response is sent, so a client that reads slowly, or a stream that lasts
as long as a job, holds no database connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from service import idempotency
from service.auth import Caller, authenticate
from service.limits import RateLimits
from service.metrics import Metrics
from service.problems import Problem, field_problem
from service.reads import JobReads
from service.settings import Settings
from service.storage import Storage


STREAM_POLL_THREADS = 8
DOWNLOAD_READ_THREADS = 16


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
    job_reads: JobReads
    # Streams last as long as their clients and jobs; the threads they borrow (an event
    # stream's database poll, a download's storage read) come from these small pools, so no
    # number of streams can take every thread that ordinary requests run in (anyio's 40).
    stream_polls: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(STREAM_POLL_THREADS))
    download_reads: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(DOWNLOAD_READ_THREADS))
    rate_limits: RateLimits | None = None  # None: built from the settings

    def __post_init__(self) -> None:
        if self.rate_limits is None:
            self.rate_limits = RateLimits(self.settings)


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
    """The caller of `Authorization: Bearer <key>` (the scheme is declared in the OpenAPI document),
    within its tenant's request rate; 401 without a valid key, 429 past a limit."""
    parts = request.app.state.parts
    address = request.client.host if request.client else "unknown"
    return await parts.rate_limits.run(_admit, parts, request.headers.get("authorization"), address)


def _admit(parts: Parts, header: str | None, address: str) -> Caller:
    limits = parts.rate_limits
    limits.refuse_blocked_address(address)
    caller = authenticate(parts.keys, header)
    if caller is None:
        limits.count_auth_failure(address)
        detail = "missing API key" if not header else "wrong API key"
        raise Problem(401, detail, [{"field": "Authorization", "message": detail}], headers={"WWW-Authenticate": "Bearer"})
    limits.take_request(caller.tenant)
    return caller


async def get_admin(caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    if not caller.admin:
        raise Problem(403, "this route needs an admin key", [{"field": "Authorization", "message": "not an admin key"}])
    return caller


async def get_idempotency_key(
    idempotency_key: Annotated[str | None, Header(description="1 to 255 printable ASCII characters.")] = None,
) -> str | None:
    try:
        return idempotency.parse_key(idempotency_key)
    except ValueError as error:
        raise field_problem("Idempotency-Key", str(error), status=400, code="invalid_header") from None


PartsDep = Annotated[Parts, Depends(get_parts)]
# scope="function": closed when the route function returns, before any byte of the response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
CallerDep = Annotated[Caller, Depends(get_caller)]
AdminDep = Annotated[Caller, Depends(get_admin)]
IdempotencyKeyDep = Annotated[str | None, Depends(get_idempotency_key)]
