"""The whole agent (`ruche edge run`) with simulated radars and badges, through outages.

Two LD2410 radars write real frames into ptys, a badge is tapped over nfcpy's UDP
driver every few seconds, and the agent runs as its own process against a real
Mosquitto. The stand-in receiver stores events and acks them per the contract.
Whatever dies (the broker for 30 s, the broker with SIGKILL, the agent with
SIGKILL), every event must arrive once and in order.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ruche.broker import OfflineDecision, Presence, Tap
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto import MosquittoProcess
from ruche.broker.passwords import generate_password
from ruche.ports import free_port
from ruche.sim.ld2410 import Arrive, Empty, Leave, PtyRadar, Scenario, Seated
from ruche.sim.nfc import BadgeEmulator
from ruche.sim.receiver import EventReceiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE, AGENT = "lab", "agent-a"
SITE_KEY = "00112233445566778899aabbccddeeff"
BADGES = [bytes.fromhex("0114b3c2d1e0f001"), bytes.fromhex("0114b3c2d1e0f002")]


def busy_desk(seconds: float, seed: int) -> Scenario:
    """A desk that is taken and left again every ten seconds or so."""
    cycle = (Empty(2.0), Arrive(1.0), Seated(4.0), Leave(1.0), Empty(2.0))
    steps = cycle * (int(seconds // 10) + 1)
    return Scenario(steps=steps, seed=seed)


@dataclass
class Rig:
    broker: MosquittoProcess
    receiver: EventReceiver
    config: Path
    state_dir: Path
    agent: subprocess.Popen[bytes] | None = None

    def start_agent(self) -> None:
        log = (self.state_dir.parent / "agent.log").open("ab")
        self.agent = subprocess.Popen(
            [sys.executable, "-m", "ruche", "edge", "run", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill_agent(self) -> None:
        assert self.agent is not None
        os.kill(self.agent.pid, signal.SIGKILL)
        self.agent.wait()

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(15)

    def outbox(self) -> tuple[int, int]:
        """(highest seq produced, highest seq acked), read from the agent's own database."""
        path = self.state_dir / "outbox.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return meta["next_seq"] - 1, meta["acked_seq"]


class Tapper:
    """Taps badges at the door's reader every `every` seconds."""

    def __init__(self, device: str, every: float) -> None:
        self.emulator = BadgeEmulator(device=device)
        self.every = every
        self.taps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.emulator.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.emulator.tap(BADGES[self.taps % 2], hold_s=1.3)
            self.taps += 1


@pytest.fixture
def rig(tmp_path) -> Iterator[Callable[[float], tuple[Rig, Tapper]]]:
    agent = AgentAccount(site=SITE, id=AGENT, password=generate_password())
    accounts = Accounts(server=ServerAccount(password=generate_password()), agents=(agent,))
    broker = MosquittoProcess.generate(tmp_path / "broker", accounts)
    broker.start()
    receiver = EventReceiver(
        host=broker.host,
        port=broker.port,
        username=accounts.server.username,
        password=accounts.server.password.get_secret_value(),
        site=SITE,
    )
    receiver.start()
    radars: list[PtyRadar] = []
    tappers: list[Tapper] = []
    made: list[Rig] = []

    def make(seconds: float) -> tuple[Rig, Tapper]:
        reader = f"udp:127.0.0.1:{free_port()}"
        for i in range(2):
            radar = PtyRadar(busy_desk(seconds, seed=i), link=tmp_path / f"radar-{i}")
            radar.start()
            radars.append(radar)
        state = tmp_path / "state"
        config = tmp_path / "agent.toml"
        config.write_text(
            f"""
site = "{SITE}"
agent = "{AGENT}"
site_key = "{SITE_KEY}"
state_dir = "{state}"
gpio = "mock"
request_timeout_ms = 300

[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{agent.username}"
password = "{agent.password.get_secret_value()}"
resend_after_s = 1.0

[[doors]]
id = "front"
reader = "{reader}"
relay_pin = 17
contact_pin = 27

[[desks]]
id = "desk-0"
serial = "{tmp_path / "radar-0"}"
arrive_s = 0.5
leave_s = 1.0

[[desks]]
id = "desk-1"
serial = "{tmp_path / "radar-1"}"
arrive_s = 0.5
leave_s = 1.0
""",
            encoding="utf-8",
        )
        made.append(Rig(broker, receiver, config, state))
        made[-1].start_agent()
        tapper = Tapper(reader, every=3.0)
        tappers.append(tapper)
        tapper.start()
        return made[-1], tapper

    yield make
    for tapper in tappers:
        tapper.stop()
    for radar in radars:
        radar.stop()
    for made_rig in made:
        made_rig.stop_agent()
    receiver.stop()
    broker.stop()


def settle(rig: Rig, timeout: float = 90.0) -> int:
    """Wait until the agent has nothing unacked; return how many events it produced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        produced, acked = rig.outbox()
        if produced and produced == acked:
            return produced
        time.sleep(0.2)
    pytest.fail(f"agent still has unacked events: {rig.outbox()}; {rig.receiver.stats}")


def assert_once_in_order(rig: Rig, produced: int) -> list[object]:
    payloads = [e.payload for e in rig.receiver.snapshot()]
    seqs = [p.seq for p in payloads]  # type: ignore[attr-defined]
    assert seqs == list(range(1, produced + 1)), f"stats {rig.receiver.stats}"
    return payloads


def during(payloads: list[object], kind: type, start: datetime, end: datetime) -> int:
    return sum(1 for p in payloads if isinstance(p, kind) and start <= p.ts <= end)  # type: ignore[attr-defined]


class TestBrokerOutages:
    """Desk changes and taps during a broker outage all reach the server afterwards."""

    def test_broker_stopped_for_30_seconds(self, rig):
        rig_, tapper = rig(60)
        time.sleep(6)
        down = datetime.now(UTC)
        rig_.broker.stop()
        time.sleep(30)
        rig_.broker.start()
        up = datetime.now(UTC)
        time.sleep(6)
        tapper.stop()
        produced = settle(rig_)
        payloads = assert_once_in_order(rig_, produced)
        assert during(payloads, Presence, down, up) >= 4, "desks changed during the outage"
        assert during(payloads, Tap, down, up) >= 5, "badges were tapped during the outage"
        offline = [p for p in payloads if isinstance(p, OfflineDecision) and down <= p.ts <= up]
        assert len(offline) >= 5, "the door decided alone and said so"

    def test_broker_killed_mid_stream(self, rig):
        rig_, tapper = rig(30)
        time.sleep(8)
        rig_.broker.kill()
        time.sleep(2)
        rig_.broker.start()
        time.sleep(8)
        tapper.stop()
        produced = settle(rig_)
        payloads = assert_once_in_order(rig_, produced)
        assert any(isinstance(p, Tap) for p in payloads)
        assert any(isinstance(p, Presence) for p in payloads)


class TestAgentKilled:
    """An agent killed with SIGKILL mid-stream loses nothing it had recorded."""

    def test_agent_killed_and_restarted(self, rig):
        rig_, tapper = rig(30)
        time.sleep(8)
        before, _ = rig_.outbox()
        rig_.kill_agent()
        rig_.start_agent()
        time.sleep(8)
        tapper.stop()
        produced = settle(rig_)
        assert produced > before, "the restarted agent went on from where it was"
        payloads = assert_once_in_order(rig_, produced)
        assert any(isinstance(p, Presence) for p in payloads)
