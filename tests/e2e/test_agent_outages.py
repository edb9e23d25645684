"""The whole agent (`ruche edge run`) with simulated radars and badges, through outages.

Two LD2410 radars write real frames into ptys, a badge is tapped over nfcpy's UDP
driver every few seconds, and the agent runs as its own process against a real
Mosquitto (`ruche.sim.harness`). The stand-in receiver stores events and acks them
per the contract. Whatever dies (the broker for 30 s, the broker with SIGKILL, the
agent with SIGKILL), every event must arrive once and in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from ruche.broker import OfflineDecision, Presence, Tap
from ruche.sim.harness import AgentHarness

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(params=["stand-in", "server"])
def harness(request, tmp_path) -> Iterator[Callable[[float], AgentHarness]]:
    """The agent against the stand-in receiver, and against the server's own ingestion."""
    made: list[AgentHarness] = []

    def make(seconds: float) -> AgentHarness:
        mode = "ingest" if request.param == "server" else "stand-in"
        rig = AgentHarness(tmp_path, radars=2, seconds=seconds, server=mode)
        made.append(rig)
        rig.start()
        rig.start_agent()
        return rig

    yield make
    for rig in made:
        rig.stop()


def settle(rig: AgentHarness, timeout: float = 90.0) -> int:
    """Wait until the agent has nothing unacked; return how many events it produced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        produced, acked = rig.outbox()
        if produced and produced == acked:
            return produced
        time.sleep(0.2)
    pytest.fail(f"agent still has unacked events: {rig.outbox()}")


def stored(rig: AgentHarness, produced: int) -> list[object]:
    """What the receiver stored, checked to be each event exactly once, in order."""
    payloads: list[object] = list(rig.stored())
    seqs = [p.seq for p in payloads]  # type: ignore[attr-defined]
    assert seqs == list(range(1, produced + 1))
    return payloads


def during(payloads: list[object], kind: type, start: datetime, end: datetime) -> list[object]:
    return [p for p in payloads if isinstance(p, kind) and start <= p.ts <= end]  # type: ignore[attr-defined]


class TestBrokerOutages:
    """Desk changes and taps during a broker outage all reach the server afterwards."""

    def test_broker_stopped_for_30_seconds(self, harness):
        rig = harness(60)
        time.sleep(6)
        down = datetime.now(UTC)
        rig.broker.stop()
        time.sleep(30)
        rig.broker.start()
        up = datetime.now(UTC)
        time.sleep(6)
        rig.stop_tapping()
        payloads = stored(rig, settle(rig))
        assert len(during(payloads, Presence, down, up)) >= 4, "desks changed meanwhile"
        assert len(during(payloads, Tap, down, up)) >= 5, "badges were tapped meanwhile"
        assert len(during(payloads, OfflineDecision, down, up)) >= 5, "the door decided alone"

    def test_broker_killed_mid_stream(self, harness):
        rig = harness(30)
        time.sleep(8)
        rig.broker.kill()
        time.sleep(2)
        rig.broker.start()
        time.sleep(8)
        rig.stop_tapping()
        payloads = stored(rig, settle(rig))
        assert any(isinstance(p, Tap) for p in payloads)
        assert any(isinstance(p, Presence) for p in payloads)


class TestAgentKilled:
    """An agent killed with SIGKILL mid-stream loses nothing it had recorded."""

    def test_agent_killed_and_restarted(self, harness):
        rig = harness(30)
        time.sleep(8)
        before, _ = rig.outbox()
        rig.kill_agent()
        rig.start_agent()
        time.sleep(8)
        rig.stop_tapping()
        produced = settle(rig)
        assert produced > before, "the restarted agent went on from where it was"
        payloads = stored(rig, produced)
        assert any(isinstance(p, Presence) for p in payloads)
