"""Backups and restores of the server's database: `ruche server backup` and `restore`.

```python
done = backup_sqlite("sqlite:////var/lib/ruche/ruche.db", Path("/backups/ruche.db"))
done.path, done.size, done.revision        # the copy, its bytes, its schema revision

restored = restore_sqlite("sqlite:////var/lib/ruche/ruche.db", Path("/backups/ruche.db"),
                          force=True)
restored.from_revision, restored.to_revision   # the backup's schema, then the latest
```

**Backup (SQLite).** SQLite's online backup API copies the database page by page while
the server goes on reading and writing it. The copy is consistent because the backup's
source connection holds one read transaction from the first page to the last: in WAL
mode that pins one snapshot, which the server's commits do not disturb. Without it,
SQLite restarts a stepped backup whenever another connection commits, and under a busy
ingestion it never finishes. The copy goes to a temporary file beside the target, is
switched out of WAL mode (one self-contained file), checked, fsync'd and renamed over
the target: the target is the old backup or the new one, never half of one.

**Restore (SQLite).** The file must be an SQLite database with Alembic's version table at
a revision this Ruche knows. The server's lock file (`ruche.server.storage.lock`) must be
free: every `ruche server run` and `ruche server ingest` holds it. An existing database is
replaced only with `force`, after checkpointing its WAL and leaving WAL mode, which SQLite
refuses while any other connection has it open (the second guard: an older server, a
`sqlite3` shell). Its old `-wal` file must go, or SQLite would replay it into the restored
file. The backup is copied to a temporary file that is renamed over the database, then
the migrations bring it to the latest schema.

**PostgreSQL** has its own tools; `pg_dump_command` and `pg_restore_command` say which.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import URL, make_url

from ruche.server.storage.db import alembic_config, run_migrations
from ruche.server.storage.lock import DatabaseInUse, replacing_database, sqlite_file

STEP_PAGES = 1024
"""Pages per backup step (4 MiB at SQLite's default page size): each step reports progress."""
BUSY_TIMEOUT_S = 10.0
VERSION_TABLE = "alembic_version"

Progress = Callable[[int, int], None]
"""Called after each backup step with (pages copied, pages in all)."""


class BackupError(RuntimeError):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class BackupDone:
    path: Path
    size: int
    """Bytes."""
    pages: int
    revision: str | None
    """The schema revision the copy is at; None when the database has no Alembic table."""


@dataclass(frozen=True)
class RestoreDone:
    source: Path
    database: Path
    replaced: bool
    """Whether a database was there before (restored with `force`)."""
    from_revision: str
    to_revision: str


# --- PostgreSQL ----------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def _libpq_url(url: str) -> str:
    """The URL as libpq reads it: no SQLAlchemy driver suffix, no password (pg_dump and
    pg_restore take it from ~/.pgpass or PGPASSWORD, never from a command line)."""
    given = make_url(url)
    bare = URL.create("postgresql", username=given.username, host=given.host, port=given.port,
                      database=given.database, query=given.query)  # fmt: skip
    return bare.render_as_string(hide_password=False)


def pg_dump_command(url: str, out: Path) -> str:
    """The command that backs up the PostgreSQL database at `url` into `out`."""
    return shlex.join(
        ["pg_dump", "--format=custom", f"--file={out}", f"--dbname={_libpq_url(url)}"]
    )


def pg_restore_command(url: str, source: Path) -> str:
    """The command that restores a `pg_dump_command` file into the database at `url`."""
    return shlex.join(
        ["pg_restore", "--clean", "--if-exists", f"--dbname={_libpq_url(url)}", str(source)]
    )


# --- revisions ------------------------------------------------------------------------


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _revision(connection: sqlite3.Connection) -> str | None:
    """The schema revision Alembic recorded in the database, or None without its table."""
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if found is None:
        return None
    row = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()  # noqa: S608
    return None if row is None else str(row[0])


# --- files ----------------------------------------------------------------------------


def _sqlite_uri(path: Path, mode: str) -> str:
    # A URI with mode=ro/rw never creates the file, unlike a plain path.
    return f"file:{quote(str(path.resolve()))}?mode={mode}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    _fsync_file(directory)


def _temporary(target: Path, what: str) -> Path:
    return target.with_name(f".{target.name}.{what}-{os.getpid()}.tmp")


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[Path]:
    try:
        yield path
    except BaseException:
        for leftover in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        raise


def _copy(
    source: sqlite3.Connection, target: Path, *, step_pages: int, on_progress: Progress | None
) -> int:
    """Copy `source` (with its read transaction open) into a new file `target`, switched
    to rollback-journal mode, checked and fsync'd; return its page count."""
    target.unlink(missing_ok=True)
    copy = sqlite3.connect(target, isolation_level=None)
    try:

        def progress(_status: int, remaining: int, total: int) -> None:
            if on_progress is not None:
                on_progress(total - remaining, total)

        source.backup(copy, pages=step_pages, progress=progress, sleep=0)
        # The pages carry the source's WAL flag; a backup is one file that opens anywhere.
        (mode,) = copy.execute("PRAGMA journal_mode=DELETE").fetchone()
        if mode != "delete":  # pragma: no cover - nothing else has the new file open
            raise BackupError(f"could not take the copy {target} out of WAL mode")
        (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise BackupError(f"the copy failed SQLite's check: {verdict}")
        (pages,) = copy.execute("PRAGMA page_count").fetchone()
    finally:
        copy.close()
    _fsync_file(target)
    return int(pages)


def _open_database(path: Path, mode: str, what: str) -> sqlite3.Connection:
    """Open an existing SQLite file, or raise `BackupError` saying what is wrong with it."""
    if not path.exists():
        raise BackupError(f"{what} {path} does not exist")
    if not path.is_file():
        raise BackupError(f"{what} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise BackupError(f"{what} {path} is not readable (permission denied)")
    try:
        connection = sqlite3.connect(
            _sqlite_uri(path, mode), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S
        )
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {what} {path}: {exc}") from exc
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        if "not a database" in str(exc):
            raise BackupError(f"{what} {path} is not an SQLite database") from exc
        raise BackupError(f"cannot read {what} {path}: {exc}") from exc
    return connection


def _database_of(url: str) -> Path:
    database = sqlite_file(url)
    if database is None:
        raise BackupError(f"{make_url(url).render_as_string()} is not an SQLite file")
    return database


# --- backup ---------------------------------------------------------------------------


def backup_sqlite(
    url: str,
    out: Path,
    *,
    on_progress: Progress | None = None,
    step_pages: int = STEP_PAGES,
) -> BackupDone:
    """Copy the SQLite database at `url` into `out`, consistently, while it is in use."""
    database = _database_of(url)
    if not out.parent.is_dir():
        raise BackupError(f"cannot write {out}: {out.parent} is not a folder")
    if out.exists() and out.resolve() == database.resolve():
        raise BackupError(f"{out} is the database itself: write the backup elsewhere")
    source = _open_database(database, "rw", "database")
    try:
        # One read transaction across every step: one snapshot, whatever the server writes.
        source.execute("BEGIN")
        revision = _revision(source)
        with _removed_on_failure(_temporary(out, "backup")) as temporary:
            pages = _copy(source, temporary, step_pages=step_pages, on_progress=on_progress)
            source.execute("COMMIT")
            temporary.replace(out)
            _fsync_dir(out.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"backing up {database} failed: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc.strerror}") from exc
    finally:
        source.close()
    return BackupDone(path=out, size=out.stat().st_size, pages=pages, revision=revision)


# --- restore --------------------------------------------------------------------------


def inspect_backup(source: Path) -> str:
    """The schema revision of a Ruche backup, after checking that it is one this Ruche can
    restore; `BackupError` says what is wrong otherwise."""
    connection = _open_database(source, "ro", "backup")
    try:
        revision = _revision(connection)
        if revision is None:
            raise BackupError(f"{source} is not a Ruche database (it has no {VERSION_TABLE} table)")
        (verdict,) = connection.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot read backup {source}: {exc}") from exc
    finally:
        connection.close()
    if verdict != "ok":
        raise BackupError(f"backup {source} is damaged: SQLite's check says {verdict}")
    if not _known(revision):
        raise BackupError(
            f"backup {source} is at schema revision {revision}, which this Ruche does not "
            "know: a newer Ruche made it; restore it with that version"
        )
    return revision


def _leave_wal(database: Path) -> None:
    """Fold the old database's WAL into it and delete the WAL and its index, so that none
    is left for SQLite to replay into the restored file. SQLite refuses to leave WAL mode
    while another connection has the database open: that is `DatabaseInUse`."""
    try:
        connection = sqlite3.connect(
            _sqlite_uri(database, "rw"), uri=True, isolation_level=None, timeout=1.0
        )
    except sqlite3.Error:
        connection = None
    if connection is not None:
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            (mode,) = connection.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise DatabaseInUse(f"another process has {database} open: stop it first") from exc
            mode = None  # a damaged database being replaced: its WAL is dropped below
        except sqlite3.DatabaseError:
            mode = None  # not a database at all (replaced with force): nothing to fold
        finally:
            connection.close()
        if mode == "wal":
            raise DatabaseInUse(f"another process has {database} open: stop it first")
    for stale in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _leaving_no_trace(source: Path) -> Iterator[None]:
    """Reading a WAL-mode file (a copy of a live database rather than a backup) makes
    SQLite create its `-wal` and `-shm` beside it: remove those this read created, which
    hold nothing since it wrote nothing."""
    sidecars = (Path(f"{source}-wal"), Path(f"{source}-shm"))
    before = {path for path in sidecars if path.exists()}
    try:
        yield
    finally:
        wal = sidecars[0]
        if wal in before or not wal.exists() or wal.stat().st_size == 0:
            for path in sidecars:
                if path not in before:
                    path.unlink(missing_ok=True)


def restore_sqlite(url: str, source: Path, *, force: bool) -> RestoreDone:
    """Put the backup `source` in place of the SQLite database at `url`, then migrate it."""
    database = _database_of(url)
    with _leaving_no_trace(source):
        return _restore(url, database, source, force=force)


def _restore(url: str, database: Path, source: Path, *, force: bool) -> RestoreDone:
    revision = inspect_backup(source)
    if database.exists() and database.resolve() == source.resolve():
        raise BackupError(f"{source} is the database itself")
    if not database.parent.is_dir():
        raise BackupError(f"cannot restore into {database}: {database.parent} is not a folder")
    try:
        with replacing_database(database):
            replaced = database.exists()
            if replaced and not force:
                raise BackupError(
                    f"{database} already exists: add --force to replace it with {source}"
                )
            backup = _open_database(source, "ro", "backup")
            try:
                backup.execute("BEGIN")
                with _removed_on_failure(_temporary(database, "restore")) as temporary:
                    _copy(backup, temporary, step_pages=-1, on_progress=None)
                    backup.execute("COMMIT")
                    _owned_like(temporary, database if replaced else database.parent)
                    if replaced:
                        _leave_wal(database)
                    else:
                        _leave_wal_files(database)
                    temporary.replace(database)
                    _fsync_dir(database.parent)
            finally:
                backup.close()
            # Under the lock still: a server started meanwhile waits for the latest schema.
            run_migrations(url)
            latest = _current(database)
    except DatabaseInUse as exc:
        raise BackupError(str(exc)) from exc
    except sqlite3.Error as exc:
        raise BackupError(f"restoring {source} into {database} failed: {exc}") from exc
    except OSError as exc:
        raise BackupError(f"cannot restore into {database}: {exc.strerror}") from exc
    return RestoreDone(source=source, database=database, replaced=replaced,
                       from_revision=revision, to_revision=latest)  # fmt: skip


def _leave_wal_files(database: Path) -> None:
    """No database, but perhaps the WAL of a deleted one: it must not meet the new file."""
    for stale in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)


def _owned_like(path: Path, model: Path) -> None:
    """Run as root, give the restored file the owner (and, replacing a database, the
    mode) of what it replaces, or of its folder: the server's account must write it."""
    if os.geteuid() != 0:
        return
    status = model.stat()
    os.chown(path, status.st_uid, status.st_gid)
    if model.is_file():
        path.chmod(status.st_mode & 0o7777)


def _current(database: Path) -> str:
    # Read-write, and the only connection: closing it removes the -wal and -shm the
    # migrations left, which would otherwise belong to whoever ran the restore.
    connection = _open_database(database, "rw", "database")
    try:
        revision = _revision(connection)
    finally:
        connection.close()
    if revision is None:  # pragma: no cover - run_migrations just wrote it
        raise BackupError(f"{database} has no schema revision after migrating")
    return revision


# --- what the commands print ----------------------------------------------------------


def human_size(size: int) -> str:
    """
    >>> human_size(12_902_400)
    '12.3 MiB'
    >>> human_size(900)
    '900 bytes'
    """
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


class ProgressLines:
    """A `Progress` that says how far a backup is, one line per tenth, through `say`;
    silent for a database one step copies whole."""

    def __init__(self, say: Callable[[str], None], *, step_pages: int = STEP_PAGES) -> None:
        self._say = say
        self._step_pages = step_pages
        self._tenth = -1

    def __call__(self, copied: int, total: int) -> None:
        if total <= self._step_pages:
            return
        tenth = copied * 10 // total
        if tenth != self._tenth:
            self._tenth = tenth
            self._say(f"backup: {copied * 100 // total}% ({copied} of {total} pages)")


def describe_backup(done: BackupDone) -> str:
    revision = "no schema revision" if done.revision is None else f"schema revision {done.revision}"
    return f"backup written to {done.path}: {human_size(done.size)} ({done.size} bytes), {revision}"


def describe_restore(done: RestoreDone) -> str:
    if done.from_revision == done.to_revision:
        schema = f"schema revision {done.to_revision}, the latest"
    else:
        schema = (
            f"schema revision {done.from_revision} (the backup's) migrated to "
            f"{done.to_revision} (the latest)"
        )
    how = "replaced" if done.replaced else "created"
    return f"restored {done.source} into {done.database} ({how}): {schema}"
