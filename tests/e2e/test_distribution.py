"""The distribution as an operator gets it: the wheel `python -m build` makes, installed
(not editable) into a fresh virtualenv per extra, each extra on its own, then `ruche
--version` and one real command of that extra. A command whose extra is missing says
which to install."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from ruche import DISTRIBUTION, __version__
from ruche.broker import Status, Topic, decode_payload
from ruche.broker.topics import Channel

pytestmark = pytest.mark.integration

PASSWORD = "a-server-password-long-enough"


class TestEachExtraOnItsOwn:
    def test_core(self, installs, tmp_path):
        core = installs("core")
        assert core.is_editable_free()
        assert core.ruche("--version").stdout.strip() == f"ruche {__version__}"
        accounts = tmp_path / "agents.toml"
        accounts.write_text(f'[server]\npassword = "{PASSWORD}"\n[[agents]]\nsite = "lyon"\n'
                            f'id = "door-a"\npassword = "{PASSWORD}-a"\n')  # fmt: skip
        done = core.ruche("broker", "config", "--accounts", str(accounts), "--out",
                          str(tmp_path / "broker"))  # fmt: skip
        assert done.returncode == 0, done.stderr
        clients = json.loads((tmp_path / "broker" / "dynamic-security.json").read_text())
        assert [c["username"] for c in clients["clients"]] == ["ruche-server", "lyon/door-a"]
        refused = core.ruche("server", "migrate")
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(f"pip install '{DISTRIBUTION}[server]'")
        assert "Traceback" not in refused.stderr

    def test_edge_agent_connects(self, installs, site, tmp_path):
        edge = installs("edge")
        account = site.agents["agent-a"]
        config = tmp_path / "agent.toml"
        config.write_text(
            f'site = "{site.site}"\nagent = "agent-a"\nsite_key = "{"00" * 16}"\n'
            f'state_dir = "{tmp_path / "state"}"\ngpio = "mock"\n\n[mqtt]\n'
            f'host = "{site.broker.host}"\nport = {site.broker.port}\n'
            f'username = "{account.username}"\npassword = "{account.password.get_secret_value()}"\n'
        )
        server = site.connect_server()
        server.subscribe(str(Topic.status(site.site, "agent-a")))
        command = [str(edge.bin / "ruche"), "edge", "run", "--config", str(config)]
        agent = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            (message,) = server.take(1, timeout=30)
            status = decode_payload(Channel.STATUS, message.payload)
            assert isinstance(status, Status)
            assert status.state == "online"
        finally:
            agent.send_signal(signal.SIGTERM)
            output, _ = agent.communicate(timeout=30)
        assert agent.returncode == 0, output

    def test_server_migrates(self, installs, tmp_path):
        server = installs("server")
        done = server.ruche("server", "migrate", "--database", f"sqlite:///{tmp_path / 'r.db'}")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "r.db").stat().st_size > 0

    def test_dashboards_export(self, installs, tmp_path):
        dashboards = installs("dashboards")
        done = dashboards.ruche("dashboards", "export", "--out", str(tmp_path / "grafana"))
        assert done.returncode == 0, done.stderr
        assert list((tmp_path / "grafana").rglob("*.json"))

    def test_sim_plays_a_scenario(self, installs, tmp_path):
        sim = installs("sim")
        scenario = tmp_path / "s.toml"
        scenario.write_text(
            'speed = 1.0\n\n[[radars]]\ndesk = "d1"\nlink = "radar-d1"\nsteps = [["empty", 1]]\n'
        )
        started = time.monotonic()
        done = sim.ruche("sim", "run", "--scenario", str(scenario), "--dir", str(tmp_path))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "done" in done.stdout
        assert time.monotonic() - started < 60
