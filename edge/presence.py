"""Desk presence debouncing: radar reports (or PIR levels) in, occupied/vacant changes out.

Pure: no I/O and no clock. Every call takes `now`, the agent's monotonic clock in
seconds, and returns what should be published or logged because of it:

- `PresenceUpdate`: a state change, or (`heartbeat=True`) the current state repeated
  every `heartbeat_interval` seconds. Never one per radar frame.
- `SensorSilent`: no report for `silent_after` seconds (cable pulled, module dead). The
  state is frozen while silent: a silent sensor is a fault to report, not a vacant desk.
- `SensorResumed`: reports arrive again after a silence.

How a desk changes state:

- Evidence of presence comes in instants. A report is evidence when it shows a moving
  target with at least `min_moving_energy`, or a live still target (below).
- Vacant to occupied: evidence keeps coming, with no break longer than `evidence_gap`,
  for `arrive_delay` seconds. A ghost (a brief spurious moving target on an empty desk)
  is shorter than that and changes nothing.
- Occupied to vacant: no evidence for `leave_delay` seconds. A still person the radar
  loses for a few seconds is ridden through, as long as the loss is shorter than that.
- At start the state is unknown: occupied as above, or vacant once `leave_delay`
  seconds have passed without evidence (vacancy needs the same proof as a departure).

Latched energies. A stationary person is seen only through tiny movements (breathing,
shifting) that modulate the still target's energy and distance estimate from one 10 Hz
report to the next. The LD2410 sometimes latches instead: an empty desk reports a still
target whose energy and distance repeat, unchanged, for minutes. So a still target is
evidence only at the reports where its reading (energy, distance) *changes*: a frozen
reading stops renewing the evidence and the leave delay runs out as if nobody were
there. The first still reading after a start or a silence is not evidence either, so a
sensor latched at power-up never makes a desk occupied. Both values must freeze:
a person close enough to saturate the energy at 100 still moves the distance estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ruche.broker import PresenceState, RawSummary
from ruche.edge.ld2410 import RadarReport

_SLACK = 1e-6
"""Seconds of tolerance on every delay, so that 23.9 - 13.9 counts as 10 s: float
arithmetic on clock readings must not move a decision to the next report."""

LATCHED_CONFIDENCE = 0.75
"""Confidence of a vacancy decided while the radar still reports a (frozen) still target."""


@dataclass(frozen=True, slots=True)
class PresenceConfig:
    """How one desk sensor is debounced; times in seconds.

    The defaults suit an LD2410 over a desk: 3 s of presence to call a desk taken
    (longer than any ghost seen in the field, short enough that a member sitting down
    sees it at once), 30 s of absence to call it free (a still reader is lost for a few
    seconds at a time, and a member stepping away for coffee is a departure only after
    the leave delay), a heartbeat a minute, and a fault after 5 s without a report (the
    module reports ten times a second). The energy floors match the module's lowest
    factory gate sensitivity (15): below that a report is noise.
    """

    arrive_delay: float = 3.0
    leave_delay: float = 30.0
    heartbeat_interval: float = 60.0
    silent_after: float | None = 5.0
    """None for a PIR, which says nothing while nothing moves."""
    evidence_gap: float = 1.0
    """Longest break in the evidence that still counts as one arrival."""
    min_moving_energy: int = 15
    min_still_energy: int = 15
    latch_after: float = 10.0
    """How long a still reading must stay frozen to be reported as latched (`latched`)."""

    def __post_init__(self) -> None:
        for name in ("arrive_delay", "leave_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be 0 or more seconds, not {value}")
        for name in ("heartbeat_interval", "evidence_gap", "latch_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        silent = self.silent_after
        if silent is not None and not (math.isfinite(silent) and silent > 0):
            raise ValueError(f"silent_after must be positive seconds or None, not {silent}")
        for name in ("min_moving_energy", "min_still_energy"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be 0 to 100")


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """A state change, or a heartbeat repeating the current state."""

    at: float
    state: PresenceState
    confidence: float
    raw: RawSummary | None
    """What the radar saw in the deciding report; None for a PIR."""
    heartbeat: bool = False


@dataclass(frozen=True, slots=True)
class SensorSilent:
    """No report for `silent_after` seconds: publish or log a fault, not a vacancy."""

    at: float
    last_report_at: float | None
    """None when nothing was ever heard."""


@dataclass(frozen=True, slots=True)
class SensorResumed:
    """Reports arrive again; `silent_for` is how long nothing came."""

    at: float
    silent_for: float


PresenceEvent = PresenceUpdate | SensorSilent | SensorResumed


class PresenceDebouncer:
    """The state of one desk, driven by `observe` (radar), `observe_pir` and `tick`.

    Call `tick` regularly (a few times a second) so that silences and heartbeats are
    noticed when no report arrives. `now` must come from a monotonic clock; a value
    smaller than the previous one is taken as the previous one.
    """

    def __init__(self, config: PresenceConfig | None = None) -> None:
        self.config = config or PresenceConfig()
        self._now: float | None = None
        self._state: PresenceState | None = None
        self._silent = False
        self._last_input: float | None = None
        self._observed_since = 0.0
        self._last_evidence: float | None = None
        self._run_start: float | None = None
        self._run_reports = 0
        self._run_evidence = 0
        self._still_reading: tuple[int, int] | None = None
        self._still_changed_at = 0.0
        self._pir_level = False
        self._last_report: RadarReport | None = None
        self._next_heartbeat = math.inf
        self._confidence = 1.0

    @property
    def state(self) -> PresenceState | None:
        """The last state published; None until the first decision."""
        return self._state

    @property
    def silent(self) -> bool:
        """The sensor has said nothing for `silent_after` seconds."""
        return self._silent

    @property
    def latched(self) -> bool:
        """The radar reports a still target whose reading has been frozen `latch_after` s."""
        report = self._last_report
        return (
            report is not None
            and self._now is not None
            and self._is_still(report)
            and self._now - self._still_changed_at >= self.config.latch_after - _SLACK
        )

    def observe(self, now: float, report: RadarReport) -> list[PresenceEvent]:
        """A radar report arrived at `now`."""
        now, events = self._input(now)
        cfg = self.config
        moving = report.target.moving and report.moving_energy >= cfg.min_moving_energy
        live_still = False
        if self._is_still(report):
            reading = (report.still_energy, report.still_distance_cm)
            if reading != self._still_reading:
                live_still = self._still_reading is not None
                self._still_reading = reading
                self._still_changed_at = now
        self._last_report = report
        if self._run_start is not None:
            self._run_reports += 1
        if moving or live_still:
            self._evidence(now, counted=True)
        return events + self._decide(now)

    def observe_pir(self, now: float, *, detected: bool) -> list[PresenceEvent]:
        """A PIR's level at `now` (on each edge, or polled): high means motion is seen."""
        now, events = self._input(now)
        self._continue_pir(now)
        if detected and not self._pir_level:
            self._evidence(now, counted=False)
        self._pir_level = detected
        self._last_report = None
        return events + self._decide(now)

    def tick(self, now: float) -> list[PresenceEvent]:
        """Time passed without a report: notice silences, departures and heartbeats."""
        now = self._clock(now)
        self._continue_pir(now)
        events: list[PresenceEvent] = []
        silent_after = self.config.silent_after
        if not self._silent and silent_after is not None:
            heard = self._last_input if self._last_input is not None else self._observed_since
            if now - heard >= silent_after - _SLACK:
                self._silent = True
                events.append(SensorSilent(at=now, last_report_at=self._last_input))
        return events + self._decide(now)

    # --- internals ----------------------------------------------------------------

    def _clock(self, now: float) -> float:
        if self._now is None:
            self._observed_since = now
        elif now < self._now:
            now = self._now
        self._now = now
        return now

    def _input(self, now: float) -> tuple[float, list[PresenceEvent]]:
        """Register an input; end a silence, starting the observation afresh."""
        now = self._clock(now)
        events: list[PresenceEvent] = []
        if self._silent:
            heard = self._last_input if self._last_input is not None else self._observed_since
            events.append(SensorResumed(at=now, silent_for=now - heard))
            self._silent = False
            # What the sensor said before the silence says nothing about the desk now.
            self._observed_since = now
            self._last_evidence = None
            self._run_start = None
            self._still_reading = None
            self._still_changed_at = now
            self._pir_level = False
            if self._state is not None:
                self._next_heartbeat = now + self.config.heartbeat_interval
        self._last_input = now
        return now, events

    def _is_still(self, report: RadarReport) -> bool:
        return report.target.still and report.still_energy >= self.config.min_still_energy

    def _continue_pir(self, now: float) -> None:
        """A PIR held high is evidence all along, not only at its rising edge."""
        if self._pir_level and not self._silent:
            self._last_evidence = now

    def _evidence(self, now: float, *, counted: bool) -> None:
        """An instant of evidence; `counted` when it is a radar report (for the confidence)."""
        last = self._last_evidence
        if (
            self._run_start is None
            or last is None
            or now - last > self.config.evidence_gap + _SLACK
        ):
            self._run_start = now
            self._run_reports = int(counted)
            self._run_evidence = 0
        self._run_evidence += int(counted)
        self._last_evidence = now

    def _decide(self, now: float) -> list[PresenceEvent]:
        if self._silent:
            return []
        cfg = self.config
        last = self._last_evidence
        if (
            self._state is not PresenceState.OCCUPIED
            and self._run_start is not None
            and last is not None
            and now - last <= cfg.evidence_gap + _SLACK
            and last - self._run_start >= cfg.arrive_delay - _SLACK
        ):
            share = self._run_evidence / self._run_reports if self._run_reports else 1.0
            return [self._change(now, PresenceState.OCCUPIED, min(1.0, share))]
        absent_since = max(last, self._observed_since) if last is not None else self._observed_since
        if (
            self._state is not PresenceState.VACANT
            and now - absent_since >= cfg.leave_delay - _SLACK
        ):
            report = self._last_report
            confidence = 1.0
            if report is not None and self._is_still(report):
                confidence = LATCHED_CONFIDENCE
            self._run_start = None
            return [self._change(now, PresenceState.VACANT, confidence)]
        if self._state is not None and now >= self._next_heartbeat - _SLACK:
            while self._next_heartbeat <= now + _SLACK:
                self._next_heartbeat += cfg.heartbeat_interval
            return [
                PresenceUpdate(
                    at=now,
                    state=self._state,
                    confidence=self._confidence,
                    raw=self._raw(),
                    heartbeat=True,
                )
            ]
        return []

    def _change(self, now: float, state: PresenceState, confidence: float) -> PresenceUpdate:
        self._state = state
        self._confidence = confidence
        self._next_heartbeat = now + self.config.heartbeat_interval
        return PresenceUpdate(at=now, state=state, confidence=confidence, raw=self._raw())

    def _raw(self) -> RawSummary | None:
        """The strongest target of the latest report, for diagnosis."""
        report = self._last_report
        if report is None:
            return None
        target = report.target
        if target.moving and (not target.still or report.moving_energy >= report.still_energy):
            return RawSummary(distance_cm=report.moving_distance_cm, energy=report.moving_energy)
        if target.still:
            return RawSummary(distance_cm=report.still_distance_cm, energy=report.still_energy)
        return RawSummary(energy=max(report.moving_energy, report.still_energy))
