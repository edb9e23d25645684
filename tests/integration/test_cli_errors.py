"""What a person can get wrong at the `ruche` command, each said in one line naming the fix.

Every case runs the installed `ruche` console script in a process of its own and expects
exit status 2, exactly one line on stderr (`ruche: error: ...`), no traceback, and no
password anywhere in what it printed: database URLs carry one, and the PostgreSQL cases
use it for real (the rig's server trusts local connections, so any password is accepted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ruche.server.storage.db import run_migrations
from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

RUCHE = Path(sys.executable).with_name("ruche")
PASSWORD = "pw-4f9c2e7a1b"
"""In every URL and config below that has a password; it must never be printed."""
SERVER_PASSWORD = "server-password-long-enough"
MIGRATE = "ruche server migrate --database"


def ruche(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RUCHE_")}
    environment.update(env or {})
    return run([str(RUCHE), *map(str, args)], env=environment, timeout=timeout)


def run(
    command: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`command` in a session of its own, killed with whatever it started if it outlives
    `timeout`: a case that fails by not failing (a benchmark that starts after all) leaves
    no broker or server behind."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, start_new_session=True) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def error_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The one line `done` said on stderr, once checked: exit 2, no traceback, no
    password, and each of `expected` in it."""
    printed = done.stdout + done.stderr
    assert "Traceback" not in printed, done.stderr
    assert PASSWORD not in printed, printed
    assert SERVER_PASSWORD not in printed, printed
    assert done.returncode == 2, printed
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    (line,) = lines
    assert line.startswith("ruche: error: "), line
    for fragment in expected:
        assert fragment in line, line
    return line


def with_password(url: str) -> str:
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def server_toml(path: Path, database_url: str, **sections: str) -> Path:
    """A server config on `database_url`; `sections` replace or add whole `[name]` tables."""
    tables = {"mqtt": f'password = "{SERVER_PASSWORD}"\n', **sections}
    body = f'database_url = "{database_url}"\n'
    body += "".join(f"[{name}]\n{content}" for name, content in tables.items())
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database."""
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    return url


@pytest.fixture
def empty_pg(pg_url: str) -> str:
    """The test's own PostgreSQL database, never migrated, in a URL with a password."""
    return with_password(pg_url)


# The commands that open the registry with `--database`, with what else each needs.
def _registry_commands(tmp: Path) -> dict[str, list[str | Path]]:
    return {
        "admin key": ["admin", "key", "--role", "admin"],
        "admin site": ["admin", "site", "--slug", "lyon", "--name", "Lyon",
                       "--timezone", "Europe/Paris"],
        "admin member": ["admin", "member", "--name", "Ada", "--email", "ada@example.org"],
        "admin badge": ["admin", "badge", "--member", "ada@example.org", "--site", "lyon",
                        "--uid", "04a22b1a"],
        "audit verify": ["audit", "verify"],
        "billing close": ["billing", "close", "--period", "2026-11"],
        "billing export": ["billing", "export", "--period", "2026-11", "--out", tmp / "x.csv"],
        "billing pdf": ["billing", "pdf", "--invoice", "lyon-2026-11-0001",
                        "--out", tmp / "x.pdf"],
    }  # fmt: skip


REGISTRY_COMMANDS = list(_registry_commands(Path()))

# The commands that open the registry through the server's config file, each ending in
# `--config`, with what else it needs.
CONFIG_COMMANDS: Mapping[str, tuple[str, ...]] = {
    "server run": ("server", "run"),
    "server ingest": ("server", "ingest"),
    "server broker-config": ("server", "broker-config", "--out", "{tmp}/broker"),
    "server backup": ("server", "backup", "--out", "{tmp}/backup.db"),
    "server restore": ("server", "restore", "--from", "{tmp}/backup.db"),
    "admin agent add": ("admin", "agent", "add", "--site", "lyon", "--id", "door-a",
                        "--broker-host", "broker.lan"),
    "admin agent disable": ("admin", "agent", "disable", "--site", "lyon", "--id", "door-a"),
}  # fmt: skip


def _config_command(command: str, tmp: Path) -> list[str]:
    return [*(a.format(tmp=tmp) for a in CONFIG_COMMANDS[command]), "--config"]


