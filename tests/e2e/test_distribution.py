"""The distribution as an operator gets it: the wheel `python -m build` makes, installed
(not editable) into a fresh virtualenv per extra, each extra on its own, then `ruche
--version` and one real command of that extra. A command whose extra is missing says
which to install."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

from ruche import DISTRIBUTION, __version__
from ruche.broker import Status, Topic, decode_payload
from ruche.broker.topics import Channel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-server-password-long-enough"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (built,) = out.glob("*.whl")
    assert built.name.startswith(DISTRIBUTION.replace("-", "_") + "-")
    return built


class Installed:
    """A fresh virtualenv with the wheel and one extra installed."""

    def __init__(self, root: Path, wheel: Path, extra: str | None) -> None:
        venv.create(root, with_pip=True)
        # Run from inside the venv, so that the checkout's `ruche/` is not on the path.
        self.cwd = root
        self.bin = root / "bin"
        spec = f"{wheel}[{extra}]" if extra else str(wheel)
        done = subprocess.run([str(self.bin / "pip"), "install", "-q", spec],
                              capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    def ruche(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "ruche"), *args], capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=self.cwd)  # fmt: skip

    def is_editable_free(self) -> bool:
        """The package comes from site-packages, not from this checkout."""
        code = "import ruche, pathlib; print(pathlib.Path(ruche.__file__).resolve())"
        done = subprocess.run([str(self.bin / "python"), "-c", code], capture_output=True,
                              text=True, check=True, cwd=self.cwd)  # fmt: skip
        return "site-packages" in done.stdout and str(ROOT) not in done.stdout


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Callable[[str], Installed]:
    made: dict[str, Installed] = {}

    def get(extra: str) -> Installed:
        if extra not in made:
            made[extra] = Installed(tmp_path_factory.mktemp(f"venv-{extra}"), wheel,
                                    None if extra == "core" else extra)  # fmt: skip
        return made[extra]

    return get


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
