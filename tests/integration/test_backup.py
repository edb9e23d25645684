"""`ruche server backup` and `ruche server restore` on real SQLite files, with a real
`ruche server run` writing (or holding the database) where the test says so."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory

from ruche.broker import PresenceState
from ruche.cli import main
from ruche.server.deploy.backup import BackupError, backup_sqlite
from ruche.server.storage.db import alembic_config, run_migrations
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

PASSWORD = "server-password-long-enough"
NOBODY = 65534


def ruche(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruche", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Done]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`ruche ...` run in this process: what `python -m ruche` runs, without a second or
    two of start-up each time."""

    def run(*args: str) -> Done:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


def write_config(path: Path, database: Path, *, broker: Any = None, http_port: int = 0) -> Path:
    """A server.toml for `database`; with `broker` (the rig), one `ruche server run` can use."""
    text = f'database_url = "sqlite:///{database}"\n'
    if broker is None:
        text += f'[mqtt]\npassword = "{PASSWORD}"\n'
    else:
        server = broker.server
        text += (
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'username = "{server.username}"\n'
            f'password = "{server.password.get_secret_value()}"\n[http]\nport = {http_port}\n'
        )
    path.write_text(text, encoding="utf-8")
    return path


def revisions() -> tuple[str, str]:
    """(the revision before the head, the head) of Ruche's migrations."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = scripts.get_current_head()
    assert head is not None
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    return previous, head


@contextmanager
def opened(database: Path | str, **options: Any) -> Iterator[sqlite3.Connection]:
    """A connection, committed if the block succeeds and closed after it (sqlite3's own
    `with` commits but leaves it open, which a restore would rightly take for a user)."""
    db = sqlite3.connect(database, **options)
    try:
        with db:
            yield db
    finally:
        db.close()


def revision_of(database: Path) -> str:
    with opened(database) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(revision)


def fill(database: Path, rows: int, *, site: str = "archive") -> None:
    """Old events of a site no agent serves: bulk, so the database spans many backup steps."""
    pad = "x" * 400
    with opened(database) as db:
        db.executemany(
            "INSERT INTO events (site, agent, seq, channel, device, kind, ts, received_at,"
            " payload) VALUES (?, 'old', ?, 'presence', 'd1', 'occupied',"
            " '2026-01-05 09:00:00.000000', '2026-01-05 09:00:01.000000', ?)",
            [(site, seq, f'{{"seq": {seq}, "pad": "{pad}"}}') for seq in range(1, rows + 1)],
        )


def add_member(database: Path, email: str) -> None:
    with opened(database) as db:
        db.execute("INSERT INTO members (name, email, active) VALUES ('M', ?, 1)", (email,))


def members(database: Path) -> list[str]:
    with opened(database) as db:
        return [row[0] for row in db.execute("SELECT email FROM members ORDER BY email")]


@contextmanager
def serving(config: Path, http_port: int) -> Iterator[subprocess.Popen[str]]:
    """`ruche server run` on `config`, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-m", "ruche", "server", "run", "--config",
                             str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", http_port, timeout=30), "the API never came up"
        yield proc
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


# --- backup ------------------------------------------------------------------------------


