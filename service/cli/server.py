"""The running parts of `lethe`: `serve` (embedded), `gateway` and `worker` (distributed).

All three read one `Settings()` from the `LETHE_` environment, here at the process edge.
- `lethe serve`: migrations, then one worker as a child process and the gateway in this one
  (the embedded defaults: SQLite, the filesystem broker and local storage under LETHE_DATA_DIR).
- `lethe gateway`: migrations, then the HTTP gateway only.
- `lethe worker`: one Celery worker for one GPU (start one per GPU, on any machine).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

WORKER_STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1


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
    worker_parser.set_defaults(func=worker)


def serve(args) -> int:
    settings = _settings()
    _migrate(settings)
    # Its own session, so that stopping it reaches the task's child process too; and it
    # gets SIGTERM if this process dies without stopping it.
    child = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], start_new_session=True,
                             preexec_fn=_terminate_with_parent)
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

    run_worker(_settings(), name=args.name)
    return 0


def _settings():
    from service.settings import Settings

    return Settings()


def _migrate(settings) -> None:
    from service.db import migrate

    migrate(settings.database_url)


def _run_gateway(settings, host: str, port: int) -> None:
    import uvicorn

    from service.app import create_app

    # Open event streams last as long as their jobs: don't let them hold a shutdown hostage.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _terminate_with_parent() -> None:
    """Linux: ask the kernel to send SIGTERM to this (child) process when its parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: `lethe serve` still stops its worker on a normal exit


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
