"""Alembic environment: the URL comes from `service.db.migrate`, not from a config file."""

from alembic import context
from sqlalchemy import create_engine, pool

from service.models import Base

url = context.config.attributes["url"]
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