def stored_by(database: Path, site: str, agent: str = "agent-a") -> list[int]:
    """The seqs of `agent`'s events stored in `database`, in order."""
    with opened(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute(
            "SELECT seq FROM events WHERE site = ? AND agent = ? ORDER BY seq", (site, agent)
        ).fetchall()
    return [int(seq) for (seq,) in rows]


@contextmanager
def desk_changing(agent: Any, desk: str) -> Iterator[None]:
    """The agent records `desk` taken and left every 5 ms, in a thread, until the block ends."""
    stop = threading.Event()

    def produce() -> None:
        states = (PresenceState.OCCUPIED, PresenceState.VACANT)
        n = 0
        while not stop.wait(0.005):
            agent.record_presence(desk, states[n % 2])
            n += 1

    producer = threading.Thread(target=produce, name="desk-changes")
    producer.start()
    try:
        yield
    finally:
        stop.set()
        producer.join()


class TestBackupWhileServing:
    """A backup taken while `ruche server run` stores an agent's events is one consistent
    moment: every event up to the agent's acked seq, none after, in a self-contained file."""

    def test_consistent_copy_while_the_server_writes(
        self, site: Any, edge_agent: Callable[..., Any], register_devices: Any, tmp_path: Path
    ) -> None:
        database = tmp_path / "ruche.db"
        url = f"sqlite:///{database}"
        run_migrations(url)
        register_devices(url, site.site, desks={"agent-a": ["desk-1"]})
        fill(database, 12_000)  # 2000 pages: eight steps of 256
        http_port = free_port()
        config = write_config(tmp_path / "server.toml", database, broker=site.broker,
                              http_port=http_port)  # fmt: skip
        steps: list[tuple[int, int]] = []

        def slowly(copied: int, total: int) -> None:
            steps.append((copied, total))
            time.sleep(0.3)  # the server goes on storing between the steps

        with serving(config, http_port), desk_changing(edge_agent().agent, "desk-1"):
            deadline = time.monotonic() + 20
            while len(stored_by(database, site.site)) < 50:
                assert time.monotonic() < deadline, "the server stored nothing"
                time.sleep(0.05)
            before = len(stored_by(database, site.site))
            done = backup_sqlite(url, tmp_path / "b.db", on_progress=slowly, step_pages=256)
            after = len(stored_by(database, site.site))
        assert len(steps) >= 5
        assert steps[-1][0] == steps[-1][1] == done.pages
        assert after > before + 20, "events were stored during the backup"
        seqs = stored_by(done.path, site.site)
        with opened(done.path) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            (acked,) = copy.execute(
                "SELECT acked_seq FROM agent_progress WHERE site = ? AND agent = 'agent-a'",
                (site.site,),
            ).fetchone()
            (archived,) = copy.execute(
                "SELECT count(*) FROM events WHERE site = 'archive'"
            ).fetchone()
        assert before <= len(seqs) < after
        assert seqs == list(range(1, acked + 1)), "the events and their ack from one moment"
        assert archived == 12_000
        assert done.path.read_bytes()[18:20] == b"\x01\x01", "a rollback-journal file, no WAL"
        assert not Path(f"{done.path}-wal").exists()
        assert done.size == done.path.stat().st_size
        assert done.revision == revision_of(database)


class TestBackupCommand:
    """`ruche server backup`: progress for a large database, then one line with the file and
    its size; one `ruche: error:` line with status 2 for what cannot be backed up."""

    def test_progress_and_final_line(self, tmp_path: Path) -> None:
        database = tmp_path / "ruche.db"
        run_migrations(f"sqlite:///{database}")
        fill(database, 12_000)
        out = tmp_path / "backups" / "ruche-backup.db"
        out.parent.mkdir()
        config = write_config(tmp_path / "server.toml", database)
        done = ruche("server", "backup", "--config", str(config), "--out", str(out))
        assert done.returncode == 0, done.stderr
        progress = done.stderr.splitlines()
        assert len(progress) >= 2
        assert all(line.startswith("backup: ") and "pages)" in line for line in progress)
        assert progress[-1].startswith("backup: 100% (")
        size = out.stat().st_size
        assert done.stdout.splitlines() == [
            f"backup written to {out}: {size / 1024 / 1024:.1f} MiB ({size} bytes), "
            f"schema revision {revisions()[1]}"
        ]
        assert [p.name for p in out.parent.iterdir()] == ["ruche-backup.db"], "no temporary left"

    def test_small_database_prints_no_progress(self, tmp_path: Path, cli: Cli) -> None:
        database = tmp_path / "ruche.db"
        run_migrations(f"sqlite:///{database}")
        config = write_config(tmp_path / "server.toml", database)
        done = cli("server", "backup", "--config", str(config), "--out", str(tmp_path / "b.db"))
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout.startswith(f"backup written to {tmp_path / 'b.db'}: ")

    @pytest.mark.parametrize(
        ("setup", "out", "expected"),
        [
            ("missing", "b.db", "database {db} does not exist"),
            ("not-a-database", "b.db", "database {db} is not an SQLite database"),
            ("ok", "no/such/folder/b.db", "cannot write {out}: {out_dir} is not a folder"),
            ("ok", "ruche.db", "{out} is the database itself: write the backup elsewhere"),
        ],
    )  # fmt: skip
    def test_refusals(self, tmp_path: Path, cli: Cli, setup: str, out: str, expected: str) -> None:
        database = tmp_path / "ruche.db"
        if setup == "ok":
            run_migrations(f"sqlite:///{database}")
        elif setup == "not-a-database":
            database.write_text("hello, not SQLite\n" * 100)
        target = tmp_path / out
        config = write_config(tmp_path / "server.toml", database)
        done = cli("server", "backup", "--config", str(config), "--out", str(target))
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "ruche: error: " + expected.format(db=database, out=target, out_dir=target.parent)
        ]
        assert not target.exists() or target == database

    def test_postgresql_is_told_to_use_pg_dump(self, tmp_path: Path, cli: Cli) -> None:
        config = tmp_path / "server.toml"
        config.write_text(
            'database_url = "postgresql+psycopg://ruche:s3cret%40x@db.internal:5433/ruche'
            '?sslmode=require"\n'
            f'[mqtt]\npassword = "{PASSWORD}"\n',
            encoding="utf-8",
        )
        done = cli("server", "backup", "--config", str(config), "--out", "/backups/ruche.dump")
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "ruche: error: the database is PostgreSQL: back it up with PostgreSQL's own tools: "
            "pg_dump --format=custom --file=/backups/ruche.dump "
            "'--dbname=postgresql://ruche@db.internal:5433/ruche?sslmode=require'"
        ]
        assert "s3cret" not in done.stderr

    def test_library_refuses_postgresql_urls(self, tmp_path: Path) -> None:
        with pytest.raises(BackupError, match="is not an SQLite file"):
            backup_sqlite("postgresql+psycopg://ruche@db/ruche", tmp_path / "b.db")


