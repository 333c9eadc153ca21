"""Alembic environment: the URL comes from the caller (service.store.migrate)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config

with engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