# Database URLs each wrong in its own way, and what the error says of each.
BAD_URLS: Mapping[str, tuple[str, str]] = {
    "unparsable": (f"not a url:{PASSWORD}@", "is not one SQLAlchemy can read"),
    "unknown database": (f"nosuchdb://ruche:{PASSWORD}@127.0.0.1/ruche",
                         "SQLAlchemy knows no database 'nosuchdb'"),
    "driver not installed": (f"mysql+mysqldb://ruche:{PASSWORD}@127.0.0.1/ruche",
                             "is not installed"),
    "refused": (f"postgresql+psycopg://ruche:{PASSWORD}@127.0.0.1:1/ruche",
                "Connection refused"),
    "unknown host": (f"postgresql+psycopg://ruche:{PASSWORD}@no-such-host.invalid/ruche",
                     "no-such-host.invalid"),
}  # fmt: skip


class TestDatabaseUrls:
    """A URL SQLAlchemy cannot read, a database it has no driver for, one that does not
    answer, a SQLite folder that is not there: said before anything is opened."""

    @pytest.mark.parametrize("case", list(BAD_URLS))
    def test_migrate(self, case: str) -> None:
        url, said = BAD_URLS[case]
        error_line(ruche("server", "migrate", "--database", url), said)

    @pytest.mark.parametrize("command", REGISTRY_COMMANDS)
    def test_every_registry_command(self, command: str, tmp_path: Path) -> None:
        args = _registry_commands(tmp_path)[command]
        for case in ("unparsable", "refused"):
            url, said = BAD_URLS[case]
            error_line(ruche(*args, "--database", url), said)

    def test_refused_names_the_fix_with_the_password_hidden(self) -> None:
        url, _ = BAD_URLS["refused"]
        line = error_line(ruche("admin", "member", "--database", url, "--name", "A",
                                "--email", "a@example.org"))  # fmt: skip
        assert "postgresql+psycopg://ruche:***@127.0.0.1:1/ruche" in line
        assert "check the URL, and that the database is running" in line

    def test_missing_sqlite_folder(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'nowhere' / 'ruche.db'}"
        error_line(ruche("server", "migrate", "--database", url),
                   f"the folder {tmp_path / 'nowhere'} does not exist")  # fmt: skip
        error_line(ruche("audit", "verify", "--database", url), "does not exist")

    def test_from_the_environment(self) -> None:
        url, said = BAD_URLS["refused"]
        error_line(ruche("audit", "verify", env={"RUCHE_DATABASE_URL": url}), said)

    @pytest.mark.parametrize("command", list(CONFIG_COMMANDS))
    def test_in_the_server_config(self, command: str, tmp_path: Path) -> None:
        # backup and restore look at the database themselves, once they can read its URL.
        cases = ["unparsable"] if command in ("server backup", "server restore") else [
            "unparsable", "refused"]  # fmt: skip
        for case in cases:
            url, said = BAD_URLS[case]
            config = server_toml(tmp_path / "server.toml", url)
            error_line(ruche(*_config_command(command, tmp_path), config), said)

    def test_server_init(self, tmp_path: Path) -> None:
        for case in ("unparsable", "refused"):
            url, said = BAD_URLS[case]
            error_line(ruche("server", "init", "--config-dir", tmp_path / "etc", "--state-dir",
                             tmp_path / "var", "--database", url), said)  # fmt: skip

    def test_bench_ingest(self) -> None:
        url, said = BAD_URLS["refused"]
        error_line(ruche("bench", "ingest", "--database", url, "--seconds", "1"), said)


class TestUnmigratedDatabase:
    """A command that uses the registry on a database without Ruche's schema, or with an
    older one, says to run `ruche server migrate --database ...`; one migrated by a newer
    Ruche says to upgrade. Nothing is created on the way."""

    @pytest.mark.parametrize("command", REGISTRY_COMMANDS)
    def test_empty_postgresql(self, command: str, empty_pg: str, tmp_path: Path) -> None:
        args = _registry_commands(tmp_path)[command]
        line = error_line(ruche(*args, "--database", empty_pg), "has no Ruche schema", MIGRATE)
        assert make_url(empty_pg).render_as_string(hide_password=True) in line

    @pytest.mark.parametrize(
        "command",
        ["server ingest", "server broker-config", "admin agent add", "admin agent disable"],
    )
    def test_commands_on_the_server_config(
        self, command: str, empty_pg: str, tmp_path: Path
    ) -> None:
        config = server_toml(tmp_path / "server.toml", empty_pg)
        error_line(ruche(*_config_command(command, tmp_path), config), "no Ruche schema", MIGRATE)

    def test_sqlite_file_not_there_is_not_made(self, tmp_path: Path) -> None:
        db = tmp_path / "typo.db"
        error_line(ruche("admin", "member", "--database", f"sqlite:///{db}", "--name", "A",
                         "--email", "a@example.org"), "no such file", MIGRATE)  # fmt: skip
        assert not db.exists()

    def test_older_schema(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'old.db'}"
        run_migrations(url, "0001")
        error_line(ruche("audit", "verify", "--database", url), "at schema 0001, older", MIGRATE)
        assert ruche("server", "migrate", "--database", url).returncode == 0
        assert ruche("audit", "verify", "--database", url).returncode == 0

    def test_newer_schema(self, sqlite_url: str) -> None:
        engine = create_engine(sqlite_url)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        engine.dispose()
        for args in (("audit", "verify"), ("server", "migrate")):
            error_line(ruche(*args, "--database", sqlite_url), "schema 9999, newer",
                       "upgrade Ruche")  # fmt: skip

    def test_server_run_takes_it_as_it_migrates(self, empty_pg: str, tmp_path: Path) -> None:
        # Past the database, it stops at the broker's unknown host: the schema was no error.
        mqtt = f'host = "no-such-host.invalid"\npassword = "{SERVER_PASSWORD}"\n'
        config = server_toml(tmp_path / "server.toml", empty_pg, mqtt=mqtt)
        done = ruche("server", "run", "--config", config, "--log-level", "WARNING")
        error_line(done, "MQTT broker host 'no-such-host.invalid' is unknown")


