"""Provisioning with the CLI: the registry, then the broker config read from it."""

from __future__ import annotations

import json
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
    """An agent added with `ruche admin agent add` logs in to the running broker at once,
    with the password written once; disabled, it is refused; the broker's config
    regenerated from the registry holds its hash and its state, never its password."""

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

        port = free_port()
        server_toml = tmp_path / "server.toml"
        server_toml.write_text(f'database_url = "{db}"\n[mqtt]\npassword = "{SERVER_PASSWORD}"\n'
                               f'port = {port}\nagents_host = "127.0.0.1"\n')  # fmt: skip
        out = tmp_path / "broker"
        run_as = pwd.getpwuid(os.geteuid()).pw_name

        def broker_config() -> subprocess.CompletedProcess[str]:
            return ruche("server", "broker-config", "--config", str(server_toml), "--out",
                         str(out), "--port", str(port), "--run-as", run_as)  # fmt: skip

        assert broker_config().returncode == 0
        proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert wait_for_port("127.0.0.1", port, timeout=10)
            added = ruche("admin", "agent", "add", "--config", str(server_toml), "--site", "lyon",
                          "--id", "door-a", "--out", str(tmp_path / "pi"))  # fmt: skip
            assert added.returncode == 0, added.stderr
            agent_toml = tomllib.loads((tmp_path / "pi" / "agent.toml").read_text())
            assert agent_toml["mqtt"]["username"] == "lyon/door-a"
            password = agent_toml["mqtt"]["password"]
            assert password not in added.stdout
            for user, secret, ok in (
                ("lyon/door-a", password, True),
                ("ruche-server", SERVER_PASSWORD, True),
                ("lyon/door-a", "not-the-password-at-all", False),
            ):
                assert self._connects(probe_factory, port, user, secret) is ok, user
            disabled = ruche("admin", "agent", "disable", "--config", str(server_toml),
                             "--site", "lyon", "--id", "door-a")  # fmt: skip
            assert disabled.returncode == 0, disabled.stderr
            assert not self._connects(probe_factory, port, "lyon/door-a", password)
            unknown = ruche("admin", "agent", "rotate", "--config", str(server_toml),
                            "--site", "lyon", "--id", "nope")  # fmt: skip
            assert unknown.returncode == 2
            assert unknown.stderr == "ruche: error: Agent 'lyon/nope' does not exist\n"
            # A second agent, removed: gone from the broker and from the registry.
            other = ruche("admin", "agent", "add", "--config", str(server_toml), "--site",
                          "lyon", "--id", "door-b", "--out", str(tmp_path / "pi-b"))  # fmt: skip
            assert other.returncode == 0, other.stderr
            other_password = tomllib.loads((tmp_path / "pi-b" / "agent.toml").read_text())
            secret = other_password["mqtt"]["password"]
            assert self._connects(probe_factory, port, "lyon/door-b", secret)
            removed = ruche("admin", "agent", "remove", "--config", str(server_toml),
                            "--site", "lyon", "--id", "door-b")  # fmt: skip
            assert removed.returncode == 0, removed.stderr
            assert not self._connects(probe_factory, port, "lyon/door-b", secret)
        finally:
            proc.terminate()
            proc.wait(10)
        assert broker_config().returncode == 0
        accounts = (out / "dynamic-security.json").read_text()
        assert password not in accounts
        clients = {c["username"]: c for c in json.loads(accounts)["clients"]}
        assert clients["lyon/door-a"]["disabled"] is True
        assert "lyon/door-b" not in clients

    @staticmethod
    def _connects(probe_factory, port: int, user: str, password: str) -> bool:
        # An agent's account connects with its username as client id, the only one the
        # broker takes from it.
        probe = probe_factory(user, password, client_id=user)
        probe.port = port
        reason = probe.connect()
        assert reason is not None
        return not reason.is_failure

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
