"""Presence debouncing: radar reports and PIR levels with explicit times in, state changes out."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruche.broker import PresenceState, RawSummary
from ruche.edge.ld2410 import RadarReport, TargetState
from ruche.edge.presence import (
    LATCHED_CONFIDENCE,
    PresenceConfig,
    PresenceDebouncer,
    PresenceEvent,
    PresenceUpdate,
    SensorResumed,
    SensorSilent,
)
from ruche.sim.ld2410 import (
    Arrive,
    Empty,
    Ghost,
    Latched,
    Leave,
    Scenario,
    Seated,
    StillLost,
    reports,
)

OCCUPIED, VACANT = PresenceState.OCCUPIED, PresenceState.VACANT
HZ = 10
CONFIG = PresenceConfig(
    arrive_delay=3.0, leave_delay=10.0, heartbeat_interval=1000.0, silent_after=5.0
)

NOBODY = RadarReport(target=TargetState.NONE, moving_energy=3, still_energy=5)


def walking(i: int) -> RadarReport:
    return RadarReport(
        target=TargetState.MOVING, moving_distance_cm=200 - i % 50, moving_energy=60 + i % 20
    )


def breathing(i: int) -> RadarReport:
    """A still person: the still reading moves a little from one report to the next."""
    return RadarReport(
        target=TargetState.STILL,
        still_distance_cm=80 + i % 3,
        still_energy=40 + (i * 7) % 25,
        detection_distance_cm=80,
    )


def latched(_i: int) -> RadarReport:
    return RadarReport(target=TargetState.STILL, still_distance_cm=112, still_energy=57)


def nobody(_i: int) -> RadarReport:
    return NOBODY


Source = Callable[[int], RadarReport]


def run(
    debouncer: PresenceDebouncer, start: float, end: float, source: Source
) -> list[PresenceEvent]:
    """Reports from `source` at 10 Hz over [start, end), ticking after each, like the adapter."""
    events: list[PresenceEvent] = []
    for k in range(round(start * HZ), round(end * HZ)):
        now = k / HZ
        events += debouncer.observe(now, source(k))
        events += debouncer.tick(now)
    return events


def timeline(debouncer: PresenceDebouncer, *segments: tuple[float, Source]) -> list[PresenceEvent]:
    """Consecutive segments of (seconds, source) from time 0."""
    events: list[PresenceEvent] = []
    start = 0.0
    for seconds, source in segments:
        events += run(debouncer, start, start + seconds, source)
        start += seconds
    return events


def changes(events: Iterable[PresenceEvent]) -> list[tuple[float, PresenceState]]:
    return [
        (round(e.at, 3), e.state)
        for e in events
        if isinstance(e, PresenceUpdate) and not e.heartbeat
    ]


def fresh(**overrides: float | int | None) -> PresenceDebouncer:
    values = {
        "arrive_delay": CONFIG.arrive_delay,
        "leave_delay": CONFIG.leave_delay,
        "heartbeat_interval": CONFIG.heartbeat_interval,
        "silent_after": CONFIG.silent_after,
    }
    values.update(overrides)
    return PresenceDebouncer(PresenceConfig(**values))  # type: ignore[arg-type]


class TestPresenceConfig:
    """The configuration refuses values that make no sense, naming the field."""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("arrive_delay", -1.0),
            ("leave_delay", float("nan")),
            ("heartbeat_interval", 0.0),
            ("silent_after", 0.0),
            ("evidence_gap", float("inf")),
            ("min_still_energy", 101),
        ],
    )
    def test_refused(self, field: str, value: float) -> None:
        with pytest.raises(ValueError, match=field):
            PresenceConfig(**{field: value})  # type: ignore[arg-type]

    def test_defaults(self) -> None:
        config = PresenceConfig()
        assert (config.arrive_delay, config.leave_delay) == (3.0, 30.0)
        assert (config.heartbeat_interval, config.silent_after) == (60.0, 5.0)


class TestArrival:
    """A desk becomes occupied after `arrive_delay` of continuous evidence, not before."""

    def test_walk_in_and_sit(self) -> None:
        d = fresh()
        events = timeline(d, (2.0, nobody), (1.5, walking), (20.0, breathing))
        assert changes(events) == [(5.0, OCCUPIED)]
        [update] = [e for e in events if isinstance(e, PresenceUpdate)]
        assert update.raw is not None
        assert update.raw.energy is not None
        assert update.raw.energy >= 40
        assert 0.5 < update.confidence <= 1.0

    def test_zero_delay_is_immediate(self) -> None:
        d = fresh(arrive_delay=0.0)
        assert changes(timeline(d, (1.0, nobody), (0.5, walking))) == [(1.0, OCCUPIED)]

    def test_a_break_longer_than_the_gap_restarts_the_arrival(self) -> None:
        d = fresh()
        events = timeline(d, (2.0, walking), (1.5, nobody), (2.9, walking), (0.2, walking))
        assert changes(events) == [(6.5, OCCUPIED)]

    def test_a_short_break_does_not(self) -> None:
        d = fresh()
        events = timeline(d, (2.0, walking), (0.5, nobody), (1.0, walking))
        assert changes(events) == [(3.0, OCCUPIED)]

    def test_weak_moving_energy_is_noise(self) -> None:
        weak = RadarReport(target=TargetState.MOVING, moving_distance_cm=90, moving_energy=10)
        d = fresh()
        assert changes(run(d, 0.0, 9.0, lambda _i: weak)) == []

    def test_calibration_reports_are_not_people(self) -> None:
        calibrating = RadarReport(target=TargetState.NOISE_DETECTING, moving_energy=90)
        d = fresh()
        assert changes(run(d, 0.0, 12.0, lambda _i: calibrating)) == [(10.0, VACANT)]


class TestDeparture:
    """A desk becomes vacant `leave_delay` after the last evidence."""

    def test_leaves(self) -> None:
        d = fresh()
        events = timeline(d, (5.0, walking), (10.0, breathing), (2.0, walking), (15.0, nobody))
        assert changes(events) == [(3.0, OCCUPIED), (26.9, VACANT)]
        vacancy = [e for e in events if isinstance(e, PresenceUpdate)][-1]
        assert vacancy.confidence == 1.0
        assert vacancy.raw == RawSummary(energy=5)

    def test_empty_at_start_is_vacant_after_the_leave_delay(self) -> None:
        d = fresh()
        assert changes(run(d, 0.0, 15.0, nobody)) == [(10.0, VACANT)]

    def test_still_person_lost_for_seconds_rides_through(self) -> None:
        d = fresh()
        events = timeline(d, (4.0, walking), (10.0, breathing), (8.0, nobody), (30.0, breathing))
        assert changes(events) == [(3.0, OCCUPIED)]

    def test_lost_longer_than_the_leave_delay_is_a_departure(self) -> None:
        d = fresh()
        events = timeline(d, (4.0, walking), (10.0, breathing), (12.0, nobody), (5.0, breathing))
        assert changes(events) == [(3.0, OCCUPIED), (23.9, VACANT), (29.0, OCCUPIED)]


class TestGhosts:
    """Brief spurious moving targets on an empty desk never make it occupied."""

    def test_repeated_ghosts_do_not_flap(self) -> None:
        d = fresh()
        ghost_then_quiet: list[tuple[float, Source]] = [(1.0, walking), (4.0, nobody)] * 12
        events = timeline(d, (12.0, nobody), *ghost_then_quiet)
        assert changes(events) == [(10.0, VACANT)]

    def test_ghost_while_occupied_changes_nothing(self) -> None:
        d = fresh()
        events = timeline(d, (4.0, walking), (20.0, breathing), (0.5, walking), (5.0, breathing))
        assert changes(events) == [(3.0, OCCUPIED)]


class TestLatchedEnergy:
    """A still reading frozen to the unit is not a person: the desk goes or stays vacant."""

    def test_latched_at_power_up_never_occupies(self) -> None:
        d = fresh()
        assert changes(run(d, 0.0, 120.0, latched)) == [(10.0, VACANT)]
        assert d.latched

    def test_latch_after_departure_goes_vacant_on_time(self) -> None:
        d = fresh()
        events = timeline(d, (4.0, walking), (20.0, breathing), (60.0, latched))
        assert changes(events) == [(3.0, OCCUPIED), (34.0, VACANT)]
        vacancy = [e for e in events if isinstance(e, PresenceUpdate)][-1]
        assert vacancy.confidence == LATCHED_CONFIDENCE
        assert vacancy.raw == RawSummary(distance_cm=112, energy=57)

    def test_latch_with_ghosts_does_not_flap(self) -> None:
        d = fresh()
        events = timeline(d, *[(12.0, latched), (0.6, walking)] * 8)
        assert changes(events) == [(10.0, VACANT)]

    def test_breathing_person_is_never_latched(self) -> None:
        d = fresh()
        events = timeline(d, (4.0, walking), (300.0, breathing))
        assert changes(events) == [(3.0, OCCUPIED)]
        assert not d.latched

    def test_saturated_energy_with_a_moving_distance_is_a_person(self) -> None:
        def saturated(i: int) -> RadarReport:
            return RadarReport(
                target=TargetState.STILL, still_distance_cm=40 + i % 4, still_energy=100
            )

        d = fresh()
        events = timeline(d, (4.0, walking), (120.0, saturated))
        assert changes(events) == [(3.0, OCCUPIED)]


class TestHeartbeat:
    """The current state is repeated every heartbeat interval, and only once it is known."""

    def test_heartbeats(self) -> None:
        d = fresh(heartbeat_interval=5.0)
        events = timeline(d, (4.0, walking), (13.0, breathing))
        beats = [(round(e.at, 3), e.state) for e in events if isinstance(e, PresenceUpdate)]
        assert beats == [(3.0, OCCUPIED), (8.0, OCCUPIED), (13.0, OCCUPIED)]
        assert [e.heartbeat for e in events if isinstance(e, PresenceUpdate)] == [
            False,
            True,
            True,
        ]

    def test_a_change_restarts_the_interval(self) -> None:
        d = fresh(heartbeat_interval=8.0, leave_delay=5.0)
        events = timeline(d, (4.0, walking), (6.0, nobody), (10.0, nobody))
        got = [
            (round(e.at, 3), e.state, e.heartbeat) for e in events if isinstance(e, PresenceUpdate)
        ]
        assert got == [(3.0, OCCUPIED, False), (8.9, VACANT, False), (16.9, VACANT, True)]

    def test_none_before_a_state_is_known(self) -> None:
        d = fresh(heartbeat_interval=1.0)
        assert run(d, 0.0, 9.0, nobody) == []

    def test_ticks_alone_drive_heartbeats(self) -> None:
        d = fresh(heartbeat_interval=2.0, silent_after=None)
        run(d, 0.0, 4.0, walking)
        events = [e for t in range(40, 100) for e in d.tick(t / 10)]
        assert [round(e.at, 3) for e in events] == [5.0, 7.0, 9.0]


class TestSilence:
    """A sensor that stops reporting is a fault, never a vacancy, until it speaks again."""

    def test_silent_then_resumed(self) -> None:
        d = fresh()
        events = run(d, 0.0, 14.0, walking)
        events += [e for t in range(140, 400) for e in d.tick(t / 10)]
        events += run(d, 40.0, 41.0, breathing)
        assert changes(events) == [(3.0, OCCUPIED)]
        assert [e for e in events if not isinstance(e, PresenceUpdate)] == [
            SensorSilent(at=pytest.approx(18.9), last_report_at=13.9),
            SensorResumed(at=40.0, silent_for=pytest.approx(26.1)),
        ]
        assert not d.silent

    def test_after_a_silence_absence_must_be_seen_for_the_full_leave_delay(self) -> None:
        d = fresh()
        run(d, 0.0, 14.0, walking)
        for t in range(140, 400):
            d.tick(t / 10)
        events = run(d, 40.0, 60.0, nobody)
        assert changes(events) == [(50.0, VACANT)]

    def test_never_heard(self) -> None:
        d = fresh()
        events = [e for t in range(100) for e in d.tick(t / 10)]
        assert events == [SensorSilent(at=5.0, last_report_at=None)]
        assert d.state is None

    def test_disabled(self) -> None:
        d = fresh(silent_after=None)
        events = [e for t in range(1000) for e in d.tick(t / 10)]
        assert [(e.at, type(e)) for e in events] == [(10.0, PresenceUpdate)]  # vacant only


class TestPir:
    """A PIR's level drives the same delays: held high is evidence all along."""

    def test_arrive_and_leave(self) -> None:
        d = fresh(silent_after=None)
        events = d.observe_pir(1.0, detected=True)
        events += [e for t in range(10, 60) for e in d.tick(t / 10)]
        events += d.observe_pir(6.0, detected=False)
        events += [e for t in range(60, 200) for e in d.tick(t / 10)]
        assert changes(events) == [(4.0, OCCUPIED), (16.0, VACANT)]
        assert all(e.raw is None for e in events if isinstance(e, PresenceUpdate))

    def test_short_pulse_is_not_an_arrival(self) -> None:
        d = fresh(silent_after=None)
        events = d.observe_pir(1.0, detected=True) + d.observe_pir(2.0, detected=False)
        events += [e for t in range(20, 200) for e in d.tick(t / 10)]
        assert changes(events) == [(12.0, VACANT)]


