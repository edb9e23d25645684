"""`ruche dashboards push` through grafana-client, against a stand-in for Grafana.

Grafana itself cannot be installed here (no Debian package, no download), so the test
runs a small real HTTP server on loopback answering the few endpoints grafana-client
calls, the way Grafana's HTTP API documents them: data sources by uid, folders by uid,
`POST /api/dashboards/db` with `overwrite` (one dashboard per uid, its version counted),
bearer tokens (401 otherwise). It checks what a push leaves behind and that pushing
again updates in place instead of adding anything.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ruche.cli import main
from ruche.dashboards.catalogue import DASHBOARDS
from ruche.dashboards.datasource import Datasource
from ruche.dashboards.model import DATASOURCE_UID, dashboard_json
from ruche.dashboards.push import PushError, push
from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

TOKEN = "glsa_stand_in_token"


@dataclass
class GrafanaState:
    """What the stand-in holds, and every request it answered (method, path, status)."""

    token: str = TOKEN
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    deny_datasources: bool = False
    ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))


def make_handler(state: GrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            state.log.append((self.command, self.path, status))

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def _route(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._answer(401, {"message": "Unauthorized"})
                return
            method, path = self.command, self.path.split("?")[0]
            if match := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
                self._datasource(method, match.group(1))
            elif path == "/api/datasources" and method == "POST":
                self._create_datasource(self._body())
            elif match := re.fullmatch(r"/api/folders/([\w-]+)", path):
                folder = state.folders.get(match.group(1))
                if method != "GET":
                    self._answer(405, {"message": "method not allowed"})
                elif folder is None:
                    self._answer(404, {"message": "folder not found", "status": "not-found"})
                else:
                    self._answer(200, folder)
            elif path == "/api/folders" and method == "POST":
                self._create_folder(self._body())
            elif path == "/api/dashboards/db" and method == "POST":
                self._save_dashboard(self._body())
            else:
                self._answer(404, {"message": "Not found"})

        def _datasource(self, method: str, uid: str) -> None:
            known = state.datasources.get(uid)
            if known is None:
                self._answer(404, {"message": "Data source not found"})
            elif method == "GET":
                self._answer(200, known)
            elif method == "PUT":
                if state.deny_datasources:
                    self._answer(403, {"message": "Permissions needed: datasources:write"})
                    return
                body = self._body()
                if body.get("uid", uid) != uid or not body.get("name") or not body.get("type"):
                    self._answer(400, {"message": "bad data source"})
                    return
                saved = state.datasources[uid] = {**body, "id": known["id"], "uid": uid}
                answer = {"datasource": saved, "id": saved["id"], "name": saved["name"]}
                self._answer(200, {**answer, "message": "Datasource updated"})
            else:
                self._answer(405, {"message": "method not allowed"})

        def _create_datasource(self, body: dict[str, Any]) -> None:
            if state.deny_datasources:
                self._answer(403, {"message": "Permissions needed: datasources:create"})
                return
            if not body.get("name") or not body.get("type"):
                self._answer(400, {"message": "name and type are required"})
                return
            if any(d["name"] == body["name"] for d in state.datasources.values()):
                self._answer(409, {"message": "data source with the same name already exists"})
                return
            uid = body.get("uid") or f"auto{next(state.ids)}"
            saved = state.datasources[uid] = {**body, "id": next(state.ids), "uid": uid}
            self._answer(200, {"datasource": saved, "id": saved["id"],
                               "message": "Datasource added", "name": saved["name"]})  # fmt: skip

        def _create_folder(self, body: dict[str, Any]) -> None:
            uid = body.get("uid")
            if not uid or not body.get("title"):
                self._answer(400, {"message": "uid and title are required"})
            elif uid in state.folders:
                self._answer(409, {"message": "a folder with the same uid already exists"})
            else:
                state.folders[uid] = {"id": next(state.ids), "uid": uid, "title": body["title"]}
                self._answer(200, state.folders[uid])

        def _save_dashboard(self, body: dict[str, Any]) -> None:
            dashboard = body.get("dashboard") or {}
            uid = dashboard.get("uid")
            if not uid or not dashboard.get("title"):
                self._answer(400, {"message": "Dashboard title and uid are required"})
                return
            folder = body.get("folderUid")
            if folder and folder not in state.folders:
                self._answer(400, {"message": "folder not found"})
                return
            known = state.dashboards.get(uid)
            if known is not None and not body.get("overwrite"):
                self._answer(412, {"message": "A dashboard with the same uid already exists",
                                   "status": "name-exists"})  # fmt: skip
                return
            number = next(state.ids) if known is None else known["dashboard"]["id"]
            version = 1 if known is None else known["dashboard"]["version"] + 1
            stored = {**dashboard, "id": number, "version": version}
            state.dashboards[uid] = {"dashboard": stored, "folderUid": folder,
                                     "message": body.get("message")}  # fmt: skip
            self._answer(200, {"id": number, "uid": uid, "url": f"/d/{uid}/x",
                               "status": "success", "version": version})  # fmt: skip

        do_GET = do_POST = do_PUT = do_DELETE = _route  # noqa: N815 - http.server's names

    return Handler


@pytest.fixture
def grafana() -> Iterator[tuple[str, GrafanaState]]:
    """The stand-in on a free loopback port; its URL and state."""
    state = GrafanaState()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()
    thread.join(5)


INFLUX = Datasource(url="http://influxdb:8086", database="ruche")


class TestPush:
    """A push creates the data source, the folder and the dashboards; another updates them."""

    def test_first_push_creates_everything(self, grafana):
        url, state = grafana
        report = push(url, TOKEN, INFLUX)
        assert report.datasource == "created"
        assert report.folder == "created"
        assert report.dashboards == tuple((d.uid, 1) for d in DASHBOARDS)
        assert list(state.datasources) == [DATASOURCE_UID]
        source = state.datasources[DATASOURCE_UID]
        assert (source["type"], source["url"]) == ("influxdb", "http://influxdb:8086")
        assert source["jsonData"]["version"] == "InfluxQL"
        assert state.folders == {"ruche": {"id": state.folders["ruche"]["id"], "uid": "ruche",
                                           "title": "Ruche"}}  # fmt: skip
        assert set(state.dashboards) == {d.uid for d in DASHBOARDS}
        for dashboard in DASHBOARDS:
            saved = state.dashboards[dashboard.uid]
            assert saved["folderUid"] == "ruche"
            model = {k: v for k, v in saved["dashboard"].items() if k not in {"id", "version"}}
            expected = dashboard_json(dashboard)
            assert model == {k: v for k, v in expected.items() if k not in {"id", "version"}}

    def test_second_push_updates_in_place(self, grafana):
        url, state = grafana
        push(url, TOKEN, INFLUX)
        ids = {uid: d["dashboard"]["id"] for uid, d in state.dashboards.items()}
        created = len(state.log)
        report = push(url, TOKEN, Datasource(url="http://influx-2:8086", database="ruche"))
        assert report.datasource == "updated"
        assert report.folder == "existing"
        assert report.dashboards == tuple((d.uid, 2) for d in DASHBOARDS)
        # Nothing added: one data source (now pointing elsewhere), one folder, same dashboards.
        assert list(state.datasources) == [DATASOURCE_UID]
        assert state.datasources[DATASOURCE_UID]["url"] == "http://influx-2:8086"
        assert list(state.folders) == ["ruche"]
        assert {uid: d["dashboard"]["id"] for uid, d in state.dashboards.items()} == ids
        again = [(method, path) for method, path, _ in state.log[created:]]
        assert ("POST", "/api/datasources") not in again
        assert ("POST", "/api/folders") not in again
        assert ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}") in again
        assert all(status == 200 or path.startswith("/api/folders/")
                   for _, path, status in state.log[created:])  # fmt: skip

    def test_influx_token_stored_as_a_secret_header(self, grafana):
        url, state = grafana
        push(url, TOKEN, INFLUX, influx_token="influx-secret")
        source = state.datasources[DATASOURCE_UID]
        assert source["jsonData"]["httpHeaderName1"] == "Authorization"
        assert source["secureJsonData"] == {"httpHeaderValue1": "Token influx-secret"}

    def test_wrong_token(self, grafana):
        url, state = grafana
        with pytest.raises(PushError, match="refused the token"):
            push(url, "wrong", INFLUX)
        assert not state.dashboards

    def test_not_allowed_to_manage_data_sources(self, grafana):
        url, state = grafana
        state.deny_datasources = True
        with pytest.raises(PushError, match=r"403.*Admin"):
            push(url, TOKEN, INFLUX)

    def test_nobody_there(self):
        with pytest.raises(PushError, match="did not answer"):
            push(f"http://127.0.0.1:{free_port()}", TOKEN, INFLUX, timeout=2.0)

    def test_not_grafana(self, grafana):
        url, _ = grafana
        with pytest.raises(PushError, match="404"):
            push(f"{url}/not-grafana", TOKEN, INFLUX)


class TestPushCommand:
    """`ruche dashboards push` prints what it did; errors are one line, exit status 2."""

    def test_push_twice(self, grafana, capsys, monkeypatch):
        url, state = grafana
        monkeypatch.setenv("RUCHE_TEST_INFLUX_TOKEN", "from-env")
        args = ["dashboards", "push", "--url", url, "--token", TOKEN,
                "--influx-token-env", "RUCHE_TEST_INFLUX_TOKEN"]  # fmt: skip
        assert main(args) == 0
        first = capsys.readouterr().out
        assert f"data source {DATASOURCE_UID}: created; folder: created" in first
        assert main(args) == 0
        second = capsys.readouterr().out
        assert f"data source {DATASOURCE_UID}: updated; folder: existing" in second
        for dashboard in DASHBOARDS:
            assert f"dashboard {dashboard.uid}: version 2" in second
        assert state.datasources[DATASOURCE_UID]["secureJsonData"] == {
            "httpHeaderValue1": "Token from-env"
        }

    def test_token_from_the_environment(self, grafana, monkeypatch):
        url, state = grafana
        monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
        assert main(["dashboards", "push", "--url", url]) == 0
        assert len(state.dashboards) == len(DASHBOARDS)

    def test_refused(self, grafana, capsys):
        url, _ = grafana
        assert main(["dashboards", "push", "--url", url, "--token", "nope"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ruche: error: Grafana at ")
        assert "Traceback" not in err
