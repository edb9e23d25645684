"""Alembic's environment for Ruche: run by `ruche.server.storage.db.run_migrations`, online only.

`run_migrations` hands over an open connection in `config.attributes["connection"]`, so
SQLite gets the same pragmas and `BEGIN IMMEDIATE` as the server. Batch mode is on, so
later migrations can alter SQLite tables (it rebuilds them; PostgreSQL alters in place).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ruche.server.storage.db import make_engine
from ruche.server.storage.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: call ruche.server.storage.db.run_migrations(url)")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