class TestClock:
    """Time that goes backwards is taken as time standing still."""

    def test_backwards(self) -> None:
        d = fresh()
        run(d, 0.0, 3.5, walking)
        assert d.observe(1.0, walking(0)) == []
        assert d.state is OCCUPIED


class TestSimulatedScenarios:
    """The simulator's timelines, fed at their own times, give the expected changes only."""

    def test_arrive_sit_lost_leave(self) -> None:
        scenario = Scenario(
            (Empty(5), Arrive(2), Seated(20), StillLost(4), Seated(10), Leave(2), Empty(20))
        )
        d = fresh()
        events = [e for t, r in reports(scenario) for e in d.observe(t, r) + d.tick(t)]
        assert changes(events) == [(8.0, OCCUPIED), (52.9, VACANT)]

    def test_field_faults_do_not_flap(self) -> None:
        steps = (Empty(12), Ghost(0.8), Empty(5), Ghost(1.5), Latched(40), Ghost(0.5), Latched(30))
        d = fresh()
        events = [e for t, r in reports(Scenario(steps)) for e in d.observe(t, r) + d.tick(t)]
        assert changes(events) == [(10.0, VACANT)]


@st.composite
def report_streams(draw: st.DrawFn) -> list[tuple[float, RadarReport | None]]:
    """Reports (or bare ticks, None) at increasing times."""
    steps = draw(st.lists(st.tuples(st.floats(0.0, 3.0), st.booleans()), max_size=200))
    sources = [walking, breathing, latched, nobody]
    now, out = 0.0, []
    for i, (gap, is_report) in enumerate(steps):
        now += gap
        out.append((now, draw(st.sampled_from(sources))(i) if is_report else None))
    return out


class TestInvariants:
    """Whatever arrives, changes alternate and heartbeats repeat the state in force."""

    @given(report_streams())
    def test_changes_alternate(self, stream: list[tuple[float, RadarReport | None]]) -> None:
        d = fresh(heartbeat_interval=5.0)
        current: PresenceState | None = None
        for now, report in stream:
            events = d.tick(now) if report is None else d.observe(now, report)
            for event in events:
                if isinstance(event, PresenceUpdate):
                    if event.heartbeat:
                        assert event.state is current
                    else:
                        assert event.state is not current
                        current = event.state
                    assert 0.0 <= event.confidence <= 1.0
        assert d.state is current
