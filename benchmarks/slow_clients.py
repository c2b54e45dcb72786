"""Latency of another tenant's `GET /v1/jobs/{id}` while slow clients hold the gateway (issue 11).

A real `lethe gateway` on PostgreSQL. First the request alone, on a fixed open-loop schedule
(the load generator of service_latency.py: latency counted from each request's scheduled
start); then again while 100 event streams stay open (their client reads nothing) and 30
downloads of a large file or archive are read at 2 KB/s each (as `curl --limit-rate 2k`).
While loaded it also counts what the slow clients hold: the server's threads, and its
PostgreSQL connections by state (none should be "idle in transaction").

    python benchmarks/slow_clients.py                  # 100 req/s for 15 s, each way
    python benchmarks/slow_clients.py --rate 200 --seconds 20

Target (issue 11): p99 under 200 ms under that load, no errors.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_latency import KEY, ROOT, free_port, report, run  # noqa: E402
from service_latency import load as open_loop_load  # noqa: E402

STREAMS = 100
DOWNLOADS = 30
BIG_FILE = "big.bin"
BIG_FILE_BYTES = 32 << 20
READ_RATE = 2048  # bytes per second per download
CLIENT_RECEIVE_BUFFER = 16 << 10
POSTGRES_ADMIN = "host=127.0.0.1 user=postgres dbname=test"
STREAM_KEY, ADMIN_KEY = "streams-key", "admin-key"


@contextmanager
def fresh_database():
    """A new PostgreSQL database, dropped at the end: (SQLAlchemy URL, its name)."""
    name = f"lethe_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def gateway(env: dict, port: int, log: Path):
    """`lethe gateway` on `port` (it migrates the database first); stopped at the end."""
    lethe = str(Path(sys.executable).parent / "lethe")
    with log.open("wb") as out:
        server = subprocess.Popen([lethe, "gateway", "--port", str(port)], env=os.environ | env, cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until_live(server, port, log)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_until_live(server: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"the gateway did not start:\n{log.read_text()[-3000:]}")


def prepare(http: httpx.Client, data_dir: Path) -> tuple[str, str]:
    """Register `tiny` and `big` (a tiny pipeline plus one large file); one job per tenant: (streamed, measured)."""
    from unlearning.tiny import build_tiny_pipeline

    tiny = build_tiny_pipeline(data_dir / "tiny", seed=0)
    big = shutil.copytree(tiny, data_dir / "big")
    (big / BIG_FILE).write_bytes(os.urandom(BIG_FILE_BYTES))
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for name, folder in (("tiny", tiny), ("big", big)):
        body = {"name": name, "source": {"path": str(folder)}, "visibility": "public"}  # the other tenants use them
        assert http.post("/v1/models", json=body, headers=admin, timeout=120).status_code == 201

    def job(key: str) -> str:
        body = {"base_model": {"name": "tiny"}, "concepts": ["cat"]}
        return http.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"}).raise_for_status().json()["id"]

    return job(STREAM_KEY), job(KEY)


def open_request(port: int, path: str, accept: str = "*/*") -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {STREAM_KEY}\r\nAccept: {accept}\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> str:
    sock.settimeout(30)
    try:
        return sock.recv(256).split(b"\r\n", 1)[0].decode()
    except TimeoutError:
        return "timeout"


class ThrottledReaders(threading.Thread):
    """Reads READ_RATE bytes a second from each download, like `curl --limit-rate`."""

    def __init__(self, sockets: list[socket.socket]):
        super().__init__(daemon=True)
        self.sockets, self.received, self.stop = sockets, 0, threading.Event()

    def run(self) -> None:
        for sock in self.sockets:
            sock.setblocking(False)
        while not self.stop.wait(1.0):
            for sock in self.sockets:
                try:
                    self.received += len(sock.recv(READ_RATE))
                except BlockingIOError:
                    pass


class Sampler(threading.Thread):
    """Twice a second: the server's threads and its PostgreSQL connections by state; keeps the largest of each."""

    def __init__(self, pid: int, database: str):
        super().__init__(daemon=True)
        self.pid, self.database, self.peak, self.stop = pid, database, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            sample = {"threads": server_threads(self.pid)} | connections_by_state(self.database)
            self.peak = {k: max(v, self.peak.get(k, 0)) for k, v in (self.peak | sample).items()}


def server_threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def connections_by_state(database: str) -> dict[str, int]:
    with psycopg.connect(POSTGRES_ADMIN) as conn:
        rows = conn.execute(
            "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity WHERE datname = %s GROUP BY 1", (database,)
        ).fetchall()
    return dict(rows)


def measure_loaded(port: int, server_pid: int, database: str, streamed: str, path: str, rate: float, seconds: float):
    big = "/v1/models/big/versions/1"
    downloads = [open_request(port, f"{big}/archive" if i % 2 else f"{big}/files/{BIG_FILE}") for i in range(DOWNLOADS)]
    streams = [open_request(port, f"/v1/jobs/{streamed}/events", "text/event-stream") for _ in range(STREAMS)]
    opened = [status_of(sock) for sock in downloads + streams]
    readers, sampler = ThrottledReaders(downloads), Sampler(server_pid, database)
    readers.start()
    sampler.start()
    try:
        loaded = run(open_loop_load(port, path, rate, seconds))
    finally:
        for thread in (readers, sampler):
            thread.stop.set()
            thread.join()
        for sock in downloads + streams:
            sock.close()
    not_ok = [line for line in opened if not line.startswith("HTTP/1.1 200")]
    print(f"opened {len(opened) - len(not_ok)} of {len(opened)} streams/downloads with 200 ({sorted(set(not_ok)) or 'all'}); "
          f"downloads read {readers.received / 1e6:.1f} MB in all, throttled")  # fmt: skip
    print(f"while loaded, the most seen at once (sampled twice a second): {sampler.peak}")
    return loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (default 100)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each run (default 15)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, fresh_database() as (url, database):
        data_dir = Path(folder)
        keys = f"{KEY}:other,{STREAM_KEY}:streams,{ADMIN_KEY}:ops:admin"
        env = {"LETHE_DATA_DIR": str(data_dir / "data"), "LETHE_DATABASE_URL": url, "LETHE_API_KEYS": keys,
               "LETHE_BROKER_URL": "filesystem://", "LETHE_STORAGE_URL": "", "LETHE_MODEL_ROOTS": str(data_dir),
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        port = free_port()
        with gateway(env, port, data_dir / "gateway.log") as server, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            streamed, measured = prepare(http, data_dir)
            path = f"/v1/jobs/{measured}"
            print(f"{args.rate:g} req/s for {args.seconds:g} s per run, {os.cpu_count()} cores, `lethe gateway` on PostgreSQL, "
                  f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            alone = report("GET /v1/jobs/{id} alone", *run(open_loop_load(port, path, args.rate, args.seconds)))
            loaded = report(f"... with {STREAMS} streams + {DOWNLOADS} dl", *measure_loaded(port, server.pid, database, streamed, path, args.rate, args.seconds))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    verdict = "meets" if loaded["p99"] < 200 and loaded["errors"] == 0 else "MISSES"
    print(f"target p99 < 200 ms under load: {verdict} ({loaded['p99']:.2f} ms; alone {alone['p99']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
