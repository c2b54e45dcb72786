from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.db import migrate
from service.models import Base


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
        assert MigrationContext.configure(connection).get_current_revision() == "0001"
    engine.dispose()
