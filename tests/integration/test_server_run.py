"""`ruche server run`, `ruche audit verify` and `ruche bench access` as an operator runs them."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import httpx
import pytest

from ruche.server.storage.db import run_migrations
from ruche.sim.bench.access import Door, seed
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration


def ruche(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruche", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


class TestServerRun:
    """One process serves the API and answers taps over MQTT."""

    def test_serves_http_and_answers_taps(self, site, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        expected = seed(url, agents=1, members=7)
        # The seed names its site "bench"; this broker's ACL knows the test's own site.
        with sqlite3.connect(tmp_path / "ruche.db") as db:
            db.execute("UPDATE sites SET slug = ?", (site.site,))
            db.execute("UPDATE agents SET slug = 'agent-a'")
        http_port = free_port()
        server = site.broker.server
        config = tmp_path / "server.toml"
        config.write_text(
            f'database_url = "{url}"\n[mqtt]\nhost = "{site.broker.host}"\n'
            f'port = {site.broker.port}\nusername = "{server.username}"\n'
            f'password = "{server.password.get_secret_value()}"\n[http]\nport = {http_port}\n'
        )
        proc = subprocess.Popen([sys.executable, "-m", "ruche", "server", "run", "--config",
                                 str(config)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        door = None
        try:
            assert wait_for_port("127.0.0.1", http_port, timeout=30), "the API never came up"
            assert httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5).status_code == 200
            door = Door(site.broker.host, site.broker.port, site.agents["agent-a"], "door-0")
            for n, (token, want) in enumerate(expected.items(), start=1):
                outcome = door.tap(token, seq=n)
                assert outcome is not None, "every tap is answered"
                _, answer = outcome
                assert (getattr(answer, "reason", "unlock") if not want.allowed else "unlock") == (
                    "unlock" if want.allowed else want.reason
                )
                assert (answer.cmd == "unlock") is want.allowed
        finally:
            if door is not None:
                door.close()
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        with sqlite3.connect(tmp_path / "ruche.db") as db:
            (rows,) = db.execute("SELECT count(*) FROM audit_log").fetchone()
        assert rows == len(expected), "every decision reached the audit log before exit"
        verified = ruche("audit", "verify", "--database", url)
        assert verified.returncode == 0, verified.stderr
        assert "intact" in verified.stdout
        # Tamper with one decision: verify names the row.
        with sqlite3.connect(tmp_path / "ruche.db") as db:
            db.execute("UPDATE audit_log SET allowed = 1 - allowed WHERE id = 3")
        tampered = ruche("audit", "verify", "--database", url)
        assert tampered.returncode == 1
        assert "row 3" in tampered.stderr

    def test_bad_config_is_refused_with_the_field(self, tmp_path):
        config = tmp_path / "server.toml"
        config.write_text('[mqtt]\npassword = "change-me"\n[http]\nport = 0\n')
        done = ruche("server", "run", "--config", str(config))
        assert done.returncode == 2
        assert "mqtt.password" in done.stderr
        assert "http.port" in done.stderr
        assert "Traceback" not in done.stderr


class TestBenchAccess:
    """`ruche bench access --json` starts its own broker and server and decides rightly."""

    @pytest.mark.slow
    def test_json_figures(self):
        done = ruche("bench", "access", "--taps", "200", "--agents", "2", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout)
        assert figures["taps"] == 200
        assert figures["wrong_decisions"] == 0
        assert figures["unanswered"] == 0
        assert {"p50_ms", "p99_ms", "max_ms"} <= figures.keys()
        assert figures["allowed"] > 0
        assert figures["denied"] > 0
