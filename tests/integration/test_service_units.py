"""`ruche edge install` and `ruche server install` as a person runs them, with what they
write checked by systemd's own `systemd-analyze verify`; and the threads the agent's
watchdog looks after, on a real agent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from ruche.broker.accounts import Accounts, ServerAccount
from ruche.broker.mosquitto_config import BrokerOptions, write_config
from ruche.broker.passwords import generate_password
from ruche.edge.agent import Agent
from ruche.edge.run import expected_threads, stalled_threads
from ruche.edge.settings import AgentSettings, MqttSettings
from ruche.systemd import UNIT_DIR

pytestmark = pytest.mark.integration

RUCHE = [sys.executable, "-m", "ruche"]


def ruche(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUCHE, *args], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on units as systemd would load them with `root`'s own unit
    folder first (drop-ins included), then the machine's."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed: apt-get install systemd "
                    "(`make test` does this)", pytrace=False)  # fmt: skip
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{root / UNIT_DIR}:"}
    return subprocess.run([analyze, "verify", *units], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip


@pytest.fixture
def agent_toml(tmp_path: Path) -> Path:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text(
        f'site = "lyon"\nagent = "door-a"\nsite_key = "{"00" * 16}"\n'
        'state_dir = "/var/lib/ruche"\n\n[mqtt]\nusername = "lyon/door-a"\n'
        'password = "a-long-real-password"\n'
    )
    return config


@pytest.fixture
def server_toml(tmp_path: Path) -> Path:
    """A server's folder as `ruche server init` lays it out: server.toml, and Mosquitto's
    configuration from Ruche's own generator beside it, its state in a folder apart."""
    folder = tmp_path / "etc"
    files = write_config(folder / "mosquitto",
                         Accounts(server=ServerAccount(password=generate_password())),
                         BrokerOptions())  # fmt: skip
    config = folder / "server.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "state" / "ruche.db"}"\n\n'
        '[mqtt]\npassword = "a-long-real-password"\n'
    )
    assert files.conf == folder / "mosquitto" / "mosquitto.conf"
    return config


class TestEdgeInstall:
    """`ruche edge install` writes a unit systemd accepts, once."""

    def test_unit_verifies_and_a_second_run_writes_nothing(self, agent_toml, tmp_path):
        root = tmp_path / "root"
        done = ruche("edge", "install", "--config", str(agent_toml), "--root", str(root))
        assert done.returncode == 0, done.stderr
        unit = root / UNIT_DIR / "ruche-agent.service"
        assert f"written: {unit}" in done.stdout
        assert "systemctl daemon-reload" in done.stdout
        assert "systemctl enable --now ruche-agent.service" in done.stdout
        checked = verify(root, "ruche-agent.service")
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")

        again = ruche("edge", "install", "--config", str(agent_toml), "--root", str(root))
        assert again.returncode == 0, again.stderr
        assert f"unchanged: {unit}" in again.stdout

    def test_missing_or_unreadable_config_is_one_line(self, tmp_path):
        for config in (tmp_path / "nope.toml", tmp_path):
            done = ruche("edge", "install", "--config", str(config), "--root", str(tmp_path))
            assert done.returncode == 2
            assert done.stderr.startswith(f"ruche: error: {config}")
            assert done.stderr.count("\n") == 1, done.stderr
        assert not (tmp_path / UNIT_DIR).exists()


class TestServerInstall:
    """`ruche server install` writes the server's unit and Mosquitto's drop-in, both of
    which systemd accepts, once."""

    def test_units_verify_and_a_second_run_writes_nothing(self, server_toml, tmp_path):
        root = tmp_path / "root"
        done = ruche("server", "install", "--config", str(server_toml), "--root", str(root))
        assert done.returncode == 0, done.stderr
        server = root / UNIT_DIR / "ruche-server.service"
        dropin = root / UNIT_DIR / "mosquitto.service.d" / "ruche.conf"
        assert f"written: {server}" in done.stdout
        assert f"written: {dropin}" in done.stdout
        assert "systemctl restart mosquitto.service" in done.stdout
        # Debian's own mosquitto.service, with the drop-in applied.
        checked = verify(root, "ruche-server.service", "mosquitto.service")
        assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")

        again = ruche("server", "install", "--config", str(server_toml), "--root", str(root))
        assert again.returncode == 0, again.stderr
        assert f"unchanged: {server}" in again.stdout
        assert f"unchanged: {dropin}" in again.stdout

    def test_verify_catches_a_broken_dropin(self, server_toml, tmp_path):
        """The check has teeth: a second ExecStart without the clearing line is refused."""
        root = tmp_path / "root"
        assert ruche("server", "install", "--config", str(server_toml),
                     "--root", str(root)).returncode == 0  # fmt: skip
        dropin = root / UNIT_DIR / "mosquitto.service.d" / "ruche.conf"
        dropin.write_text(dropin.read_text().replace("ExecStart=\n", "", 1))
        checked = verify(root, "mosquitto.service")
        assert checked.returncode != 0
        assert "more than one ExecStart=" in checked.stderr

    def test_missing_config_is_one_line(self, tmp_path):
        done = ruche("server", "install", "--config", str(tmp_path / "nope.toml"),
                     "--root", str(tmp_path))  # fmt: skip
        assert done.returncode == 2
        assert done.stderr == f"ruche: error: {tmp_path / 'nope.toml'}: no such config file\n"


class TestWatchedThreads:
    """What the watchdog checks are the threads a real agent runs, and a stopped one is
    named."""

    def test_a_stopped_door_worker_is_named(self, edge_agent):
        rig = edge_agent()
        agent = rig.agent
        assert {"outbox-sender", "door-17", "nfc-reader-front-reader"} <= expected_threads(agent)
        assert stalled_threads(agent) == []
        agent.doors["front"].close()
        assert stalled_threads(agent) == ["door-17"]

    def test_desk_readers_are_watched(self, site, tmp_path):
        account = site.agents["agent-b"]
        settings = AgentSettings(
            site=site.site, agent="agent-b", site_key="00" * 16, state_dir=tmp_path / "state",
            gpio="mock",
            mqtt=MqttSettings(host=site.broker.host, port=site.broker.port,
                              username=account.username,
                              password=account.password.get_secret_value()),
            # A radar whose port is missing keeps its thread, retrying to open it.
            desks=({"id": "d1", "serial": str(tmp_path / "no-tty")}, {"id": "d2", "pir_pin": 5}),
        )  # type: ignore[arg-type]  # fmt: skip
        factory = MockFactory()
        agent = Agent(settings, pin_factory=factory)
        agent.start()
        try:
            assert {"radar-d1", "pir-d2"} <= expected_threads(agent)
            assert stalled_threads(agent) == []
        finally:
            agent.stop()
            factory.close()
        assert stalled_threads(agent) == sorted(expected_threads(agent))
