"""Real parts for the service tests: SQLite and PostgreSQL databases, local and S3 storage."""

from __future__ import annotations

import secrets
import shutil
import socket
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session

from service.db import make_engine, migrate, session_factory
from service.settings import Settings
from service.storage import LocalStorage, S3Storage
from tests.service.service_helpers import start_gateway

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/{}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this run, dropped at the end."""
    name = f"lethe_test_{secrets.token_hex(4)}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES.format(name)
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A migrated, empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lethe.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        _empty_postgres(url)
    migrate(url)
    return url


@pytest.fixture
def session(database_url):
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def sqlite_session(tmp_path) -> Session:
    url = f"sqlite:///{tmp_path / 'lethe.db'}"
    migrate(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3-compatible server (moto in server mode) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """Each storage backend behind the one interface."""
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    client = s3_client(request.getfixturevalue("moto_endpoint"))
    bucket = f"lethe-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    return S3Storage(bucket, "versions", client)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A real tiny Stable Diffusion folder, built once per run."""
    from unlearning.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "sd", seed=0)


def make_settings(data_dir: Path, **changes) -> Settings:
    keys = "key-a:tenant-a,key-b:tenant-b,key-admin:ops:admin"
    # The model root: pytest's base temporary folder (data_dir is <base>/<test>/data), where every
    # folder the tests register lies.
    roots = {"model_roots": str(data_dir.parent.parent)}
    return Settings(data_dir=data_dir, api_keys=keys, sse_poll_s=0.05, **(roots | changes))


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "data")


def _empty_postgres(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# -- the gateway ---------------------------------------------------------------------------------


@pytest.fixture
def client(settings, tiny_pipeline):
    with start_gateway(settings, tiny_pipeline) as client:
        yield client


@pytest.fixture
def store(settings):
    """A session on the gateway's database, to look at rows and to play the worker's part."""
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory, tiny_pipeline):
    """One gateway for a module whose tests write nothing: (client, settings, store session)."""
    settings = make_settings(tmp_path_factory.mktemp("gateway") / "data")
    engine = make_engine(settings.database_url)
    with start_gateway(settings, tiny_pipeline) as client, session_factory(engine)() as session:
        yield client, settings, session
    engine.dispose()


@pytest.fixture
def live_server(settings, tiny_pipeline):
    """The gateway under a real uvicorn server on a loopback port."""
    import threading
    import time

    import uvicorn

    from service.app import create_app

    start_gateway(settings, tiny_pipeline).close()  # migrate and register `tiny`
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(10)
