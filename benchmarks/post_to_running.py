"""Time from `POST /v1/jobs` to the job's status `running`, with an idle worker waiting.

Real parts, each in its own process: `lethe gateway` (uvicorn) and `lethe worker` (Celery),
in the distributed mode (a fresh PostgreSQL database on 127.0.0.1:5432 and a private
redis-server on a free port) and the embedded mode (`lethe serve`: SQLite and the
filesystem broker). A tiny job is posted; the client polls `GET /v1/jobs/{id}` every 5 ms.
Three figures per job, from the moment the POST is sent:
- claim: the job row's `started_at` (the worker's atomic queued -> running; read from the
  database, where it is a float; the API rounds it to whole seconds), same clock;
- seen: when the polling client first reads a status other than `queued`;
- post: the POST's own round trip.
Between two jobs the previous one runs to its end and the benchmark waits `--idle` seconds
(default 6): the worker runs each task in a fresh child process, and Celery's prefork pool
forks the replacement on its 5-second maintenance tick, so only then is the worker idle
again. Medians of `--runs` jobs are printed.

    python benchmarks/post_to_running.py                 # both modes, 7 jobs each
    python benchmarks/post_to_running.py --modes embedded --runs 5

Target (issue 4): under 1 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from service.settings import Settings

KEY = "bench-key"
ROOT = Path(__file__).resolve().parent.parent
TINY_JOB = {"steps": 1, "num_prompts": 1, "batch_size": 1, "generation_steps": 1, "eval_prompts": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str) -> None:
    give_up_at = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > give_up_at:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def lethe(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env, cwd=ROOT,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def start(env: dict, folder: Path, distributed: bool) -> tuple[list[subprocess.Popen], str]:
    port = free_port()
    if distributed:
        processes = [lethe(["worker"], env, folder / "worker.log"),
                     lethe(["gateway", "--port", str(port)], env, folder / "gateway.log")]
        worker_log = folder / "worker.log"
    else:
        processes = [lethe(["serve", "--port", str(port)], env, folder / "serve.log")]
        worker_log = folder / "serve.log"
    wait_for(lambda: " ready." in worker_log.read_text(errors="replace"), 120, "the worker")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url), 60, "the gateway")
    return processes, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def measure(client: httpx.Client, database_url: str, runs: int, idle_s: float) -> dict[str, list[float]]:
    from service.db import make_engine, session_factory
    from service.jobs import get_job

    sessions = session_factory(make_engine(database_url))
    figures = {"claim": [], "seen": [], "post": []}
    for _ in range(runs):
        sent = time.time()
        job = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"],
                                            "hyperparameters": TINY_JOB}).raise_for_status().json()
        figures["post"].append(time.time() - sent)
        while job["status"] == "queued":
            time.sleep(0.005)
            job = client.get(f"/v1/jobs/{job['id']}").raise_for_status().json()
        figures["seen"].append(time.time() - sent)
        with sessions() as session:
            figures["claim"].append(get_job(session, job["id"]).started_at - sent)
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
            job = client.get(f"/v1/jobs/{job['id']}").raise_for_status().json()
        assert job["status"] == "succeeded", job
        time.sleep(idle_s)
    return figures


def run_mode(mode: str, runs: int, idle_s: float, tiny: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"lethe-bench-{mode}-") as temp:
        folder = Path(temp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env |= {"LETHE_DATA_DIR": str(folder / "data"), "LETHE_API_KEYS": f"{KEY}:bench:admin",
                "LETHE_MODEL_ROOTS": str(tiny.parent),
                "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        cleanup = []
        if mode == "distributed":
            database = f"lethe_bench_{secrets.token_hex(4)}"
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            cleanup.append(lambda: _drop(database))
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                      "--appendonly", "yes", "--dir", temp], stdout=subprocess.DEVNULL)
            cleanup.append(lambda: (redis.terminate(), redis.wait()))
            env |= {"LETHE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
                    "LETHE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0"}
        processes = []
        try:
            processes, url = start(env, folder, mode == "distributed")
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
                client.post("/v1/models", json={"name": "tiny", "source": {"path": str(tiny)}}).raise_for_status()
                figures = measure(client, Settings(_env_file=None, **_settings_of(env)).database_url, runs, idle_s)
        finally:
            for process in reversed(processes):
                stop(process)
            for step in reversed(cleanup):
                step()
    ms = {name: [value * 1000 for value in values] for name, values in figures.items()}
    print(f"{mode:12s} POST -> running, median of {runs} jobs: claim {statistics.median(ms['claim']):6.1f} ms "
          f"(min {min(ms['claim']):.1f}, max {max(ms['claim']):.1f}); seen by a 5 ms poller "
          f"{statistics.median(ms['seen']):6.1f} ms; POST round trip {statistics.median(ms['post']):6.1f} ms")


def _settings_of(env: dict) -> dict:
    return {k.removeprefix("LETHE_").lower(): v for k, v in env.items() if k.startswith("LETHE_")}


def _drop(database: str) -> None:
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["distributed", "embedded"], choices=["distributed", "embedded"])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=float, default=6.0, help="seconds the worker rests between two jobs")
    args = parser.parse_args()
    from unlearning.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory(prefix="lethe-bench-tiny-") as temp:
        tiny = build_tiny_pipeline(Path(temp) / "tiny")
        for mode in args.modes:
            run_mode(mode, args.runs, args.idle, tiny)


if __name__ == "__main__":
    main()
