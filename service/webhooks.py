"""Webhooks: who may be called (the URL check), how a call is signed, and the delivery log.

A job may subscribe a URL to some of its terminal events. The gateway only checks and records
the subscription; the transaction that ends a job adds one `WebhookDelivery` row when the job's
status is one of its events (`service.jobs`), and the workers post it (workers/webhook_delivery.py),
retrying with a doubling wait, each attempt logged as a `WebhookAttempt`.

Signing follows the Standard Webhooks specification (https://www.standardwebhooks.com), done by
its reference package: headers `webhook-id` (the delivery's id, the same on every attempt),
`webhook-timestamp` and `webhook-signature`; the body is
`{"type": "job.succeeded", "timestamp": "<ISO 8601>", "data": <the job as GET /v1/jobs/{id} shows it>}`.

A URL is refused when it is not http(s), carries credentials, or its host is or resolves to
a private, loopback, link-local, multicast, reserved or unspecified address (unless the
server allows private ones); the check runs again before every post, since a name may
resolve elsewhere by then.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import secrets
import socket
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service.models import Job, WebhookAttempt, WebhookDelivery
from service.problems import field_problem

EVENTS = ("succeeded", "failed", "cancelled")  # the job statuses a webhook may subscribe to
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
CLAIM_HOLD_S = 30.0  # an attempt's claim lapses after this (a worker that died while posting)


# -- the secret and the URL ------------------------------------------------------------------


def check_secret(secret: str) -> bytes:
    """The key of a `whsec_<base64>` secret; ValueError says what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"the webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret must be whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"the webhook secret must hold 24 to 64 bytes, not {len(key)}")
    return key


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` may not be called, or None when it may (resolves its host name)."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters, not {len(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        return f"is not a valid URL ({error})"
    if parts.scheme not in ("http", "https"):
        return f"must be an http or https URL, not {parts.scheme or 'one without a scheme'!r}"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if not parts.hostname:
        return "has no host"
    return None if allow_private else _private_host_problem(parts.hostname, port)


def _private_host_problem(host: str, port: int) -> str | None:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return f"host {host!r} cannot be resolved"
    for address in sorted(addresses):
        if _is_private(ipaddress.ip_address(address.split("%", 1)[0])):
            return f"host {host!r} is (or resolves to) the non-public address {address}"
    return None


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified)  # fmt: skip


def subscription(webhook, settings) -> dict | None:
    """The job's subscription from its body's `webhook` (None: none); 422 naming the bad field."""
    if webhook is None:
        return None
    if not settings.webhook_secret.get_secret_value():
        raise field_problem("webhook", "webhooks are not configured on this server (it has no LETHE_WEBHOOK_SECRET)",
                            code="webhooks_not_configured")
    if (problem := url_problem(webhook.url, settings.webhook_allow_private)) is not None:
        raise field_problem("webhook.url", problem, code="invalid_webhook")
    return {"url": webhook.url, "events": list(webhook.events)}


# -- signing -----------------------------------------------------------------------------------


def payload(event: str, finished_at: float, job: dict) -> str:
    """The body of a delivery: the same bytes on every attempt."""
    timestamp = datetime.fromtimestamp(finished_at, timezone.utc).isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event, "timestamp": timestamp, "data": job}, separators=(",", ":"))


def signed_headers(secret: str, delivery_id: str, body: str, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at posting `body`."""
    from standardwebhooks import Webhook

    sent_at = datetime.fromtimestamp(int(now), timezone.utc)
    signature = Webhook(secret).sign(delivery_id, sent_at, body)
    return {"webhook-id": delivery_id, "webhook-timestamp": str(int(now)), "webhook-signature": signature,
            "content-type": "application/json"}


# -- the delivery log --------------------------------------------------------------------------


def add_delivery(session: Session, job_id: str, status: str) -> None:
    """In the caller's transaction (the one ending the job): a delivery of `job.<status>`, if the
    job subscribed to that event."""
    webhook = session.scalar(select(Job.webhook).where(Job.id == job_id))
    if not webhook or status not in webhook.get("events", ()):
        return
    now = time.time()
    session.add(WebhookDelivery(
        id=f"msg_{secrets.token_hex(12)}", job_id=job_id, event=f"job.{status}", url=webhook["url"],
        status=PENDING, attempts=0, created_at=now, next_attempt_at=now,
    ))  # fmt: skip


def due(session: Session, limit: int = 20) -> list[str]:
    """Ids of pending deliveries whose next attempt is due and that no worker holds, oldest first."""
    now = time.time()
    query = (select(WebhookDelivery.id)
             .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, _unclaimed(now))
             .order_by(WebhookDelivery.next_attempt_at).limit(limit))  # fmt: skip
    ids = list(session.scalars(query))
    session.commit()
    return ids


def claim(session: Session, delivery_id: str) -> WebhookDelivery | None:
    """Take the delivery for one attempt in ONE atomic UPDATE; None: another worker has it, or it
    is no longer due."""
    now = time.time()
    taken = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
               WebhookDelivery.next_attempt_at <= now, _unclaimed(now))
        .values(claimed_until=now + CLAIM_HOLD_S)
    ).rowcount  # fmt: skip
    session.commit()
    return session.get(WebhookDelivery, delivery_id, populate_existing=True) if taken == 1 else None


def _unclaimed(now: float):
    return or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now)


def record_attempt(session: Session, delivery: WebhookDelivery, started_at: float, duration_s: float,
                   status_code: int | None, error: str | None, settings) -> str:
    """Log one attempt and move the delivery on (delivered, retried later, or given up); commit.
    Returns its new status."""
    session.add(WebhookAttempt(delivery_id=delivery.id, started_at=started_at, duration_s=duration_s,
                               status_code=status_code, error=error))
    attempts = delivery.attempts + 1
    now = time.time()
    values = {"attempts": attempts, "claimed_until": None}
    if status_code is not None and 200 <= status_code < 300:
        values |= {"status": DELIVERED, "finished_at": now}
    elif attempts >= settings.webhook_max_attempts or now - delivery.created_at >= settings.webhook_give_up_after_s:
        values |= {"status": FAILED, "finished_at": now}
    else:
        values["next_attempt_at"] = now + retry_wait(attempts, settings)
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))
    session.commit()
    return values.get("status", PENDING)


def retry_wait(attempts: int, settings) -> float:
    """Seconds before the next attempt after `attempts` failed ones: first, 2 x first, ... capped."""
    return min(settings.webhook_first_retry_s * 2 ** min(attempts - 1, 32), settings.webhook_max_retry_s)


def list_deliveries(session: Session, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The job's deliveries, oldest first, each with its attempts in order."""
    deliveries = list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.created_at)))
    attempts = session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        .order_by(WebhookAttempt.id))  # fmt: skip
    by_delivery: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    for attempt in attempts:
        by_delivery[attempt.delivery_id].append(attempt)
    return [(d, by_delivery[d.id]) for d in deliveries]
