"""Provisioning with the CLI: the registry, then the broker config read from it."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tomllib

import pytest

from ruche.sim.services.mosquitto import find_mosquitto
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

SERVER_PASSWORD = "server-password-long-enough"


def ruche(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruche", *args], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


class TestProvisioning:
    """An agent registered with `ruche admin agent` logs in to a broker configured from the
    registry, with the password printed once."""

    def test_agent_from_registry_logs_in(self, tmp_path, probe_factory):
        db = f"sqlite:///{tmp_path / 'ruche.db'}"
        assert ruche("server", "migrate", "--database", db).returncode == 0
        for args in (
            ("site", "--slug", "lyon", "--name", "Lyon", "--timezone", "Europe/Paris"),
            ("member", "--name", "Ada", "--email", "ada@example.org"),
            ("badge", "--member", "ada@example.org", "--site", "lyon", "--uid", "04a22b1a"),
        ):
            done = ruche("admin", args[0], "--database", db, *args[1:])
            assert done.returncode == 0, done.stderr
            assert "04a22b1a" not in done.stdout, "the UID is never echoed"
        printed = ruche("admin", "agent", "--database", db, "--site", "lyon", "--id", "door-a")
        assert printed.returncode == 0, printed.stderr
        agent_toml = tomllib.loads(printed.stdout)
        assert agent_toml["mqtt"]["username"] == "lyon/door-a"

        server_toml = tmp_path / "server.toml"
        server_toml.write_text(f'database_url = "{db}"\n[mqtt]\npassword = "{SERVER_PASSWORD}"\n')
        port = free_port()
        out = tmp_path / "broker"
        run_as = pwd.getpwuid(os.geteuid()).pw_name
        done = ruche("server", "broker-config", "--config", str(server_toml), "--out", str(out),
                     "--port", str(port), "--run-as", run_as)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert agent_toml["mqtt"]["password"] not in (out / "dynamic-security.json").read_text()
        proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert wait_for_port("127.0.0.1", port, timeout=10)
            for user, password, ok in (
                ("lyon/door-a", agent_toml["mqtt"]["password"], True),
                ("ruche-server", SERVER_PASSWORD, True),
                ("lyon/door-a", "not-the-password-at-all", False),
            ):
                # An agent's account connects with its username as client id, the only one
                # the broker takes from it.
                probe = probe_factory(user, password, client_id=user)
                probe.port = port
                reason = probe.connect()
                assert reason is not None
                assert reason.is_failure is not ok, user
        finally:
            proc.terminate()
            proc.wait(10)

    def test_errors_are_sentences_not_tracebacks(self, tmp_path):
        db = f"sqlite:///{tmp_path / 'ruche.db'}"
        ruche("server", "migrate", "--database", db)
        done = ruche("admin", "site", "--database", db, "--slug", "x", "--name", "X",
                     "--timezone", "Mars/Olympus")  # fmt: skip
        assert done.returncode == 2
        assert "unknown timezone" in done.stderr
        assert "Traceback" not in done.stderr
        done = ruche("admin", "badge", "--database", db, "--member", "nobody@example.org",
                     "--site", "x", "--uid", "0102")  # fmt: skip
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        done = ruche("broker", "config", "--out", str(tmp_path / "o"))
        assert done.returncode == 2
        assert "the following arguments are required: --accounts" in done.stderr