class TestSecrets:
    """A URL's password is never printed, whether things go well or not."""

    def test_migrate_hides_the_password(self, empty_pg: str) -> None:
        done = ruche("server", "migrate", "--database", empty_pg)
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        shown = make_url(empty_pg).render_as_string(hide_password=True)
        assert done.stdout.strip() == f"database {shown} is at the latest schema"
        assert ":***@" in shown

    def test_then_the_registry_commands_work(self, empty_pg: str) -> None:
        assert ruche("server", "migrate", "--database", empty_pg).returncode == 0
        done = ruche("admin", "member", "--database", empty_pg, "--name", "A",
                     "--email", "a@example.org")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr

    def test_influx_url_with_a_password_is_refused(self, sqlite_url: str, tmp_path: Path) -> None:
        # The writer logs its URL with every failed write.
        influx = f'url = "http://ruche:{PASSWORD}@127.0.0.1:8086"\n'
        config = server_toml(tmp_path / "server.toml", sqlite_url, influx=influx)
        error_line(ruche("server", "run", "--config", config), "influx.url", "holds a password",
                   "set username and password")  # fmt: skip

    def test_grafana_url_with_a_password(self) -> None:
        url = f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"
        line = error_line(ruche("dashboards", "push", "--url", url, "--token", "t"),
                          "did not answer (Connection refused)", "check --url")  # fmt: skip
        assert "http://admin:***@127.0.0.1:" in line


class TestLogLevel:
    """`--log-level LOUD` is refused before anything starts, naming the levels."""

    @pytest.mark.parametrize(
        "args",
        [
            ("server", "run"),
            ("server", "ingest"),
            ("edge", "run", "--config", "agent.toml"),
        ],
    )
    def test_unknown_level(self, args: tuple[str, ...]) -> None:
        error_line(ruche(*args, "--log-level", "LOUD"), "--log-level 'LOUD'",
                   "DEBUG, INFO, WARNING, ERROR")  # fmt: skip

    def test_lower_case_still_does(self, tmp_path: Path) -> None:
        done = ruche("edge", "run", "--config", tmp_path / "nope.toml", "--log-level", "debug")
        error_line(done, "no such config file")


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    """A file this process may not read: mode 000, or, for root (whom modes do not stop),
    a kernel setting that is write-only for everyone."""
    path = tmp_path / "secret.toml"
    path.write_text("x = 1\n", encoding="utf-8")
    path.chmod(0)
    yield path if not os.access(path, os.R_OK) else Path("/proc/sys/vm/drop_caches")
    path.chmod(0o600)


# The file option of each command, and what else it needs to get as far as reading.
FILE_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "broker config": ("broker", "config", "--out", "{tmp}/broker", "--accounts"),
    "edge run": ("edge", "run", "--config"),
    "edge install": ("edge", "install", "--root", "{tmp}/root", "--config"),
    "server install": ("server", "install", "--root", "{tmp}/root", "--config"),
    **{name: (*args, "--config") for name, args in CONFIG_COMMANDS.items()},
    "sim run": ("sim", "run", "--scenario"),
}


