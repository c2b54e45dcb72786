"""The running parts of `lethe`: `serve` (embedded), `gateway` and `worker` (distributed).

All three read one `Settings()` from the `LETHE_` environment, here at the process edge.
- `lethe serve`: migrations, then one worker as a child process and the gateway in this one
  (the embedded defaults: SQLite, the filesystem broker and local storage under LETHE_DATA_DIR).
  The worker dies with `serve`, however `serve` ends (even SIGKILL): it watches its parent,
  and once that is gone it shuts down warm (a running job hands itself back), and after
  WORKER_STOP_GRACE_S it kills its process group. A restart never finds a second worker.
- `lethe gateway`: migrations, then the HTTP gateway only.
- `lethe worker`: one Celery worker for one GPU (start one per GPU, on any machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

WORKER_STOP_GRACE_S = 10.0
PARENT_POLL_S = 0.2

log = logging.getLogger(__name__)


def register(subcommands) -> None:
    for name, run, help in (
        ("serve", serve, "run the gateway and one worker on this machine (embedded mode)"),
        ("gateway", gateway, "run the HTTP gateway only (distributed mode)"),
    ):
        parser = subcommands.add_parser(name, help=help, description=help)
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
        parser.set_defaults(func=run)
    worker_help = "run one Celery worker on the gpu queue (one per GPU)"
    worker_parser = subcommands.add_parser("worker", help=worker_help, description=worker_help)
    worker_parser.add_argument("--name", help="worker name (default lethe-<pid>@<host>)")
    worker_parser.add_argument("--exit-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    worker_parser.set_defaults(func=worker)


def serve(args) -> int:
    settings = _settings()
    _migrate(settings)
    # Its own session, so that stopping it reaches the task's child process too; and it
    # stops itself if this process dies without stopping it.
    child = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", "--exit-with-parent", str(os.getpid())],
                             start_new_session=True)
    # uvicorn re-raises SIGTERM once it has shut down: make that an exit that runs `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _run_gateway(settings, args.host, args.port)
    finally:
        _stop(child)
    return 0


def gateway(args) -> int:
    settings = _settings()
    _migrate(settings)
    _run_gateway(settings, args.host, args.port)
    return 0


def worker(args) -> int:
    from workers.worker import run_worker

    if args.exit_with_parent is not None:
        _exit_with_parent(args.exit_with_parent)
    run_worker(_settings(), name=args.name)
    return 0


def _settings():
    from service.settings import Settings

    return Settings()


def _migrate(settings) -> None:
    from service.db import migrate

    migrate(settings.database_url)


def _run_gateway(settings, host: str, port: int) -> None:
    import gc

    import uvicorn

    from service.app import create_app

    app = create_app(settings)
    # What start-up built (about 130,000 objects: modules, routes, schemas) lives as long as the
    # process. Frozen out of the collector's generations, it is no longer walked by each full
    # collection: a pause of 50-150 ms on this machine, which would land on some request.
    gc.collect()
    gc.freeze()
    # Open event streams last as long as their jobs: don't let them hold a shutdown hostage.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _exit_with_parent(parent: int, grace_s: float = WORKER_STOP_GRACE_S) -> None:
    """Stop this worker once `parent` is no longer its parent (it died, even by SIGKILL).

    Not PR_SET_PDEATHSIG alone (used before): its SIGTERM arrives, but Celery's warm shutdown
    waits for the running task, and a task busy where it does not listen for a shutdown
    (materialising a base model, evaluating, publishing) goes on for as long as that takes.
    So, from a thread: SIGTERM (a warm shutdown: a job in its training loop hands itself
    back), then after `grace_s` SIGKILL to this process group, the task's child included. A
    job cut short that way is resumed from its last saved state by the next worker, once its
    lease lapses.
    """

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        log.warning("lethe serve (pid %d) is gone: stopping this worker", parent)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        log.warning("the worker did not stop within %.0f s of lethe serve: killing it", grace_s)
        _kill_own_group()

    threading.Thread(target=watch, name="lethe-parent-watch", daemon=True).start()


def _kill_own_group() -> None:
    if os.getpgid(0) == os.getpid():  # started in a session of its own, as `serve` does
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _stop(child: subprocess.Popen) -> None:
    """Warm shutdown (SIGTERM), then cold (SIGQUIT), then kill the group.

    A job cut short stays `running` with a lease nobody renews: the reconciler of the next
    worker puts it back to `queued` and it resumes from its saved state.
    """
    for sig in (signal.SIGTERM, signal.SIGQUIT):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
