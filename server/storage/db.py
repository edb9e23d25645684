"""The SQL adapter: engines, sessions and migrations, for SQLite and PostgreSQL alike.

```python
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction

run_migrations("sqlite:///ruche.db")          # Alembic, to head
sessions = make_sessions(make_engine("sqlite:///ruche.db"))
with transaction(sessions) as session:        # commits on success, rolls back on error
    ...
```

SQLite is the default: one file, nothing to run. Each connection gets WAL (readers do
not block the writer), enforced foreign keys and a busy timeout, and every transaction
starts with `BEGIN IMMEDIATE`: it takes SQLite's single write lock up front, so a
check-then-write (a booking's overlap check, the audit chain's head) cannot interleave
with another writer, and waiters queue for `busy_timeout` instead of failing on a stale
snapshot. PostgreSQL, for production and several server processes, serialises the same
spots with row locks (`SELECT ... FOR UPDATE`) in the registry and the audit log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from ruche.server.storage.urls import DEFAULT_URL

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(
    url: str = DEFAULT_URL, *, echo: bool = False, autocheckpoint: bool = True
) -> Engine:
    """An engine for `url`; SQLite ones get WAL, foreign keys, a busy timeout, BEGIN IMMEDIATE.

    `autocheckpoint=False`: its SQLite commits never checkpoint the WAL; something else
    must (`ruche.server.storage.wal.WalCheckpointer`), or the log grows without end."""
    if not is_sqlite(url):
        return create_engine(url, echo=echo, pool_pre_ping=True)
    engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _sqlite_on_connect)
    if not autocheckpoint:
        event.listen(engine, "connect", _sqlite_no_autocheckpoint)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_no_autocheckpoint(
    dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry
) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
    # Take transaction control away from the sqlite3 module (it would BEGIN lazily and
    # DEFERRED); `_sqlite_on_begin` emits our own. Pragmas then run outside a transaction,
    # which journal_mode and foreign_keys require.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across crashes in WAL mode
    finally:
        cursor.close()


READ_ONLY = {"ruche_read_only": True}
"""Execution options for a read-only transaction: on SQLite it takes no write lock, so
a long read (the occupancy refresh's) never holds up writers; WAL lets both run."""


def _sqlite_on_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get("ruche_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory the server passes around; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session in one transaction: committed when the block ends, rolled back on error."""
    with sessions.begin() as session:
        yield session


def alembic_config(url: str) -> Config:
    """Alembic's configuration for Ruche's migrations folder; no alembic.ini needed."""
    # Alembic (a tenth of a second to import) loads only for a migration or a schema
    # check, not for every command that opens the database or fails before it does.
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates `%`; a password may well contain one.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def run_migrations(url: str = DEFAULT_URL, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (head by default), in one transaction."""
    from alembic import command  # noqa: PLC0415 - see alembic_config

    with migrating(url) as config:
        command.upgrade(config, revision)


@contextmanager
def migrating(url: str) -> Iterator[Config]:
    """Alembic's configuration bound to one transaction on `url`, committed when the
    block ends: `command.upgrade(config, ...)` (or a downgrade) inside it.

    On SQLite the foreign keys are off while the migrations run, and checked before they
    commit. Alembic's batch mode alters an SQLite table by copying it, dropping it and
    renaming the copy; with foreign keys on, dropping a parent (`agents`, `sites`, ...)
    deletes its rows first, and every ON DELETE SET NULL or CASCADE of its children
    fires: doors and desks would lose their agent. SQLite's own procedure for altering a
    table turns them off the same way."""
    engine = make_engine(url)
    sqlite = is_sqlite(url)
    if sqlite:  # after make_engine's listener, which turns them on
        event.listen(engine, "connect", _sqlite_foreign_keys_off)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            yield config
            if sqlite:
                _check_foreign_keys(connection)
    finally:
        engine.dispose()


def _sqlite_foreign_keys_off(
    dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry
) -> None:
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, as it must be


def _check_foreign_keys(connection: Connection) -> None:
    """Refuse (rolling the migrations back) if they left a row pointing nowhere."""
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(
            f"the migrations left {len(broken)} rows whose foreign key points nowhere "
            f"(table, rowid, parent, key): {[tuple(row) for row in broken[:5]]}"
        )
