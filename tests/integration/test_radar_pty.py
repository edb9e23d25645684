"""A simulated LD2410 on a real pty, read by the agent's radar adapter over pyserial.

The scenario plays `SPEED` times faster than real time, and the adapter's clock is the
real monotonic clock scaled by the same factor and started with the radar, so event
times are in scenario seconds and the delays read as configured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ruche.broker import PresenceState
from ruche.edge.ld2410 import Malformed
from ruche.edge.presence import (
    PresenceConfig,
    PresenceEvent,
    PresenceUpdate,
    SensorResumed,
    SensorSilent,
)
from ruche.edge.radar import RadarReader
from ruche.sim.ld2410 import (
    Arrive,
    CablePulled,
    Empty,
    Garbage,
    Ghost,
    Latched,
    Leave,
    PtyRadar,
    Scenario,
    Seated,
    StillLost,
    Truncated,
)
from ruche.sim.testing.fakes import Collector

pytestmark = pytest.mark.integration

SPEED = 10.0
TOLERANCE = 0.8
"""Scenario seconds of slack on event times: 80 ms of real scheduling jitter."""
CONFIG = PresenceConfig(
    arrive_delay=2.0, leave_delay=6.0, heartbeat_interval=1000.0, silent_after=2.0
)
OCCUPIED, VACANT = PresenceState.OCCUPIED, PresenceState.VACANT


class Recorder(Collector[PresenceEvent]):
    """What the adapter reports, from its thread."""

    @property
    def events(self) -> list[PresenceEvent]:
        return self.items()

    def summary(self, until: float) -> list[tuple[str, float]]:
        """(what, when) of every change and fault up to `until`, heartbeats left out."""
        out: list[tuple[str, float]] = []
        for event in self.events:
            if event.at > until:
                continue
            match event:
                case PresenceUpdate(heartbeat=False, state=state):
                    out.append((state.value, event.at))
                case SensorSilent():
                    out.append(("silent", event.at))
                case SensorResumed():
                    out.append(("resumed", event.at))
        return out


@contextmanager
def desk(
    scenario: Scenario, *, link: Path | None = None
) -> Iterator[tuple[PtyRadar, RadarReader, Recorder]]:
    """The simulated radar playing `scenario`, and the adapter reading it."""
    recorder = Recorder()
    radar = PtyRadar(scenario, speed=SPEED, link=link)
    radar.start()
    started = radar.started_at
    assert started is not None
    reader = RadarReader(
        port=radar.device,
        desk="desk-1",
        on_event=recorder,
        config=CONFIG,
        read_timeout_s=0.02,
        backoff_s=0.02,
        max_backoff_s=0.03,
        clock=lambda: (time.monotonic() - started) * SPEED,
    )
    try:
        yield radar, reader, recorder
    finally:
        reader.close()
        radar.stop()


def assert_timeline(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [what for what, _ in got] == [what for what, _ in expected], got
    for (what, at), (_, want) in zip(got, expected, strict=True):
        assert at == pytest.approx(want, abs=TOLERANCE), (what, got)


def play_out(radar: PtyRadar, scenario: Scenario) -> None:
    assert radar.wait_finished(scenario.duration / SPEED + 10), "the radar did not finish"
    time.sleep(0.1)  # let the reader drain the last frames


class TestRadarOverPty:
    """Radar scenarios on a pty become the right changes, with the configured delays."""

    def test_arrive_sit_lost_leave(self) -> None:
        scenario = Scenario(
            (Empty(2), Arrive(2), Seated(10), StillLost(3), Seated(5), Leave(2), Empty(10))
        )
        with desk(scenario) as (radar, reader, recorder):
            play_out(radar, scenario)
        stats = reader.stats  # closed: nothing more can happen
        # Arrival starts at 2.0: occupied 2 s later. The still person lost for 3 s is
        # ridden through. The last moving report of the departure is at 23.9: vacant 6 s later.
        assert_timeline(recorder.summary(scenario.duration), [("occupied", 4.0), ("vacant", 29.9)])
        assert stats.parser.frames >= 0.95 * scenario.duration * 10
        assert stats.parser.malformed == {}
        assert stats.opens == 1

    def test_engineering_frames(self) -> None:
        scenario = Scenario((Empty(1), Arrive(2), Seated(5)), engineering=True)
        with desk(scenario) as (radar, reader, recorder):
            play_out(radar, scenario)
        stats = reader.stats  # closed: nothing more can happen
        assert_timeline(recorder.summary(scenario.duration), [("occupied", 3.0)])
        assert stats.parser.frames >= 0.95 * scenario.duration * 10

    def test_ghosts_latch_and_garbage_do_not_flap_or_crash(self) -> None:
        scenario = Scenario(
            (
                Empty(1),
                Garbage(300),
                Ghost(0.5),
                Empty(3),
                Truncated(),
                Ghost(0.8),
                Empty(2),
                Garbage(500),
                Latched(12),
                Truncated(),
                Ghost(0.5),
                Latched(10),
            ),
            seed=11,
        )
        with desk(scenario) as (radar, reader, recorder):
            play_out(radar, scenario)
        stats = reader.stats  # closed: nothing more can happen
        # The second ghost's last report is at 5.2: vacant 6 s later (the first state known);
        # the latched still reading and the third ghost change nothing.
        assert_timeline(recorder.summary(scenario.duration), [("vacant", 11.2)])
        assert stats.parser.garbage_bytes >= 800
        assert stats.parser.malformed_total == 2
        assert set(stats.parser.malformed) <= {Malformed.TRUNCATED, Malformed.BAD_LENGTH}
        assert stats.disconnects == 0

    @pytest.mark.parametrize("unplug", [True, False], ids=["port-vanishes", "stream-stops"])
    def test_cable_pulled_is_a_fault_not_a_vacancy(self, tmp_path: Path, unplug: bool) -> None:
        scenario = Scenario(
            (Empty(1), Arrive(2), Seated(6), CablePulled(8), Seated(6), Leave(2), Empty(9))
        )
        link = tmp_path / "ttyRADAR" if unplug else None
        with desk(scenario, link=link) as (radar, reader, recorder):
            play_out(radar, scenario)
            assert reader.stats.connected
        stats = reader.stats  # closed: nothing more can happen
        assert not stats.connected
        # Silent 2 s after the last report before the pull (8.9); the pull outlasts the
        # leave delay, yet the desk stays occupied; reports resume at 17.0; the departure
        # ends at 24.9 and the desk is vacant 6 s later.
        assert_timeline(
            recorder.summary(scenario.duration),
            [("occupied", 3.0), ("silent", 10.9), ("resumed", 17.0), ("vacant", 30.9)],
        )
        if unplug:
            assert stats.disconnects == 1
            assert stats.open_failures >= 1
            assert stats.opens == 2
        else:
            assert stats.disconnects == 0
            assert stats.opens == 1

    def test_port_absent_at_start_is_retried(self, tmp_path: Path) -> None:
        link = tmp_path / "ttyRADAR"
        recorder = Recorder()
        started = time.monotonic()
        reader = RadarReader(
            port=str(link),
            on_event=recorder,
            config=CONFIG,
            backoff_s=0.02,
            max_backoff_s=0.05,
            clock=lambda: (time.monotonic() - started) * SPEED,
        )
        try:
            time.sleep(0.4)  # 4 scenario seconds: the radar is reported silent
            assert reader.stats.open_failures >= 2
            scenario = Scenario((Arrive(2), Seated(3)))
            with PtyRadar(scenario, speed=SPEED, link=link) as radar:
                play_out(radar, scenario)
                reader.close()
            stats = reader.stats
            assert stats.opens == 1
            assert stats.parser.frames > 20
            assert isinstance(recorder.events[0], SensorSilent)  # nothing heard for 2 s
            assert isinstance(recorder.events[1], SensorResumed)
        finally:
            reader.close()

    def test_a_failing_callback_is_counted_not_fatal(self) -> None:
        calls: list[PresenceEvent] = []

        def broken(event: PresenceEvent) -> None:
            calls.append(event)
            raise RuntimeError("boom")

        scenario = Scenario((Arrive(2), Seated(2), Leave(1), Empty(7)))
        with PtyRadar(scenario, speed=SPEED) as radar:
            started = radar.started_at
            assert started is not None
            with RadarReader(
                port=radar.device,
                on_event=broken,
                config=CONFIG,
                clock=lambda: (time.monotonic() - started) * SPEED,
            ) as reader:
                play_out(radar, scenario)
        stats = reader.stats  # closed: nothing more can happen
        assert [e.state for e in calls if isinstance(e, PresenceUpdate)] == [OCCUPIED, VACANT]
        assert stats.callback_errors == len(calls)
