"""Nothing lost between the agent's outbox and the server, whichever process dies.

A real Mosquitto on the generated config, the agent's outbox and link, and the
stand-in receiver that acks as the contract says. The full agent with simulated
hardware goes through the same paths in test_edge_agent.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime

import pytest

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.passwords import generate_password
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.sim.receiver import EventReceiver
from ruche.sim.services.mosquitto import MosquittoProcess

pytestmark = pytest.mark.integration

SITE, AGENT = "lab", "agent-a"


def presence_event(seq: int) -> tuple[str, bytes]:
    state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
    payload = Presence(seq=seq, ts=datetime.now(UTC), mono=time.monotonic(), state=state)
    return str(Topic.presence(SITE, AGENT, f"desk-{seq % 4}")), encode(payload)


@pytest.fixture
def stack(tmp_path):
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
    options = LinkOptions(
        site=SITE,
        agent=AGENT,
        host=broker.host,
        port=broker.port,
        username=agent.username,
        password=agent.password.get_secret_value(),
        resend_after=1.0,
        reconnect_max=2.0,
    )
    yield broker, receiver, options
    receiver.stop()
    broker.stop()


class Pump:
    """Appends events to an outbox at a steady rate and wakes the link."""

    def __init__(self, outbox: Outbox, link: AgentLink, interval: float) -> None:
        self.outbox, self.link, self.interval = outbox, link, interval
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.outbox.append(presence_event)
            self.count += 1
            self.link.wake()


def assert_exactly_once_in_order(receiver: EventReceiver, expected: int) -> None:
    assert receiver.wait_for(expected, timeout=60), (
        f"{len(receiver.events)} of {expected} arrived; stats {receiver.stats}"
    )
    seqs = [e.payload.seq for e in receiver.snapshot()]
    assert seqs == list(range(1, expected + 1))


def _run_link(tmp_path, options, broker_fault):
    outbox = Outbox(tmp_path / "outbox.db")
    link = AgentLink(options, outbox, on_command=lambda c: None, on_allowlist=lambda a: None)
    link.start()
    pump = Pump(outbox, link, interval=0.004)
    pump.start()
    try:
        time.sleep(1.0)
        broker_fault()
        time.sleep(1.0)
    finally:
        pump.stop()
    return outbox, link, pump.count


class TestBrokerOutage:
    """Events produced while the broker is down or after it lost its memory all arrive."""

    def test_broker_stopped_and_restarted(self, stack, tmp_path):
        broker, receiver, options = stack

        def outage() -> None:
            broker.stop()
            time.sleep(3.0)
            broker.start()

        outbox, link, produced = _run_link(tmp_path, options, outage)
        try:
            assert_exactly_once_in_order(receiver, produced)
            deadline = time.monotonic() + 10
            while outbox.depth and time.monotonic() < deadline:
                time.sleep(0.05)
            assert outbox.depth == 0, "every event was acked and released"
        finally:
            link.stop()
            outbox.close()

    def test_broker_killed_mid_stream(self, stack, tmp_path):
        broker, receiver, options = stack

        def crash() -> None:
            broker.kill()  # forgets everything since its last snapshot
            time.sleep(1.0)
            broker.start()

        outbox, link, produced = _run_link(tmp_path, options, crash)
        try:
            assert_exactly_once_in_order(receiver, produced)
        finally:
            link.stop()
            outbox.close()


PUMP_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from ruche.broker import Presence, PresenceState, Topic, encode
    from ruche.edge.link import AgentLink, LinkOptions
    from ruche.edge.outbox import Outbox

    db, host, port, user, password, total = sys.argv[1:7]
    outbox = Outbox(Path(db))
    options = LinkOptions(site="lab", agent="agent-a", host=host, port=int(port),
                          username=user, password=password, resend_after=1.0)
    link = AgentLink(options, outbox, on_command=lambda c: None, on_allowlist=lambda a: None)
    link.start()

    def event(seq):
        payload = Presence(seq=seq, ts=datetime.now(UTC), mono=time.monotonic(),
                           state=PresenceState.OCCUPIED)
        return str(Topic.presence("lab", "agent-a", "desk-1")), encode(payload)

    while outbox.next_seq <= int(total):
        outbox.append(event)
        link.wake()
        time.sleep(0.004)
    print("produced", flush=True)
    time.sleep(600)
    """
)


class TestAgentKilled:
    """An agent killed with SIGKILL mid-stream resumes from its outbox: no loss, no gap."""

    def test_agent_killed_and_restarted(self, stack, tmp_path):
        broker, receiver, options = stack
        total = 1500
        args = [sys.executable, "-c", PUMP_SCRIPT, str(tmp_path / "agent.db"), broker.host,
                str(broker.port), options.username, options.password, str(total)]  # fmt: skip
        first = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        try:
            assert receiver.wait_for(200, timeout=30)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            first.stdout.close()  # type: ignore[union-attr]
        second = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        try:
            assert_exactly_once_in_order(receiver, total)
        finally:
            second.terminate()
            second.wait()
            second.stdout.close()  # type: ignore[union-attr]
