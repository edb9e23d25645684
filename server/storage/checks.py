"""What a command checks before it uses a database, and how it says what is wrong.

```python
from ruche.server.storage.checks import UnusableDatabaseError, check_database, parse

check_database(url)                  # parses, has its driver, connects, is at the latest schema
check_database(url, schema=False)    # for what migrates it: empty or older will do
parse(url)                           # parses and has its driver, for what connects later
```

Each problem is an `UnusableDatabaseError`: one sentence naming the fix (the URL to
write, the folder to create, `ruche server migrate --database ...` to run), the URL's
password hidden. The checks create nothing: a SQLite file that does not exist is said, not made.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import URL, Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from ruche.commands import HIDDEN, hide_passwords

VERSION_TABLE = "alembic_version"
"""Where Alembic records the schema's revision (its default; migrations/env.py keeps it)."""
EXAMPLES = "sqlite:///ruche.db or postgresql+psycopg://USER@HOST/NAME"
CONNECT_TIMEOUT_S = 10
"""How long the check waits for a PostgreSQL server that does not answer (libpq waits
for ever by default)."""


class UnusableDatabaseError(Exception):
    """What is wrong with a database, in one sentence naming the fix, password hidden."""


def shown(url: str | URL) -> str:
    """`url` fit to print: its password, if any, as `***`.

    >>> shown("postgresql+psycopg://ruche:s3cret@db/ruche")
    'postgresql+psycopg://ruche:***@db/ruche'
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _masked_unparsable(url)


def _masked_unparsable(url: str) -> str:
    """A string SQLAlchemy could not read as a URL, with whatever may be a password hidden.

    Its shape is unknown, so the mask is wide: from the first colon after `//` (or the
    first colon at all) to the last `@`. A user name holds no colon, so a password always
    lies within.

    >>> _masked_unparsable("postgresql+psycopg//ruche:s3cret@db/ruche")
    'postgresql+psycopg//ruche:***@db/ruche'
    """
    head, at, tail = url.rpartition("@")
    slashes = head.find("//")
    start = head.find(":", slashes + 2) if slashes >= 0 else -1
    if start < 0:
        start = head.find(":")
    if not at or start < 0:
        return hide_passwords(url)
    return f"{head[: start + 1]}{HIDDEN}@{tail}"


def _scrubbed(text: str, url: URL) -> str:
    """A driver's message with the URL's password taken out, wherever it quotes it."""
    if url.password:
        text = text.replace(str(url.password), HIDDEN)
    return text


def _first_line(exc: BaseException) -> str:
    """The driver's own message, first line (libpq adds hints on the next ones)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0].strip() if lines else type(cause).__name__


def parse(url: str) -> URL:
    """`url` read by SQLAlchemy, with a driver that is installed; or UnusableDatabaseError."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UnusableDatabaseError(
            f"database URL {shown(url)!r} is not one SQLAlchemy can read: write it like {EXAMPLES}"
        ) from None
    try:
        parsed.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise UnusableDatabaseError(
            f"database URL {shown(parsed)}: SQLAlchemy knows no database "
            f"{parsed.drivername!r}: write it like {EXAMPLES}"
        ) from None
    except ModuleNotFoundError as exc:
        # The dialect is SQLAlchemy's, its driver (MySQLdb, psycopg2, ...) is not here.
        raise UnusableDatabaseError(
            f"database URL {shown(parsed)}: its driver {exc.name!r} is not installed: "
            f"write it like {EXAMPLES} (the server's extra brings psycopg)"
        ) from None
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _unreachable(url: URL, exc: DBAPIError) -> UnusableDatabaseError:
    return UnusableDatabaseError(
        f"cannot use the database {shown(url)}: {_scrubbed(_first_line(exc), url)}: "
        "check the URL, and that the database is running and reachable from here"
    )


def check_database(url: str, *, schema: bool = True) -> None:
    """Raise UnusableDatabaseError unless `url` parses, its driver is installed, it connects,
    its schema is not newer than this version of Ruche knows and (with `schema`) it is at
    the very schema this version migrates to."""
    parsed = parse(url)
    migrate = f"ruche server migrate --database {shown(parsed)}"
    file = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if file is not None:
        folder = file.parent
        if not folder.is_dir():
            raise UnusableDatabaseError(
                f"database {shown(parsed)}: the folder {folder} does not exist: "
                "create it, or correct the path"
            )
        if schema and not file.exists():
            raise UnusableDatabaseError(
                f"database {shown(parsed)}: no such file: correct the path, or create it "
                f"with `{migrate}`"
            )
        if file.is_dir():
            raise UnusableDatabaseError(
                f"database {shown(parsed)}: {file} is a directory: give a file's path"
            )
    connect_args: dict[str, object] = {}
    if parsed.get_driver_name() in ("psycopg", "psycopg2"):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            current = _revisions(connection)
    except DBAPIError as exc:
        # Whatever the driver refuses while connecting (an option libpq does not know,
        # say) is about the URL or the server, not about Ruche's statements.
        raise _unreachable(parsed, exc) from None
    finally:
        engine.dispose()
    _check_revisions(parsed, current, migrate if schema else None)


def _revisions(connection: Connection) -> set[str]:
    """The revisions Alembic has recorded: read from its table directly, as its own
    MigrationContext would log its setup at INFO into a command's one-line error."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608
    return {str(row[0]) for row in rows}


def _check_revisions(url: URL, current: set[str], migrate: str | None) -> None:
    """`migrate`: the command that brings the database to the latest schema, to say when
    it is not there; None when it need not be (it is about to be migrated)."""
    # Alembic, and the ORM with db, load only for a database that answers: a refusal comes
    # at once.
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    from ruche.server.storage.db import alembic_config  # noqa: PLC0415

    script = ScriptDirectory.from_config(alembic_config(shown(url)))  # it reads the scripts only
    heads = set(script.get_heads())
    if current == heads:
        return
    known = {revision.revision for revision in script.walk_revisions()}
    at = ", ".join(sorted(current))
    if not current <= known:
        raise UnusableDatabaseError(
            f"database {shown(url)} is at schema {at}, newer than this Ruche knows: "
            "upgrade Ruche to the version that migrated it"
        )
    if migrate is None:
        return
    if not current:
        raise UnusableDatabaseError(
            f"database {shown(url)} has no Ruche schema: run `{migrate}` first"
        )
    raise UnusableDatabaseError(
        f"database {shown(url)} is at schema {at}, older than this Ruche's "
        f"{', '.join(sorted(heads))}: run `{migrate}`"
    )
