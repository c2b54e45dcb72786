"""`lethe worker`: one Celery worker process for one GPU, with its reconciler and webhook threads.

The parent process consumes from the `gpu` queue and forks a fresh child for each task
(`-c 1`, max one task per child); only the child touches the GPU. The parent imports the
library (torch, diffusers) once at start, without initialising CUDA, so that each child starts
with it loaded instead of spending seconds (tens on a busy CPU) importing it for every job.
On a warm shutdown (SIGTERM, SIGINT) the parent passes SIGTERM on to the child, whose job
then saves its state and goes back to the queue, and the parent publishes it again once it
has stopped consuming, for another worker to resume (workers/shutdown.py).
"""

from __future__ import annotations

import os
import socket

import logging

from celery import Celery, signals

from service.db import make_engine, session_factory
from workers.app import make_celery
from workers.queue import GPU_QUEUE
from workers.reconciler import Reconciler
from workers.shutdown import forward_to_children, publish_handed_back, running_jobs
from workers.tasks import register_tasks
from workers.webhook_delivery import WebhookSender

log = logging.getLogger(__name__)


def make_worker_app(settings) -> Celery:
    app = make_celery(settings)
    register_tasks(app, settings)
    return app


def run_worker(settings, name: str | None = None, loglevel: str = "INFO") -> None:
    from unlearning.pipeline import import_libraries

    import_libraries()  # before the pool forks its first child; no CUDA call (see the docstring)
    app = make_worker_app(settings)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    reconciler = Reconciler(settings, app, sessions)
    sender = WebhookSender(settings, sessions)
    handing_back: list[str] = []  # the jobs this worker ran when its shutdown began

    def forget_parent_connections(**_):
        # A forked child must never use (or close) the parent's pooled connections.
        engine.dispose(close=False)
        log.debug("task child %d ready", os.getpid())

    def ask_jobs_to_hand_back(**_):  # inside Celery's signal handler: quick, no database or broker
        handing_back.extend(running_jobs())
        forward_to_children()

    def stop(**_):  # consumer stopped, pool done
        reconciler.stop()
        sender.stop()
        publish_handed_back(app, sessions, handing_back)

    signals.worker_ready.connect(lambda **_: (reconciler.start(), sender.start()), weak=False)
    signals.worker_process_init.connect(forget_parent_connections, weak=False)
    signals.worker_shutting_down.connect(ask_jobs_to_hand_back, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)
    app.worker_main([
        "worker", "--queues", GPU_QUEUE, "--concurrency", "1", "--pool", "prefork",
        "--max-tasks-per-child", "1", "--hostname", name or f"lethe-{os.getpid()}@{socket.gethostname()}",
        "--without-mingle", "--without-gossip", "--loglevel", loglevel,
    ])  # fmt: skip
