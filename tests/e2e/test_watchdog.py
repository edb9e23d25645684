"""`ruche edge run` under a supervisor that speaks sd_notify as systemd does: READY=1,
steady watchdog pings, and a hung agent aborted and started again."""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import time

import pytest

from ruche.broker import Channel, Status, Topic, decode_payload
from ruche.edge.run import HANG_FILE_ENV
from ruche.sim.testing.supervisor import Supervisor
from ruche.sim.testing.waits import eventually, wait_until
from ruche.systemd import ruche_executable

pytestmark = pytest.mark.integration

WATCHDOG_S = 2.0


@pytest.fixture
def agent_config(site, tmp_path):
    """An agent with no doors or desks, on mock pins, with the rig's account."""
    account = site.agents["agent-a"]
    config = tmp_path / "agent.toml"
    config.write_text(
        f'site = "{site.site}"\nagent = "agent-a"\nsite_key = "{"00" * 16}"\n'
        f'state_dir = "{tmp_path / "state"}"\ngpio = "mock"\n\n[mqtt]\n'
        f'host = "{site.broker.host}"\nport = {site.broker.port}\n'
        f'username = "{account.username}"\npassword = "{account.password.get_secret_value()}"\n'
    )
    return config


def retained_state(site) -> str | None:
    """The agent's retained status as a subscriber arriving now reads it; None if there is
    none yet. (The site fixture closes the probe.)"""
    probe = site.connect_server()
    probe.subscribe(str(Topic.status(site.site, "agent-a")))
    try:
        message = probe.messages.get(timeout=2)
    except queue.Empty:
        return None
    status = decode_payload(Channel.STATUS, message.payload)
    assert isinstance(status, Status)
    return status.state


class TestUnderTheWatchdog:
    """A real agent pings while it runs, is aborted and restarted when it hangs, and comes
    back online once the hang is over."""

    def test_hung_agent_is_restarted_and_comes_back(self, site, agent_config, tmp_path):
        hang = tmp_path / "hang"
        command = [str(ruche_executable()), "edge", "run", "--config", str(agent_config)]
        with Supervisor(
            command, workdir=tmp_path, watchdog_s=WATCHDOG_S, env={HANG_FILE_ENV: str(hang)}
        ) as service:
            first = service.wait_ready(timeout=60)
            log = tmp_path / "service.log"
            assert eventually(lambda: retained_state(site) == "online", timeout=30)

            # Steady pings: one with READY=1, then one every half period.
            wait_until(lambda: len(service.notices("WATCHDOG")) >= 4, timeout=10)
            pings = [n.at for n in service.notices("WATCHDOG") if n.pid == first]
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert all(gap < WATCHDOG_S * 0.75 for gap in gaps), gaps
            assert (service.aborts, service.restarts) == (0, 0), log.read_text()

            hang.touch()
            hung_at = time.monotonic()
            wait_until(lambda: service.aborts >= 1, timeout=WATCHDOG_S + 2, what="an abort")
            # The last ping came at most half a period before the hang began.
            assert time.monotonic() - hung_at <= WATCHDOG_S + 0.5
            wait_until(lambda: service.restarts >= 1, timeout=10, what="a restart")
            assert service.exits[0] == -6  # SIGABRT

            hang.unlink()
            again = service.wait_ready(timeout=60)
            assert again != first
            aborts = service.aborts
            assert eventually(lambda: retained_state(site) == "online", timeout=30)
            # Back to steady pings: no abort for two more periods.
            time.sleep(2 * WATCHDOG_S)
            assert service.aborts == aborts, log.read_text()
            assert service.ready
        stopping = service.notices("STOPPING")
        assert stopping, "STOPPING=1 when told to stop"
        assert service.exits[-1] == 0


class TestNoManagerListening:
    """A NOTIFY_SOCKET nobody listens on (inherited from elsewhere) is said once; the agent
    runs on."""

    def test_agent_runs_and_says_it_once(self, site, agent_config, tmp_path):
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "nobody"), "WATCHDOG_USEC": "400000"}
        command = [str(ruche_executable()), "edge", "run", "--config", str(agent_config)]
        agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            assert eventually(lambda: retained_state(site) == "online", timeout=30)
            time.sleep(1.0)  # several pings' worth
        finally:
            agent.send_signal(signal.SIGTERM)
            output, _ = agent.communicate(timeout=30)
        assert agent.returncode == 0, output
        assert output.count("could not tell systemd") == 1, output
