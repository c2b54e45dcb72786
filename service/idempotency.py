"""Idempotency keys: the first request with a key reserves it; later ones see what it became.

A reservation is a row committed before the job exists; the job's creation fills in its id
in the same transaction as the job. A row without a job therefore means "still being
processed" (409), unless it is older than the abandon delay (its request died).
"""

from __future__ import annotations

import hashlib
import json
import re
import time

from pydantic import BaseModel
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.models import IdempotencyKey

# Printable ASCII, as the IETF draft's sf-string (quotes optional here); the column holds 255.
KEY = re.compile(r"[\x20-\x7e]{1,255}")


def parse_key(header: str | None) -> str | None:
    """The key of an `Idempotency-Key` header (None without one); ValueError if it is no valid key."""
    if header is None:
        return None
    key = header.strip()
    if not KEY.fullmatch(key):
        raise ValueError("must be 1 to 255 printable ASCII characters")
    return key


def body_hash(body: dict) -> str:
    """The hash of a validated body: the same JSON however it was spaced or ordered."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def request_hash(body: BaseModel) -> str:
    """The hash of the fields the caller sent (validated, so normalised), defaults left out: a
    request replayed after the server added an optional field still matches its first send."""
    return body_hash(body.model_dump(mode="json", exclude_unset=True))


def reserve(session: Session, tenant: str, key: str, digest: str, abandon_after_s: float) -> IdempotencyKey | None:
    """None: the key is now reserved for this request. Otherwise the row of an earlier request."""
    now = time.time()
    session.add(IdempotencyKey(tenant=tenant, key=key, body_hash=digest, job_id=None, created_at=now))
    try:
        session.commit()
        return None
    except IntegrityError:
        session.rollback()
    row = session.get(IdempotencyKey, (tenant, key), populate_existing=True)
    if row is None:  # released meanwhile: try once more
        return reserve(session, tenant, key, digest, abandon_after_s)
    if row.job_id is None and row.created_at < now - abandon_after_s and _take_over(session, row, digest, now):
        return None
    return row


def release(session: Session, tenant: str, key: str) -> None:
    """Drop a reservation whose request failed before creating its job."""
    session.rollback()
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.tenant == tenant, IdempotencyKey.key == key, IdempotencyKey.job_id.is_(None))
    )
    session.commit()


def link(session: Session, tenant: str, key: str, job_id: str) -> None:
    """Point the reservation at its job (inside the job's own transaction: no commit here)."""
    session.execute(
        update(IdempotencyKey).where(IdempotencyKey.tenant == tenant, IdempotencyKey.key == key).values(job_id=job_id)
    )


def _take_over(session: Session, row: IdempotencyKey, digest: str, now: float) -> bool:
    taken = session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.tenant == row.tenant, IdempotencyKey.key == row.key, IdempotencyKey.job_id.is_(None),
               IdempotencyKey.created_at == row.created_at)
        .values(body_hash=digest, created_at=now)
    ).rowcount  # fmt: skip
    session.commit()
    return taken == 1