# --- restore -----------------------------------------------------------------------------


class TestRestore:
    """`ruche server restore`: a backup of an older schema comes back at the latest; an
    existing database is replaced only with --force, and its old WAL is not replayed."""

    def test_older_backup_into_a_new_place_is_migrated(self, tmp_path: Path, cli: Cli) -> None:
        previous, head = revisions()
        old = tmp_path / "old.db"
        run_migrations(f"sqlite:///{old}", revision=previous)
        add_member(old, "ada@example.org")
        backup = tmp_path / "backup.db"
        old_config = write_config(tmp_path / "old.toml", old)
        made = cli("server", "backup", "--config", str(old_config), "--out", str(backup))
        assert made.returncode == 0, made.stderr
        assert made.stdout.rstrip().endswith(f"schema revision {previous}")
        fresh = tmp_path / "srv" / "ruche.db"
        fresh.parent.mkdir()
        config = write_config(tmp_path / "new.toml", fresh)
        done = cli("server", "restore", "--config", str(config), "--from", str(backup))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"restored {backup} into {fresh} (created): schema revision {previous} "
            f"(the backup's) migrated to {head} (the latest)"
        ]
        assert revision_of(fresh) == head
        assert members(fresh) == ["ada@example.org"]
        assert sorted(p.name for p in fresh.parent.iterdir() if ".tmp" in p.name) == []

    def test_existing_database_needs_force_and_its_wal_is_not_replayed(
        self, tmp_path: Path, cli: Cli
    ) -> None:
        _, head = revisions()
        database = tmp_path / "ruche.db"
        run_migrations(f"sqlite:///{database}")
        add_member(database, "in-the-backup@example.org")
        config = write_config(tmp_path / "server.toml", database)
        backup = tmp_path / "backup.db"
        assert (
            cli("server", "backup", "--config", str(config), "--out", str(backup)).returncode == 0
        )
        refused = cli("server", "restore", "--config", str(config), "--from", str(backup))
        assert refused.returncode == 2
        assert refused.stderr.splitlines() == [
            f"ruche: error: {database} already exists: add --force to replace it with {backup}"
        ]
        # Later writes that sit in the WAL only: a restore must not let SQLite replay them.
        writer = sqlite3.connect(database, isolation_level=None)
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute(
            "INSERT INTO members (name, email, active) VALUES ('W', 'later@example.org', 1)"
        )
        crashed = {path: path.read_bytes() for path in (database, Path(f"{database}-wal"))}
        writer.close()  # it checkpoints and deletes the WAL: put back what a crash leaves
        for path, data in crashed.items():
            path.write_bytes(data)
        assert Path(f"{database}-wal").stat().st_size > 0
        as_root = os.geteuid() == 0
        if as_root:  # the server's own account owns its database; a root restore keeps it so
            os.chown(database, NOBODY, NOBODY)
            database.chmod(0o640)

        done = cli("server", "restore", "--config", str(config), "--from", str(backup), "--force")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"restored {backup} into {database} (replaced): schema revision {head}, the latest"
        ]
        if as_root:
            status = database.stat()
            assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (NOBODY, NOBODY, 0o640)
        assert not Path(f"{database}-wal").exists(), "nothing left owned by the restore's user"
        assert not Path(f"{database}-shm").exists()
        assert members(database) == ["in-the-backup@example.org"]
        with opened(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    def test_a_copied_live_file_restores_and_leaves_nothing_beside_it(
        self, tmp_path: Path, cli: Cli
    ) -> None:
        live = tmp_path / "live.db"
        run_migrations(f"sqlite:///{live}")
        add_member(live, "copied@example.org")
        copied = tmp_path / "copied.db"
        copied.write_bytes(live.read_bytes())  # cp of a database in WAL mode
        assert copied.read_bytes()[18:20] == b"\x02\x02"
        database = tmp_path / "srv.db"
        config = write_config(tmp_path / "server.toml", database)
        done = cli("server", "restore", "--config", str(config), "--from", str(copied))
        assert done.returncode == 0, done.stderr
        assert members(database) == ["copied@example.org"]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copied")) == [
            "copied.db"
        ]

    @pytest.mark.parametrize(
        ("make", "expected"),
        [
            ("missing", "ruche: error: backup {src} does not exist"),
            ("folder", "ruche: error: backup {src} is not a file"),
            ("text", "ruche: error: backup {src} is not an SQLite database"),
            ("other-sqlite", "ruche: error: {src} is not a Ruche database (it has no "
                             "alembic_version table)"),
            ("newer", "ruche: error: backup {src} is at schema revision 9999_from_the_future, "
                      "which this Ruche does not know: a newer Ruche made it; restore it with "
                      "that version"),
        ],
    )  # fmt: skip
    def test_refuses_what_is_not_a_ruche_backup(
        self, tmp_path: Path, cli: Cli, make: str, expected: str
    ) -> None:
        source = tmp_path / "backup.db"
        if make == "folder":
            source.mkdir()
        elif make == "text":
            source.write_text("not a database\n" * 200)
        elif make == "other-sqlite":
            with opened(source) as db:
                db.execute("CREATE TABLE notes (body TEXT)")
        elif make == "newer":
            run_migrations(f"sqlite:///{source}")
            with opened(source) as db:
                db.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        database = tmp_path / "ruche.db"
        config = write_config(tmp_path / "server.toml", database)
        done = cli("server", "restore", "--config", str(config), "--from", str(source), "--force")
        assert done.returncode == 2
        assert done.stderr.splitlines() == [expected.format(src=source)]
        assert not database.exists()

    def test_postgresql_is_told_to_use_pg_restore(self, tmp_path: Path, cli: Cli) -> None:
        config = tmp_path / "server.toml"
        config.write_text(
            'database_url = "postgresql+psycopg://ruche:s3cret@db/ruche"\n'
            f'[mqtt]\npassword = "{PASSWORD}"\n',
            encoding="utf-8",
        )
        done = cli("server", "restore", "--config", str(config), "--from", "ruche.dump")
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "ruche: error: the database is PostgreSQL: restore it with PostgreSQL's own tools: "
            "pg_restore --clean --if-exists --dbname=postgresql://ruche@db/ruche ruche.dump; "
            "`ruche server run` then migrates it"
        ]


