"""Publishing a job: the one call the gateway makes into the worker side.

The message carries only the job id (the task id is the job id too); the worker re-reads
everything from the database, which is the source of truth.
"""

from __future__ import annotations

import logging

GPU_QUEUE = "gpu"
RUN_JOB = "lethe.run_job"

log = logging.getLogger(__name__)


def enqueue(app, job_id: str) -> bool:
    """Publish `job_id` on the `gpu` queue. Returns False (and logs) if the broker is away.

    Never raises for a broker outage: the job row stays `queued`, and the reconciler
    publishes it again later (ARCHITECTURE.md, step 1). A duplicate message is harmless,
    the worker's atomic claim drops it.
    """
    try:
        app.send_task(RUN_JOB, args=[job_id], task_id=job_id, queue=GPU_QUEUE)
    except Exception as error:  # kombu raises OperationalError, redis raises its own
        log.warning("could not publish job %s: %s", job_id, error)
        return False
    return True


def waiting_messages(app) -> int:
    """How many messages wait on the `gpu` queue (0 when the broker has no such queue yet)."""
    from kombu.exceptions import ChannelError

    with app.connection_for_write() as connection:
        try:
            return connection.default_channel.queue_declare(queue=GPU_QUEUE, passive=True).message_count
        except ChannelError:  # Redis keeps no empty list: an empty queue "does not exist"
            return 0
