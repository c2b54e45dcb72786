"""Real parts for the worker tests: a fresh PostgreSQL database and Redis database per test,
SQLite and the filesystem broker, the tiny pipeline registered as a base model, and
`lethe worker` processes started by the tests themselves."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import psycopg
import pytest
import redis

from service import jobs, registry
from service.db import make_engine, migrate, session_factory
from service.settings import Settings
from service.storage import open_storage
from workers.app import make_celery
from workers.queue import enqueue
from tests.workers.worker_harness import start_worker

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "tenant-w"
API_KEY = "w-test-key-0123456789"
# Seconds, not minutes: leases, heartbeats and the reconciler run at test speed.
FAST_TIMING = {"heartbeat_s": 0.5, "lease_s": 6.0, "reconcile_interval_s": 1.0, "republish_after_s": 3.0}
# A job of a few seconds on the tiny pipeline.
FAST_JOB = {"steps": 4, "num_prompts": 2, "batch_size": 1, "generation_steps": 1, "save_every": 2, "eval_prompts": 1}


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    from unlearning.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "base", seed=0)


@pytest.fixture
def postgres_url():
    """A fresh, migrated PostgreSQL database for this test (lethe_w_*), dropped after it."""
    name = f"lethe_w_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    migrate(url)
    yield url
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_dbs_of_this_process() -> list[int]:
    """Databases 4-15 of the shared Redis, less 13 (test_distributed's), split between
    pytest-xdist's workers so that two of them never pick the same one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker.removeprefix("gw"))
    return [n for n in range(4, 16) if n != 13 and n % count == index % count]


@pytest.fixture(scope="session")
def _redis_db() -> int:
    """A database number of the shared Redis that nobody uses, for this test run."""
    numbers = _redis_dbs_of_this_process()
    for number in secrets.SystemRandom().sample(numbers, len(numbers)):
        if redis.Redis(host="127.0.0.1", port=6379, db=number).dbsize() == 0:
            return number
    pytest.fail("no empty database on the Redis at 127.0.0.1:6379")


@pytest.fixture
def redis_url(_redis_db):
    client = redis.Redis(host="127.0.0.1", port=6379, db=_redis_db)
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{_redis_db}"
    client.flushdb()


@dataclass
class Deployment:
    """One set of settings shared by the test, its workers and its gateway."""

    settings: Settings
    base_model: str = "tiny"
    _engines: list = field(default_factory=list)

    def env(self) -> dict[str, str]:
        values = {name: str(value) for name, value in self.settings.model_dump().items()}
        values["api_keys"] = self.settings.api_keys.get_secret_value()
        values["s3_secret_access_key"] = self.settings.s3_secret_access_key.get_secret_value()
        lethe = {f"LETHE_{name.upper()}": value for name, value in values.items()}
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        return inherited | lethe | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    @cached_property
    def sessions(self):
        """The test's own session factory (one engine, disposed after the test)."""
        engine = make_engine(self.settings.database_url)
        self._engines.append(engine)
        return session_factory(engine)

    @cached_property
    def celery(self):
        return make_celery(self.settings)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()

    def register_base(self, folder: Path) -> None:
        with self.sessions() as session:
            registry.register_base(session, open_storage(self.settings), self.base_model, folder, owner=TENANT,
                                   visibility="private")

    def submit(self, concepts=("cat",), hyperparameters=None, publish: bool = True, **spec) -> str:
        """What the gateway does for POST /v1/jobs: insert the queued job, then publish it."""
        spec = jobs.JobSpec(base_model=self.base_model, base_version=spec.pop("base_version", 1),
                            concepts=list(concepts), method=spec.pop("method", "rg"),
                            hyperparameters=dict(FAST_JOB if hyperparameters is None else hyperparameters), **spec)
        with self.sessions() as session:
            job_id = jobs.create_job(session, TENANT, spec).id
        if publish:
            assert enqueue(self.celery, job_id)
        return job_id

    def job(self, job_id: str):
        with self.sessions() as session:
            return jobs.get_job(session, job_id)

    def events(self, job_id: str) -> list:
        with self.sessions() as session:
            return jobs.list_events(session, job_id)

    def versions(self) -> list:
        with self.sessions() as session:
            return registry.list_versions(session, self.base_model, TENANT)

    def start_worker(self, log_name: str = "worker.log", data_dir: Path | None = None):
        """A `lethe worker` on this deployment. With `data_dir`: as if on another machine, a data
        folder (caches, work folders) of its own, sharing only the database, the Redis broker and
        the storage (the settings hold their URLs, made absolute from this deployment's folder)."""
        env = self.env()
        if data_dir is not None:
            env["LETHE_DATA_DIR"] = str(data_dir)
        return start_worker(env, self.settings.data_dir / log_name)


def make_deployment(data_dir: Path, database_url: str, broker_url: str, **overrides) -> Deployment:
    # The model root: pytest's base temporary folder (data_dir is <base>/<test>/data), where tiny_base lies.
    settings = Settings(data_dir=data_dir, database_url=database_url, broker_url=broker_url,
                        api_keys=f"{API_KEY}:{TENANT}:admin", model_roots=str(data_dir.parent.parent),
                        **(FAST_TIMING | overrides))
    migrate(settings.database_url)
    return Deployment(settings)


@pytest.fixture
def distributed(tmp_path, postgres_url, redis_url, tiny_base) -> Deployment:
    """PostgreSQL and Redis, the tiny model registered."""
    deployment = make_deployment(tmp_path / "data", postgres_url, redis_url)
    deployment.register_base(tiny_base)
    yield deployment
    deployment.close()


@pytest.fixture
def embedded(tmp_path, tiny_base) -> Deployment:
    """SQLite and the filesystem broker under the data folder, the tiny model registered."""
    deployment = make_deployment(tmp_path / "data", "", "filesystem://")
    deployment.register_base(tiny_base)
    yield deployment
    deployment.close()


@pytest.fixture
def workers():
    """Start workers with `workers.append(deployment.start_worker())`; all are killed after the test."""
    started = []
    yield started
    for worker in started:
        worker.close()
        print(f"--- {worker.log.name} (shown when the test fails) ---\n{worker.output()[-6000:]}")
