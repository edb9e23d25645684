"""The InfluxDB writer's start (`prepare_database`) and credentials against each kind of
InfluxDB it meets.

InfluxDB 1.x is the real influxd: the session's, one started late, and one with
`auth-enabled = true` and an admin, a reader-writer and a user without rights. InfluxDB
2.x is not packaged for Debian, so `V2StyleInflux` is a real HTTP server in this test that
answers `/write` and `/query` as 2.x's v1 compatibility handlers do (their source: a
token in `Authorization`, a database and retention policy resolved through DBRP mappings,
404 "no dbrp mapping found" on a write without one, `CREATE DATABASE` answered 200 with
the statement error "not implemented: CREATE DATABASE"). What these tests check is what
Ruche sends and what it makes of those answers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ruche.server.ops.health import influx_state
from ruche.server.timeseries.influx import InfluxWriter
from ruche.server.timeseries.lineprotocol import Point
from ruche.sim.services.influxd import InfluxdProcess
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
LOGGER = "ruche.server.timeseries.influx"


def points(n: int) -> list[Point]:
    return [Point("presence", {"desk": f"d{i}"}, {"occupied": True}, T0 + i) for i in range(n)]


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


# --- InfluxDB 1.x --------------------------------------------------------------------------


class TestInflux1x:
    """Against influxd 1.x: a missing database is created, an existing one is left alone,
    and a database InfluxDB could not be asked about at start is created once it answers."""

    def test_created_then_already_there(
        self, influxd: InfluxdProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        name = f"prep{time.monotonic_ns()}"
        caplog.set_level(logging.INFO, logger=LOGGER)
        try:
            with InfluxWriter(influxd.url, name, spool_dir=tmp_path / "a") as writer:
                check = writer.prepare_database()
                assert (check.outcome, check.message) == (
                    "created",
                    f"created InfluxDB database {name}",
                )
                writer.write(points(3))
                assert writer.flush(10)
            with InfluxWriter(influxd.url, name, spool_dir=tmp_path / "b") as writer:
                check = writer.prepare_database()
                assert check.outcome == "exists"
                databases = writer.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
                assert [name] in databases
        finally:
            httpx.post(f"{influxd.url}/query", data={"q": f'DROP DATABASE "{name}"'}, timeout=10)
        assert logged(caplog, logging.INFO) == [
            f"created InfluxDB database {name}",
            f"InfluxDB database {name} is already there",
        ]

    def test_down_at_start_then_created_when_it_answers(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        late = InfluxdProcess(tmp_path / "influxd")
        caplog.set_level(logging.INFO, logger=LOGGER)
        with InfluxWriter(late.url, "ruche", spool_dir=tmp_path / "spool", timeout=1) as writer:
            check = writer.prepare_database()
            assert check.outcome == "unreachable"
            [warning] = logged(caplog, logging.WARNING)
            assert warning.startswith(
                f"could not check InfluxDB database ruche: InfluxDB at {late.url}"
            )
            assert "points wait in the spool" in warning
            writer.write(points(20))
            late.start()
            try:
                assert writer.flush(30), "the points waited for the database to be created"
                counted = writer.query("SELECT count(occupied) FROM presence")
                assert counted["results"][0]["series"][0]["values"][0][1] == 20
            finally:
                late.stop()
        assert "created InfluxDB database ruche" in logged(caplog, logging.INFO)


class AuthInfluxd(InfluxdProcess):
    """influxd 1.x with `auth-enabled = true`."""

    def _write_conf(self) -> None:
        super()._write_conf()
        conf = self.conf_path.read_text(encoding="utf-8")
        self.conf_path.write_text(conf.replace("auth-enabled = false", "auth-enabled = true"))


@dataclass(frozen=True)
class AuthRig:
    url: str
    admin: tuple[str, str] = ("admin", "admin-password")
    writer: tuple[str, str] = ("ruche", "ruche-password")
    nobody: tuple[str, str] = ("nobody", "nobody-password")
    database: str = "ruche"


@pytest.fixture(scope="module")
def auth_influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRig]:
    """An influxd with auth: an admin, `ruche` with ALL on database `ruche`, `nobody`."""
    process = AuthInfluxd(tmp_path_factory.mktemp("influxd-auth"))
    process.start()
    rig = AuthRig(process.url)

    def run(q: str, auth: tuple[str, str] | None) -> None:
        response = httpx.post(f"{rig.url}/query", data={"q": q}, auth=auth, timeout=10)
        response.raise_for_status()

    # The first user may be made without credentials, and must be an admin.
    run(f"CREATE USER {rig.admin[0]} WITH PASSWORD '{rig.admin[1]}' WITH ALL PRIVILEGES", None)
    run(f'CREATE DATABASE "{rig.database}"', rig.admin)
    for user, password in (rig.writer, rig.nobody):
        run(f"CREATE USER {user} WITH PASSWORD '{password}'", rig.admin)
    run(f'GRANT ALL ON "{rig.database}" TO {rig.writer[0]}', rig.admin)
    yield rig
    process.stop()


class TestInflux1xWithAuth:
    """influxd with `auth-enabled = true`: credentials go as HTTP basic auth, and a refusal
    is logged with InfluxDB's words while the points wait in the spool."""

    def test_admin_creates_the_database(self, auth_influxd: AuthRig, tmp_path: Path) -> None:
        user, password = auth_influxd.admin
        with InfluxWriter(auth_influxd.url, "made_by_admin", username=user, password=password,
                          spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            assert writer.prepare_database().outcome == "created"
            writer.write(points(5))
            assert writer.flush(10)

    def test_a_user_with_rights_finds_it_and_writes(
        self, auth_influxd: AuthRig, tmp_path: Path
    ) -> None:
        user, password = auth_influxd.writer
        with InfluxWriter(auth_influxd.url, auth_influxd.database, username=user,
                          password=password, spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
            assert (check.outcome, check.message) == (
                "exists",
                "InfluxDB database ruche is already there",
            )
            writer.write(points(7))
            assert writer.flush(10)
            assert writer.stats().points_written == 7

    def test_wrong_password_is_401_and_points_wait(
        self, auth_influxd: AuthRig, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        user, _ = auth_influxd.writer
        with InfluxWriter(auth_influxd.url, auth_influxd.database, username=user,
                          password="wrong", spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
            assert check.outcome == "refused"
            assert check.message == (
                "could not create InfluxDB database ruche: InfluxDB refused the query (401): "
                "authorization failed; points wait in the spool; on InfluxDB 2.x create a "
                "bucket and a DBRP mapping for it, on 3.x the database (influxdb3 create "
                "database); see docs/operations.md, 'InfluxDB 2.x and 3.x'"
            )
            assert check.message in logged(caplog, logging.WARNING)
            writer.write(points(4))
            eventually(lambda: writer.stats().write_errors.get("auth", 0) >= 2)
            stats = writer.stats()
            assert (stats.spooled_points, stats.dead_lettered_batches) == (4, 0)
            # Readiness says so: InfluxDB answers, but nothing flows until it is fixed.
            assert stats.refusing
            state = influx_state(
                ping_error=None, up=stats.up, last_error=stats.last_error,
                spooled_points=stats.spooled_points, refusing=stats.refusing,
            )  # fmt: skip
            assert state.startswith("failing: InfluxDB answered 401")

    def test_a_user_without_admin_rights_cannot_create(
        self, auth_influxd: AuthRig, tmp_path: Path
    ) -> None:
        user, password = auth_influxd.nobody
        with InfluxWriter(auth_influxd.url, "not_allowed", username=user, password=password,
                          spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
        assert check.outcome == "refused"
        assert "(403)" in check.message
        assert "requires admin privilege" in check.message


# --- InfluxDB 2.x's v1 API --------------------------------------------------------------------


@dataclass
class V2StyleInflux:
    """An HTTP server answering InfluxDB's v1 `/write` and `/query` as InfluxDB 2.x does."""

    token: str
    mappings: dict[tuple[str, str], bool] = field(default_factory=dict)
    """(database, retention policy) -> whether it is the database's default."""
    stored: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """(method, path with its query string, headers) of every request."""
    port: int = field(default_factory=free_port)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def map(self, database: str, policy: str = "autogen", *, default: bool = True) -> None:
        """What `influx v1 dbrp create --db ... --rp ... [--default]` does."""
        with self.lock:
            self.mappings[(database, policy)] = default

    def find(self, database: str, policy: str) -> tuple[str, str] | None:
        with self.lock:
            for (db, rp), default in self.mappings.items():
                if db == database and (rp == policy if policy else default):
                    return db, rp
        return None

    def authorized(self, headers: dict[str, str], query: dict[str, str]) -> bool:
        if query.get("u") and query.get("p"):
            return query["p"] == self.token
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        if scheme == "Token":
            return credential.rpartition(":")[2] == self.token
        return False


def _handler(server: V2StyleInflux) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with server.lock:
                server.requests.append((method, self.path, dict(self.headers.items())))
            if url.path == "/ping":
                self._answer(204)
                return
            if not server.authorized(dict(self.headers.items()), query):
                self._answer(401, {"code": "unauthorized", "message": "unauthorized access"})
                return
            if url.path == "/write" and method == "POST":
                self._write(query, body)
            elif url.path == "/query":
                form = dict(urllib.parse.parse_qsl(body.decode())) if method == "POST" else {}
                self._query({**query, **form})
            else:
                self._answer(404, {"code": "not found", "message": "path not found"})

        def _write(self, query: dict[str, str], body: bytes) -> None:
            if not query.get("db"):
                self._answer(400, {"code": "invalid", "message": "missing db"})
                return
            found = server.find(query["db"], query.get("rp", ""))
            if found is None:
                self._answer(404, {"code": "not found", "message": "no dbrp mapping found"})
                return
            with server.lock:
                server.stored.setdefault(found, []).extend(body.decode().splitlines())
            self._answer(204)

        def _query(self, params: dict[str, str]) -> None:
            q = params.get("q", "").strip()
            upper = q.upper()
            if upper == "SHOW DATABASES":
                names = sorted({db for db, _ in server.mappings})
                series = {"name": "databases", "columns": ["name"], "values": [[n] for n in names]}
                result: dict[str, Any] = {"statement_id": 0, "series": [series]}
            elif upper.startswith("SHOW RETENTION POLICIES ON "):
                database = q[len("SHOW RETENTION POLICIES ON ") :].strip('"')
                mapped = [(rp, default) for (db, rp), default in server.mappings.items()
                          if db == database]  # fmt: skip
                rows = [[rp, "0s", "168h0m0s", 1, default] for rp, default in mapped]
                columns = ["name", "duration", "shardGroupDuration", "replicaN", "default"]
                result = {"statement_id": 0, "series": [{"columns": columns, "values": rows}]}
            elif upper.startswith("CREATE DATABASE"):
                result = {"statement_id": 0, "error": "not implemented: CREATE DATABASE"}
            else:
                result = {"statement_id": 0, "error": f"not implemented: {q}"}
            self._answer(200, {"results": [result]})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def v2() -> Iterator[V2StyleInflux]:
    server = V2StyleInflux(token="t0k3n-for-ruche")
    http = ThreadingHTTPServer(("127.0.0.1", server.port), _handler(server))
    thread = threading.Thread(target=http.serve_forever, name="v2-style-influx", daemon=True)
    thread.start()
    yield server
    http.shutdown()
    http.server_close()
    thread.join()


class TestInflux2xStyle:
    """Against InfluxDB 2.x's v1 API: the token in `Authorization: Token`, the retention
    policy as `rp`, CREATE DATABASE refused with the way out in the log, and points that
    wait for the operator's DBRP mapping, then land."""

    def test_refused_create_then_points_land_once_mapped(
        self, v2: V2StyleInflux, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with InfluxWriter(v2.url, "ruche", token=v2.token, spool_dir=tmp_path / "spool",
                          max_backoff=0.2) as writer:  # fmt: skip
            check = writer.prepare_database()
            assert check.outcome == "refused"
            assert check.message.startswith(
                "could not create InfluxDB database ruche: InfluxDB refused the query: "
                "not implemented: CREATE DATABASE; points wait in the spool; on InfluxDB 2.x "
                "create a bucket and a DBRP mapping for it"
            )
            assert check.message in logged(caplog, logging.WARNING)
            writer.write(points(10))
            eventually(lambda: writer.stats().write_errors.get("not_found", 0) >= 1)
            assert writer.stats().spooled_points == 10
            assert "no dbrp mapping found" in (writer.stats().last_error or "")
            v2.map("ruche")
            assert writer.flush(20)
        assert len(v2.stored[("ruche", "autogen")]) == 10
        for method, path, headers in v2.requests:
            assert headers["Authorization"] == f"Token {v2.token}", (method, path)
            assert v2.token not in path

    def test_retention_policy_names_the_bucket(self, v2: V2StyleInflux, tmp_path: Path) -> None:
        v2.map("ruche", "autogen")
        v2.map("ruche", "ninety_days", default=False)
        with InfluxWriter(v2.url, "ruche", token=v2.token, retention_policy="ninety_days",
                          spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
            assert (check.outcome, check.retention_policy_found) == ("exists", True)
            writer.write(points(6))
            assert writer.flush(10)
        assert len(v2.stored[("ruche", "ninety_days")]) == 6
        assert ("ruche", "autogen") not in v2.stored
        writes = [path for method, path, _ in v2.requests if path.startswith("/write")]
        assert writes
        assert all("rp=ninety_days" in path for path in writes)

    def test_missing_retention_policy_is_said(
        self, v2: V2StyleInflux, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        v2.map("ruche")
        with InfluxWriter(v2.url, "ruche", token=v2.token, retention_policy="ninety_days",
                          spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
        assert (check.outcome, check.retention_policy_found) == ("exists", False)
        [warning] = logged(caplog, logging.WARNING)
        assert warning.startswith("InfluxDB database ruche has no retention policy ninety_days")

    def test_wrong_token_is_401(self, v2: V2StyleInflux, tmp_path: Path) -> None:
        v2.map("ruche")
        with InfluxWriter(v2.url, "ruche", token="not-the-token",
                          spool_dir=tmp_path / "spool") as writer:  # fmt: skip
            check = writer.prepare_database()
        assert check.outcome == "refused"
        assert "InfluxDB refused the query (401): unauthorized access" in check.message


class TestPing:
    """The readiness ping carries the writer's credentials: 3.x refuses an anonymous one."""

    def test_ping_sends_the_token(self, v2: V2StyleInflux, tmp_path: Path) -> None:
        with InfluxWriter(v2.url, "ruche", token=v2.token, spool_dir=tmp_path / "spool") as w:
            assert w.ping(2.0).status_code == 204
        pings = [headers for _, path, headers in v2.requests if path == "/ping"]
        assert pings
        assert pings[-1]["Authorization"] == f"Token {v2.token}"


class TestServerStart:
    """`ruche server run` against a 2.x that refuses CREATE DATABASE: it says so in its log
    and serves anyway."""

    def test_logs_the_refusal_and_serves(
        self, site: Any, v2: V2StyleInflux, tmp_path: Path
    ) -> None:
        http_port = free_port()
        server = site.broker.server
        config = tmp_path / "server.toml"
        config.write_text(
            f'database_url = "sqlite:///{tmp_path / "ruche.db"}"\n'
            f'[mqtt]\nhost = "{site.broker.host}"\nport = {site.broker.port}\n'
            f'username = "{server.username}"\n'
            f'password = "{server.password.get_secret_value()}"\n'
            f"[http]\nport = {http_port}\n"
            f'[influx]\nurl = "{v2.url}"\ndatabase = "ruche"\ntoken = "{v2.token}"\n'
            f'spool_dir = "{tmp_path / "spool"}"\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "ruche", "server", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUCHE_LOG_FORMAT": "json"},
        )  # fmt: skip
        try:
            assert wait_for_port("127.0.0.1", http_port, timeout=30), "the API never came up"
            assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5).status_code == 200
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        [refusal] = [line for line in lines if line["msg"].startswith("could not create InfluxDB")]
        assert refusal["level"] == "warning"
        assert "not implemented: CREATE DATABASE" in refusal["msg"]
        assert "docs/operations.md" in refusal["msg"]
        assert v2.token not in err