class TestUnreadableFiles:
    """Every file option: missing, a directory, not readable, not TOML, not UTF-8."""

    def _run(self, command: str, tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
        args = [a.format(tmp=tmp_path) for a in FILE_OPTIONS[command]]
        return ruche(*args, path)

    @pytest.mark.parametrize("command", list(FILE_OPTIONS))
    def test_missing(self, command: str, tmp_path: Path) -> None:
        path = tmp_path / "nope.toml"
        error_line(self._run(command, tmp_path, path), f"{path}: no such")

    @pytest.mark.parametrize("command", list(FILE_OPTIONS))
    def test_directory(self, command: str, tmp_path: Path) -> None:
        error_line(self._run(command, tmp_path, tmp_path), "is a directory: give the path")

    @pytest.mark.parametrize("command", list(FILE_OPTIONS))
    def test_not_readable(self, command: str, tmp_path: Path, unreadable: Path) -> None:
        error_line(self._run(command, tmp_path, unreadable), "permission denied",
                   "readable by this user")  # fmt: skip

    @pytest.mark.parametrize("command", list(FILE_OPTIONS))
    def test_not_toml(self, command: str, tmp_path: Path) -> None:
        path = tmp_path / "bad.toml"
        path.write_text("site = \n", encoding="utf-8")
        error_line(self._run(command, tmp_path, path), "as TOML", "line 1, column 8")

    @pytest.mark.parametrize("command", list(FILE_OPTIONS))
    def test_not_utf8(self, command: str, tmp_path: Path) -> None:
        path = tmp_path / "latin1.toml"
        path.write_bytes('name = "Café"\n'.encode("latin-1"))
        error_line(self._run(command, tmp_path, path), "not UTF-8", "save the")

    def test_invalid_fields_are_one_line(self, tmp_path: Path) -> None:
        config = server_toml(tmp_path / "server.toml", "sqlite:///ruche.db",
                             mqtt=f'port = 99999\npassword = "{SERVER_PASSWORD}"\n',
                             influx='url = "localhost:8086"\n')  # fmt: skip
        error_line(ruche("server", "run", "--config", config), "invalid server configuration:",
                   "mqtt.port:", "; influx.url: ")  # fmt: skip

    def test_files_the_agent_config_names(self, tmp_path: Path) -> None:
        config = tmp_path / "agent.toml"
        body = (
            'site = "lyon"\nagent = "door-a"\nsite_key = "00112233445566778899aabbccddeeff"\n'
            f'state_dir = "{tmp_path / "state"}"\n'
            '[mqtt]\nusername = "lyon/door-a"\npassword = "a-long-enough-password"\n'
            'ca_file = "{ca}"\n'
        )
        config.write_text(body.format(ca=tmp_path / "ca.pem"), encoding="utf-8")
        error_line(ruche("edge", "run", "--config", config), "no such CA file (mqtt.ca_file)")
        (tmp_path / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
        error_line(ruche("edge", "run", "--config", config), "no certificate in this CA file")
        (tmp_path / "state").write_text("", encoding="utf-8")
        config.write_text(body.replace('ca_file = "{ca}"\n', ""), encoding="utf-8")
        error_line(ruche("edge", "run", "--config", config), "state_dir must be a folder")

    def test_files_the_server_config_names(self, sqlite_url: str, tmp_path: Path) -> None:
        (tmp_path / "spool").write_text("", encoding="utf-8")
        config = server_toml(tmp_path / "server.toml", sqlite_url,
                             mqtt=f'ca_file = "{tmp_path / "ca.pem"}"\n'
                                  f'password = "{SERVER_PASSWORD}"\n')  # fmt: skip
        error_line(ruche("server", "ingest", "--config", config), "no such CA file")
        config = server_toml(tmp_path / "server.toml", sqlite_url,
                             influx=f'spool_dir = "{tmp_path / "spool"}"\n')  # fmt: skip
        error_line(ruche("server", "ingest", "--config", config),
                   "influx.spool_dir must be a folder")  # fmt: skip

    @pytest.mark.parametrize(
        "args",
        [
            ("sim", "run", "--scenario", "{scenario}", "--dir"),
            ("demo", "--duration", "1", "--dir"),
            ("broker", "config", "--accounts", "{accounts}", "--out"),
            ("dashboards", "export", "--out"),
        ],
    )
    def test_folder_options_that_are_files(self, args: tuple[str, ...], tmp_path: Path) -> None:
        accounts = tmp_path / "accounts.toml"
        accounts.write_text(f'[server]\npassword = "{SERVER_PASSWORD}"\n', encoding="utf-8")
        scenario = tmp_path / "scenario.toml"
        scenario.write_text("speed = 1\n", encoding="utf-8")
        a_file = tmp_path / "a-file"
        a_file.write_text("", encoding="utf-8")
        filled = [a.format(scenario=scenario, accounts=accounts) for a in args]
        error_line(ruche(*filled, a_file), str(a_file))


class TestBrokerAndInfluxAddresses:
    """The broker's host and port, InfluxDB's URL and Grafana's, where a command uses them."""

    def test_unknown_broker_host(self, sqlite_url: str, tmp_path: Path) -> None:
        mqtt = f'host = "no-such-host.invalid"\npassword = "{SERVER_PASSWORD}"\n'
        config = server_toml(tmp_path / "server.toml", sqlite_url, mqtt=mqtt)
        for action in ("run", "ingest"):
            error_line(ruche("server", action, "--config", config),
                       "MQTT broker host 'no-such-host.invalid' is unknown",
                       "correct [mqtt] host")  # fmt: skip

    def test_broker_port_out_of_range(self, tmp_path: Path) -> None:
        config = server_toml(tmp_path / "server.toml", "sqlite:///ruche.db",
                             mqtt=f'port = 0\npassword = "{SERVER_PASSWORD}"\n')  # fmt: skip
        error_line(ruche("server", "ingest", "--config", config), "mqtt.port:")
        agent = tmp_path / "agent.toml"
        agent.write_text(
            'site = "lyon"\nagent = "door-a"\nsite_key = "00112233445566778899aabbccddeeff"\n'
            '[mqtt]\nport = 70000\nusername = "lyon/door-a"\npassword = "a-long-enough-password"\n',
            encoding="utf-8",
        )
        error_line(ruche("edge", "run", "--config", agent), "mqtt.port:")

    @pytest.mark.slow
    def test_broker_that_refuses(self, sqlite_url: str, tmp_path: Path) -> None:
        # A refused port is waited on (a broker starting at the same time comes up within
        # it), then said.
        mqtt = (f'port = {free_port()}\npassword = "{SERVER_PASSWORD}"\n'
                "connect_timeout_s = 3\n")  # fmt: skip
        config = server_toml(tmp_path / "server.toml", sqlite_url, mqtt=mqtt)
        done = ruche("server", "ingest", "--config", config, "--log-level", "WARNING",
                     timeout=90)  # fmt: skip
        error_line(done, "no MQTT connection to 127.0.0.1:", "is the broker up")

    @pytest.mark.parametrize("url", ["localhost:8086", "http://127.0.0.1:99999", "ftp://x"])
    def test_influx_url(self, url: str, sqlite_url: str, tmp_path: Path) -> None:
        config = server_toml(tmp_path / "server.toml", sqlite_url, influx=f'url = "{url}"\n')
        for action in ("run", "ingest"):
            error_line(ruche("server", action, "--config", config), "influx.url:",
                       "must be an http:// or https:// URL")  # fmt: skip
        error_line(ruche("dashboards", "export", "--out", tmp_path / "d", "--influx-url", url),
                   "InfluxDB URL", "http://127.0.0.1:8086")  # fmt: skip

    @pytest.mark.parametrize("url", ["127.0.0.1:3000", "http://127.0.0.1:99999"])
    def test_grafana_url(self, url: str) -> None:
        error_line(ruche("dashboards", "push", "--url", url, "--token", "t"), "Grafana URL",
                   "e.g. http://127.0.0.1:3000")  # fmt: skip

    def test_grafana_unknown_host(self) -> None:
        error_line(ruche("dashboards", "push", "--url", "http://no-such-host.invalid:3000",
                         "--token", "t"), "did not answer", "check --url")  # fmt: skip


class TestMissingExtraInAHandler:
    """Benchmarks and the demo import the server's modules only when they run: a library
    missing then is the extra to install, in one line (a fresh virtualenv without the
    server's extra is tests/e2e/test_distribution.py's; here the library is hidden)."""

    @pytest.mark.parametrize(
        "args",
        [("bench", "access", "--taps", "1"), ("bench", "ingest", "--seconds", "1"), ("demo",)],
    )
    def test_hidden_library(self, args: tuple[str, ...]) -> None:
        # None in sys.modules makes `import sqlalchemy` raise ModuleNotFoundError, as when
        # it is not installed; `ruche.sim.commands` itself does without it.
        code = (
            "import sys; sys.modules['sqlalchemy'] = None; from ruche.cli import main; "
            f"sys.exit(main({list(args)!r}))"
        )
        done = run([sys.executable, "-c", code], timeout=30)
        error_line(done, f"`ruche {args[0]}` needs 'sqlalchemy", "which is not installed",
                   "pip install 'ruche-coworking[server,sim]'")  # fmt: skip