class TestRestoreRefusesWhileInUse:
    """A restore never swaps the file under a process that has it open: a running server
    holds the database's lock file; any other process keeps SQLite from leaving WAL mode."""

    def test_refused_while_the_server_runs(self, site: Any, tmp_path: Path, cli: Cli) -> None:
        database = tmp_path / "ruche.db"
        run_migrations(f"sqlite:///{database}")
        backup = tmp_path / "backup.db"
        backup_sqlite(f"sqlite:///{database}", backup)
        add_member(database, "live@example.org")
        http_port = free_port()
        config = write_config(tmp_path / "server.toml", database, broker=site.broker,
                              http_port=http_port)  # fmt: skip
        with serving(config, http_port):
            done = cli("server", "restore", "--config", str(config), "--from", str(backup),
                         "--force")  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"ruche: error: a Ruche server is running on {database} (it holds "
            f"{database}.lock): stop it first"
        ]
        assert members(database) == ["live@example.org"]
        # Stopped, the same command goes through.
        again = cli("server", "restore", "--config", str(config), "--from", str(backup), "--force")
        assert again.returncode == 0, again.stderr
        assert members(database) == []

    def test_refused_while_another_process_has_it_open(self, tmp_path: Path, cli: Cli) -> None:
        database = tmp_path / "ruche.db"
        run_migrations(f"sqlite:///{database}")
        backup = tmp_path / "backup.db"
        backup_sqlite(f"sqlite:///{database}", backup)
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
             "db.execute('SELECT count(*) FROM members').fetchone(); print('open', flush=True);"
             "sys.stdin.read()", str(database)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "open\n"
            config = write_config(tmp_path / "server.toml", database)
            done = cli("server", "restore", "--config", str(config), "--from", str(backup),
                         "--force")  # fmt: skip
        finally:
            holder.communicate("", timeout=10)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"ruche: error: another process has {database} open: stop it first"
        ]
        assert database.exists()
