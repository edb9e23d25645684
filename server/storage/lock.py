"""Who is using an SQLite database: a lock file beside it, held by every server process.

```python
held = hold_database("sqlite:////var/lib/ruche/ruche.db")   # ruche server run, ingest
...
held.release()

with replacing_database(Path("/var/lib/ruche/ruche.db")):      # ruche server restore
    ...                                                         # DatabaseInUse otherwise
```

`ruche server run` and each `ruche server ingest` hold a shared `flock` on
`<database>.lock` while they run; `ruche server restore` takes it exclusively, so it
refuses while any of them runs, and a server started during a restore waits for it to
end. The kernel drops an flock when its process exits, however it exits: a crashed
server leaves no stale lock behind. PostgreSQL needs none (the server never restores it).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"


class DatabaseInUse(RuntimeError):  # noqa: N818 - reads as a state, like the errno it wraps
    """A process holds the database: a server, or a restore under way."""


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def lock_file(database: Path) -> Path:
    """`ruche.db` -> `ruche.db.lock`, in the same folder."""
    return database.with_name(database.name + LOCK_SUFFIX)


def _open(path: Path) -> int:
    # Read-only is all flock needs: a lock file root made (a restore run as root before
    # the server ever ran) stays usable by the server's own account.
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


class HeldDatabase:
    """A shared hold on a database's lock file; `release()` lets it go (exit does too)."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def hold_database(url: str) -> HeldDatabase:
    """Hold `url`'s lock file shared for as long as this server process runs.

    Waits, saying so in the log, while a restore holds it exclusively. A no-op for
    PostgreSQL and in-memory SQLite."""
    database = sqlite_file(url)
    if database is None:
        return HeldDatabase(None)
    try:
        fd = _open(lock_file(database))
    except OSError as exc:
        # Not a reason to stay down: the server runs, only a restore can no longer see it.
        log.warning("cannot open %s (%s): `ruche server restore` will not know this server "
                    "runs", lock_file(database), exc.strerror)  # fmt: skip
        return HeldDatabase(None)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("database %s is being restored: waiting until the restore ends", database)
            fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return HeldDatabase(fd)


@contextmanager
def replacing_database(database: Path) -> Iterator[None]:
    """Hold `database`'s lock file exclusively, or raise `DatabaseInUse` at once."""
    fd = _open(lock_file(database))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseInUse(
                f"a Ruche server is running on {database} (it holds {lock_file(database)}): "
                "stop it first"
            ) from None
        yield
    finally:
        os.close(fd)
