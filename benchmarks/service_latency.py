"""Latency of `GET /v1/jobs/{id}` under a steady 200 requests/s, against a real uvicorn server.

The gateway runs in its own process, started as an operator starts it (`lethe gateway`: one
uvicorn worker, its access log on, here to /dev/null; the embedded SQLite database by default). The load generator, in this process, sends on a fixed open-loop schedule over
keep-alive loopback connections and measures each request from its *scheduled* start, so a
slow answer that delays the next sends is counted, not hidden (no coordinated omission).
The same load on `GET /livez` (no database, no auth) is the baseline, for the ratio.

    python benchmarks/service_latency.py                    # 200 req/s for 20 s each
    python benchmarks/service_latency.py --rate 200 --seconds 30 --database-url postgresql+psycopg://postgres@127.0.0.1/test

Target (issue 4): p99 of GET /v1/jobs/{id} under 20 ms at 200 req/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

KEY = "bench-key"
METRICS_TOKEN = "bench-metrics-token"
TIMEOUT_S = 10.0
CONTENT_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(env: dict) -> str:
    """Migrate the database and insert one job; return its id."""
    from service import jobs
    from service.db import make_engine, migrate, session_factory
    from service.jobs import JobSpec
    from service.settings import Settings

    settings = Settings(**{k.removeprefix("LETHE_").lower(): v for k, v in env.items() if k.startswith("LETHE_")})
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        spec = JobSpec(base_model="sd15", base_version=1, concepts=["van gogh"], method="rg", hyperparameters={"steps": 100})
        job = jobs.create_job(session, "bench", spec)
    engine.dispose()
    return job.id


def start_server(env: dict, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "service.cli", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=os.environ | env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the gateway did not start")


class Connections:
    """Keep-alive HTTP/1.1 connections to the server: a tiny client, so the load generator,
    which shares the machine's cores with the server, costs as little CPU as possible."""

    def __init__(self, port: int):
        self.port, self.idle = port, []

    async def get(self, raw_request: bytes) -> int:
        if self.idle:
            try:
                return await self._send(self.idle.pop(), raw_request)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass  # the server closed an idle connection: open a new one
        return await self._send(await asyncio.open_connection("127.0.0.1", self.port), raw_request)

    async def _send(self, connection, raw_request: bytes) -> int:
        reader, writer = connection
        writer.write(raw_request)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(CONTENT_LENGTH.search(head).group(1)))
        self.idle.append(connection)
        return int(head[9:12])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def load(port: int, path: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Latencies (s) of `rate * seconds` GETs sent on a fixed schedule, and the number of errors."""
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
    connections, latencies, errors = Connections(port), [], 0
    for _ in range(50):  # warm the connections and the server's caches
        await connections.get(raw)

    async def one(scheduled: float):
        nonlocal errors
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if await asyncio.wait_for(connections.get(raw), TIMEOUT_S) != 200:
                errors += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            errors += 1
        latencies.append(time.perf_counter() - scheduled)

    start = time.perf_counter() + 0.2
    await asyncio.gather(*(one(start + i / rate) for i in range(int(rate * seconds))))
    connections.close()
    return latencies, errors


def run(coroutine):
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(name: str, latencies: list[float], errors: int) -> dict:
    ms = [v * 1000 for v in latencies]
    row = {
        "p50": statistics.median(ms), "p90": percentile(ms, 0.90), "p99": percentile(ms, 0.99),
        "max": max(ms), "n": len(ms), "errors": errors,
    }  # fmt: skip
    print(f"{name:28s} n={row['n']:5d} errors={errors}  p50={row['p50']:6.2f} ms  p90={row['p90']:6.2f} ms  "
          f"p99={row['p99']:6.2f} ms  max={row['max']:7.2f} ms")  # fmt: skip
    return row


def server_side(metrics: str, route: str) -> str:
    """The share of requests the server itself answered within each histogram bucket."""
    pattern = re.compile(r'lethe_http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",route="' + re.escape(route) + r'"\} (\S+)')
    buckets = [(le, float(n)) for le, n in pattern.findall(metrics)]
    total = buckets[-1][1]
    return "  ".join(f"<={float(le) * 1000:g} ms: {n / total:.2%}" for le, n in buckets[:6])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each run (default 20)")
    parser.add_argument("--database-url", default="", help="default: SQLite under a temporary data dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        env = {"LETHE_DATA_DIR": data_dir, "LETHE_API_KEYS": f"{KEY}:bench", "LETHE_DATABASE_URL": args.database_url,
               "LETHE_METRICS_TOKEN": METRICS_TOKEN}
        job_id = prepare(env)
        port = free_port()
        server = start_server(env, port)
        try:
            print(f"{args.rate:g} req/s for {args.seconds:g} s per run, {os.cpu_count()} cores, "
                  f"database {args.database_url or 'SQLite (embedded)'}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            baseline = report("GET /livez (baseline)", *run(load(port, "/livez", args.rate, args.seconds)))
            job = report("GET /v1/jobs/{id}", *run(load(port, f"/v1/jobs/{job_id}", args.rate, args.seconds)))
            print("server side (request in -> response start), from its /metrics:")
            scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            print("  " + server_side(scraped.raise_for_status().text, "/v1/jobs/{job_id}"))
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes on the machine widen the tail)")
    print(f"p99 ratio job/baseline: {job['p99'] / baseline['p99']:.2f}; p50 ratio: {job['p50'] / baseline['p50']:.2f}")
    verdict = "meets" if job["p99"] < 20 and job["errors"] == 0 else "MISSES"
    print(f"target p99 < 20 ms: {verdict} ({job['p99']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
