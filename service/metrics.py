"""Prometheus metrics: HTTP requests (an ASGI middleware) and jobs (read from the database at scrape).

Each app has its own registry, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import case, func, select

from service import jobs
from service.models import Job

JOB_DURATION_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 43200)


class Metrics:
    def __init__(self, sessions):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lethe_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "lethe_http_request_duration_seconds", "Time to answer an HTTP request (until the body starts)",
            ["method", "route"], registry=self.registry,
        )  # fmt: skip
        self.registry.register(JobCollector(sessions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class JobCollector:
    """Jobs by status, queue depth (queued jobs: the database is the truth) and job durations."""

    def __init__(self, sessions):
        self.sessions = sessions

    def describe(self):
        return []

    def collect(self):
        with self.sessions() as session:
            counts = jobs.count_by_status(session)
            durations = _duration_buckets(session)
        by_status = GaugeMetricFamily("lethe_jobs", "Jobs by status", labels=["status"])
        for status, count in counts.items():
            by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily("lethe_queue_depth", "Jobs waiting for a worker", value=counts[jobs.QUEUED])
        yield durations


def _duration_buckets(session) -> HistogramMetricFamily:
    """Run time (finished - started) of ended jobs, bucketed by the database in one query."""
    duration = Job.finished_at - Job.started_at
    cumulative = [func.coalesce(func.sum(case((duration <= bound, 1), else_=0)), 0) for bound in JOB_DURATION_BUCKETS]
    ended = (Job.status.in_(jobs.TERMINAL), Job.started_at.is_not(None), Job.finished_at.is_not(None))
    row = session.execute(select(*cumulative, func.count(), func.coalesce(func.sum(duration), 0.0)).where(*ended)).one()
    buckets = [(str(float(b)), int(n)) for b, n in zip(JOB_DURATION_BUCKETS, row)]
    buckets.append(("+Inf", int(row[-2])))
    return HistogramMetricFamily(
        "lethe_job_duration_seconds", "Run time of ended jobs", buckets=buckets, sum_value=float(row[-1])
    )


class HttpMetrics:
    """ASGI middleware counting requests by route template (not raw path: bounded labels)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                route = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status[0])).inc()
