"""`lethe serve` and its worker live and die together: real processes, SIGKILL, a restart.

The worker's processes are found in /proc by their command line and their LETHE_DATA_DIR.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service import jobs
from tests.workers.conftest import make_deployment
from tests.workers.test_worker_jobs import wait_for_status
from tests.workers.worker_harness import start_http, wait_until

GONE_WITHIN_S = 15.0


def worker_processes(data_dir: Path) -> dict[int, int]:
    """{pid: parent pid} of every `lethe worker` process (main and pool children) serving `data_dir`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
            state, parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:  # it ended meanwhile
            continue
        serves_it = f"LETHE_DATA_DIR={data_dir}".encode() in environ
        if b"service.cli" in command and b"worker" in command and serves_it and state != "Z":
            found[int(proc.name)] = int(parent)
    return found


def main_workers(processes: dict[int, int]) -> list[int]:
    """The worker main processes: those whose parent is not a worker process itself."""
    return [pid for pid, parent in processes.items() if parent not in processes]


@pytest.mark.slow
def test_a_killed_serve_takes_its_worker_along_and_a_restart_runs_one_worker_that_resumes_the_job(
    tmp_path, tiny_base, workers
):
    deployment = make_deployment(tmp_path / "data", "", "filesystem://")
    deployment.register_base(tiny_base)
    data_dir = deployment.settings.data_dir
    first, _ = start_http("serve", deployment.env(), tmp_path / "first.log")
    workers.append(first)
    first.wait_for_output(" ready.")
    job_id = deployment.submit(["cat"], hyperparameters={"steps": 300, "num_prompts": 2, "batch_size": 1,
                                                          "generation_steps": 1, "save_every": 5, "eval_prompts": 1})
    wait_until(lambda: deployment.job(job_id).progress_stage == "unlearning"
               and deployment.job(job_id).progress_step >= 5, 120, "step 5 of the job")
    started = worker_processes(data_dir)
    assert main_workers(started) and all(started[pid] == first.process.pid for pid in main_workers(started))
    assert len(started) == 2, started  # the worker and the child running the job

    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    wait_until(lambda: not set(started) & set(worker_processes(data_dir)), GONE_WITHIN_S,
               "the worker and its task child to exit")

    second, _ = start_http("serve", deployment.env(), tmp_path / "second.log")
    workers.append(second)
    second.wait_for_output(" ready.")
    running = worker_processes(data_dir)
    assert [running[pid] for pid in main_workers(running)] == [second.process.pid]

    # The job is resumed from its saved state (not restarted) by the new worker; then cancelled,
    # to keep the test short. Nobody published: in particular not the worker of the killed serve.
    resumed_at = wait_until(lambda: resumed_step(deployment, job_id, main_workers(running)[0]), 120,
                            "the job to resume on the new worker")
    assert resumed_at >= 5
    with deployment.sessions() as session:
        jobs.cancel(session, job_id)
    assert wait_for_status(deployment, job_id, jobs.TERMINAL, timeout_s=60).status == "cancelled"
    assert [v.version for v in deployment.versions()] == [1]


def resumed_step(deployment, job_id, worker_main: int) -> int | None:
    """The first training step of the attempt that a task child of `worker_main` runs, once reported."""
    children = {pid for pid, parent in worker_processes(deployment.settings.data_dir).items() if parent == worker_main}
    events = deployment.events(job_id)
    starts = [i for i, e in enumerate(events)
              if " started on " in e.message and int(e.message.rsplit(":", 1)[1]) in children]
    if not starts:
        return None
    steps = [e.data["step"] for e in events[starts[-1]:] if e.type == "progress" and e.data["stage"] == "unlearning"]
    return steps[0] if steps else None


# A stand-in for `serve`: it starts the "worker" in a session of its own, as `serve` does, and waits.
PARENT = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True, stdout=sys.stdout)
worker.wait()  # (if it fails to start, this ends and the test reads no pids)
"""
# A worker whose warm shutdown never ends (SIGTERM ignored), with a child in its process group.
STUCK_WORKER = """
import os, signal, subprocess, sys, time
from service.cli.server import _exit_with_parent
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
_exit_with_parent(os.getppid(), grace_s=1.0)
print(os.getpid(), child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not collected it yet


def test_a_worker_whose_warm_shutdown_hangs_is_killed_with_its_group_after_the_grace():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT), textwrap.dedent(STUCK_WORKER)],
                              stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = worker, child = [int(pid) for pid in parent.stdout.readline().split()]
        assert alive(worker) and alive(child)
        parent.kill()  # SIGKILL: nothing of the parent gets to stop its worker
        parent.wait()
        assert alive(worker), "the worker waits out its grace before it is killed"
        wait_until(lambda: not alive(worker) and not alive(child), 5, "the worker and its child to be killed")
    finally:
        parent.kill()
        parent.stdout.close()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
