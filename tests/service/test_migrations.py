"""Migrations build the schema of `service.models` on SQLite and PostgreSQL, and carry old rows over."""

import json
import time

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from service import jobs, registry
from service.db import MIGRATIONS, make_engine, migrate, session_factory
from service.jobs import JobSpec
from service.models import Base
from service.storage import LocalStorage
from tests.service.conftest import _empty_postgres
from tests.service.service_helpers import out_folder


def test_migrations_build_the_models_schema(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert {"jobs", "job_events", "model_versions", "version_files", "blobs"} <= set(inspect(connection).get_table_names())
    engine.dispose()


def test_migrate_twice_is_a_no_op(database_url):
    migrate(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == "0006"
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """An empty database of each kind, not migrated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lethe.db'}"
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    return url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


def deployment_at_0001(url: str) -> None:
    """A database of revision 0001 holding base `sd15` and a version made by each of two tenants' jobs."""
    upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO models (id, name, created_at) VALUES (1, 'sd15', :now)"), {"now": time.time()})
        version = text("INSERT INTO model_versions (model_id, version, parent, status, tenant, job_id, concepts_erased, "
                       "created_at) VALUES (1, :version, :parent, 'ready', :tenant, :job, '[]', :now)")
        for number, parent, tenant, job in ((1, None, None, None), (2, 1, "tenant-a", "job_a"), (3, 1, "tenant-b", "job_b")):
            connection.execute(version, {"version": number, "parent": parent, "tenant": tenant, "job": job, "now": time.time()})
    engine.dispose()


def test_0002_makes_existing_models_public_and_numbers_new_versions_per_tenant(empty_url, tiny_pipeline, tmp_path):
    deployment_at_0001(empty_url)
    migrate(empty_url)
    engine = make_engine(empty_url)
    storage = LocalStorage(tmp_path / "storage")
    with session_factory(engine)() as session:
        model = registry.find_model(session, "sd15", "tenant-c")
        assert (model.visibility, model.owner) == ("public", None)
        # Old versions keep their numbers, each still seen by its own tenant only.
        assert [v.version for v in registry.list_versions(session, "sd15", "tenant-a")] == [2, 1]
        assert [v.version for v in registry.list_versions(session, "sd15", "tenant-b")] == [3, 1]
        assert [v.version for v in registry.list_versions(session, "sd15", "tenant-c")] == [1]
        # A new version follows the newest its tenant sees.
        for tenant, expected in (("tenant-a", 3), ("tenant-b", 4), ("tenant-c", 2)):
            job = jobs.create_job(session, tenant, JobSpec(base_model="sd15", base_version=1, concepts=["cat"], method="rg"))
            folder = out_folder(tiny_pipeline, tmp_path / tenant, tenant.encode())
            assert registry.publish_version(session, storage, "sd15", 1, job.id, folder, ["cat"], "rg").version == expected
        # Its name is public: no tenant may have a private `sd15` now.
        with pytest.raises(registry.NameTaken):
            registry.register_base(session, storage, "sd15", tiny_pipeline, owner="tenant-a", visibility="private")
    engine.dispose()


def test_0003_leaves_existing_versions_unknown_and_new_ones_record_how_they_were_made(empty_url, tiny_pipeline, tmp_path):
    deployment_at_0001(empty_url)
    upgrade(empty_url, "0002")
    migrate(empty_url)
    engine = make_engine(empty_url)
    storage = LocalStorage(tmp_path / "storage")
    with session_factory(engine)() as session:
        old = registry.list_versions(session, "sd15", "tenant-a")
        assert [(v.version, v.family, v.trainable, v.adapter) for v in old] == [(2, None, None, None), (1, None, None, None)]
        job = jobs.create_job(session, "tenant-a", JobSpec(base_model="sd15", base_version=1, concepts=["cat"], method="rg"))
        folder = out_folder(tiny_pipeline, tmp_path / "out")
        (folder / "manifest.json").write_text(json.dumps({"family": "sd", "config": {"trainable": "lora"}, "lora": LORA}))
        new = registry.publish_version(session, storage, "sd15", 1, job.id, folder, ["cat"], "rg")
        assert (new.version, new.family, new.trainable, new.adapter) == (3, "sd", "lora", LORA)
    engine.dispose()
    command.downgrade(alembic_config(empty_url), "0002")  # and back: the three columns go, nothing else
    inspector_engine = create_engine(empty_url)
    with inspector_engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("model_versions")}
    inspector_engine.dispose()
    assert not {"family", "trainable", "adapter"} & columns and {"method", "evaluation"} <= columns
    migrate(empty_url)


LORA = {"diffusers": "lora/pytorch_lora_weights.safetensors", "kohya": "lora/erase-cat_kohya.safetensors",
        "rank": 4, "alpha": 4, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}


def test_0004_gives_old_jobs_no_webhook_and_downgrades_cleanly(empty_url):
    upgrade(empty_url, "0003")
    insert_old_job(empty_url)
    migrate(empty_url)
    engine = make_engine(empty_url)
    with session_factory(engine)() as session:
        assert jobs.get_job(session, "job_old").webhook is None
        jobs.cancel(session, "job_old")  # ending it adds no delivery
        assert session.scalar(text("SELECT count(*) FROM webhook_deliveries")) == 0
    engine.dispose()
    command.downgrade(alembic_config(empty_url), "0003")
    engine = create_engine(empty_url)
    with engine.connect() as connection:
        assert not {"webhook_deliveries", "webhook_attempts"} & set(inspect(connection).get_table_names())
        assert "webhook" not in {c["name"] for c in inspect(connection).get_columns("jobs")}
    engine.dispose()
    migrate(empty_url)


def test_0005_gives_old_jobs_the_default_audit_and_no_estimate_and_downgrades_cleanly(empty_url):
    upgrade(empty_url, "0004")
    insert_old_job(empty_url)
    migrate(empty_url)
    engine = make_engine(empty_url)
    with session_factory(engine)() as session:
        old = jobs.get_job(session, "job_old")
        assert (old.audit, old.estimated_seconds) == (None, None)
    engine.dispose()
    command.downgrade(alembic_config(empty_url), "0004")
    engine = create_engine(empty_url)
    with engine.connect() as connection:
        assert not {"audit", "estimated_seconds"} & {c["name"] for c in inspect(connection).get_columns("jobs")}
    engine.dispose()
    migrate(empty_url)


def test_0006_adds_an_empty_throughput_table_and_downgrades_cleanly(empty_url):
    upgrade(empty_url, "0005")
    migrate(empty_url)
    engine = create_engine(empty_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM throughput")).scalar() == 0
    engine.dispose()
    command.downgrade(alembic_config(empty_url), "0005")
    engine = create_engine(empty_url)
    with engine.connect() as connection:
        assert "throughput" not in inspect(connection).get_table_names()
    engine.dispose()
    migrate(empty_url)


def insert_old_job(url: str) -> None:
    """A queued job as a schema before the one under test stores it."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO jobs (id, tenant, status, attempt, created_at, base_model, base_version, concepts, method, "
            "preserve, hyperparameters, seed, metadata) VALUES ('job_old', 't', 'queued', 0, 0, 'sd15', 1, '[]', "
            "'rg', '[]', '{}', 0, '{}')"))
    engine.dispose()
