"""The Celery app, built from the settings. Imports no torch: the gateway imports it to publish.

Two brokers, one code path:
- distributed: Redis (`LETHE_BROKER_URL=redis://...`);
- embedded: kombu's serverless `filesystem://` transport, messages as files under
  `<LETHE_DATA_DIR>/broker/` (when the broker URL is empty or `filesystem://`).

Rules for hour-long GPU jobs (ARCHITECTURE.md, "Celery rules"): one process per GPU
(`-c 1`), a dedicated `gpu` queue, a fresh child per task, no CUDA in the parent.

Acknowledgement: EARLY. A message is acked when its task starts, so nothing sits unacked
past Redis' visibility timeout however long the job runs, and nothing is re-delivered
behind our back. With `worker_disable_prefetch` a busy worker reserves no second message
(a reserved message would wait unacked for the whole job). Crashes are the database's
business: the job row holds a lease renewed by a heartbeat, the reconciler puts a stale
`running` job back to `queued` and publishes it again, and the atomic `queued -> running`
claim drops any duplicate message.

A fresh child per task has one cost: Celery's prefork pool forks the replacement child on
its 5-second maintenance tick, so a job queued right behind another may wait up to 5 s
more before it starts (an idle worker claims within tens of milliseconds).
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from workers.queue import GPU_QUEUE

EMBEDDED_SCHEMES = ("", "filesystem://")


def is_embedded_broker(broker_url: str | None) -> bool:
    return (broker_url or "") in EMBEDDED_SCHEMES


def filesystem_broker_folder(data_dir: Path) -> Path:
    """Where the embedded transport keeps its message files (one folder: in == out)."""
    return Path(data_dir) / "broker" / "messages"


def _broker_options(settings) -> tuple[str, dict]:
    if is_embedded_broker(settings.broker_url):
        messages = filesystem_broker_folder(settings.data_dir)
        control = messages.parent / "control"
        for folder in (messages, control):
            folder.mkdir(parents=True, exist_ok=True)
        return "filesystem://localhost/", {  # a host, or kombu warns on every connection
            "data_folder_in": str(messages),
            "data_folder_out": str(messages),
            "control_folder": str(control),
            "polling_interval": 0.1,  # the transport polls the folder; default is 1 s
        }
    # Fail fast when Redis is away: the gateway keeps the job `queued` and the
    # reconciler publishes it later, so a publish must not hang a request.
    return settings.broker_url, {"socket_connect_timeout": 2, "socket_timeout": 10}


def make_celery(settings) -> Celery:
    """The Celery app for `settings` (needs `broker_url` and `data_dir`)."""
    broker_url, transport_options = _broker_options(settings)
    app = Celery("lethe", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        task_default_queue=GPU_QUEUE,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=not is_embedded_broker(settings.broker_url),  # Redis-only option
        worker_concurrency=1,
        worker_max_tasks_per_child=1,
        task_ignore_result=True,  # progress lives in the database, not a result backend
        result_backend=None,
        worker_send_task_events=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app
