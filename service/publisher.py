"""The one place where the gateway reaches the broker: publish a job's message, check the broker."""

from __future__ import annotations

from collections.abc import Callable

from service.settings import Settings


def make_broker_parts(settings: Settings) -> tuple[Callable[[str], bool], Callable[[], None]]:
    """(publish(job_id) -> whether the broker took it, check() raising if the broker does not answer)."""
    from workers.app import make_celery
    from workers.queue import enqueue

    celery = make_celery(settings)

    def publish(job_id: str) -> bool:
        return enqueue(celery, job_id)

    def check() -> None:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)

    return publish, check
