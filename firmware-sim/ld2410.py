"""An HLK-LD2410 radar in software: real UART frames from a scripted desk, on a pty.

Three layers, each usable alone:

- `encode_report(report)`: the bytes the module sends for one report (basic or
  engineering frame), the inverse of `ruche.edge.ld2410.FrameParser`.
- `play(scenario)`: a pure, seeded timeline of what the module says at 10 Hz while a
  person arrives, sits, leaves, and the field faults happen (ghosts, latched energies,
  a still person lost, garbage bytes, truncated frames, a pulled cable).
- `PtyRadar`: writes that timeline into a pseudo-terminal at real time or faster, so
  the agent reads it with pyserial exactly as it reads `/dev/ttyUSB0` on a Pi::

      with PtyRadar(Scenario((Empty(2), Arrive(2), Seated(60), Leave(2), Empty(40)))) as radar:
          serial.Serial(radar.device, 256000)  # frames arrive here
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ruche.edge.ld2410 import (
    CHECK,
    FOOTER,
    HEAD,
    HEADER,
    MAX_GATE,
    TAIL,
    TYPE_BASIC,
    TYPE_ENGINEERING,
    Engineering,
    RadarReport,
    TargetState,
)

logger = logging.getLogger(__name__)

GATE_CM = 75
"""Depth of one distance gate at the factory resolution (0.75 m)."""

FAR_CM = 300
"""Where a person is when they start walking to the desk, or when they have left it."""


def encode_report(report: RadarReport) -> bytes:
    """The frame the module sends for `report`: engineering when it has gate energies."""
    target = bytes([report.target])
    target += report.moving_distance_cm.to_bytes(2, "little") + bytes([report.moving_energy])
    target += report.still_distance_cm.to_bytes(2, "little") + bytes([report.still_energy])
    target += report.detection_distance_cm.to_bytes(2, "little")
    kind = TYPE_BASIC
    if (eng := report.engineering) is not None:
        kind = TYPE_ENGINEERING
        target += bytes([len(eng.moving_gate_energies) - 1, len(eng.still_gate_energies) - 1])
        target += bytes(eng.moving_gate_energies) + bytes(eng.still_gate_energies)
        target += bytes(b for b in (eng.light, eng.out_pin) if b is not None)
    intra = bytes([kind, HEAD]) + target + bytes([TAIL, CHECK])
    return HEADER + len(intra).to_bytes(2, "little") + intra + FOOTER


# --- the timeline -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Empty:
    """Nobody at the desk: no target, a little residual energy."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Arrive:
    """A person walks up to the desk (moving target closing in) and sits down."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Seated:
    """A person sits still: a still target whose energy breathes, now and then a small move."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Leave:
    """The person gets up and walks away (moving target receding)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Ghost:
    """Fault: a brief spurious moving target on an empty desk."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Latched:
    """Fault: an empty desk reports a still target whose reading never changes."""

    seconds: float
    energy: int = 57
    distance_cm: int = 112


@dataclass(frozen=True, slots=True)
class StillLost:
    """Fault: a still person is there but the module reports no target."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Garbage:
    """Fault: line noise, `nbytes` random bytes between two frames. Takes no time."""

    nbytes: int = 32
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Truncated:
    """Fault: a frame cut short (the next frame follows). Takes no time."""

    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CablePulled:
    """Fault: the cable is pulled for `seconds`: nothing is sent, then it is plugged back."""

    seconds: float


Step = (
    Empty
    | Arrive
    | Seated
    | Leave
    | Ghost
    | Latched
    | StillLost
    | Garbage
    | Truncated
    | CablePulled
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A desk's timeline, played step after step from time 0."""

    steps: tuple[Step, ...]
    period: float = 0.1
    """Seconds between reports; the LD2410 reports at about 10 Hz."""
    desk_cm: int = 80
    """Distance from the radar to a seated person."""
    engineering: bool = False
    """Send engineering frames (per-gate energies) instead of basic ones."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.period <= 0:
            raise ValueError("period must be positive")
        if any(step.seconds < 0 for step in self.steps):
            raise ValueError("steps cannot last a negative time")

    @property
    def duration(self) -> float:
        """Seconds from the first step to the end of the last."""
        return sum(step.seconds for step in self.steps)


@dataclass(frozen=True, slots=True)
class Emission:
    """Bytes the module sends at `at` (seconds from the start): a frame, or garbage."""

    at: float
    data: bytes
    report: RadarReport | None = None
    """The report `data` encodes; None for garbage and truncated frames."""


@dataclass(frozen=True, slots=True)
class Cable:
    """The cable is pulled (`connected=False`) or plugged back at `at`."""

    at: float
    connected: bool


def play(scenario: Scenario) -> Iterator[Emission | Cable]:
    """Everything the radar does in `scenario`, in time order. Same seed, same bytes."""
    rng = random.Random(scenario.seed)  # noqa: S311 - a simulation, not cryptography
    model = _Desk(scenario, rng)
    start = 0.0
    for step in scenario.steps:
        end = start + step.seconds
        match step:
            case Garbage(nbytes=n):
                yield Emission(start, rng.randbytes(n))
            case Truncated():
                frame = encode_report(model.report(Empty(0), 0.0))
                yield Emission(start, frame[: rng.randint(len(HEADER) + 1, len(frame) - 2)])
            case CablePulled():
                yield Cable(start, connected=False)
                yield Cable(end, connected=True)
            case _:
                for at in _ticks(start, end, scenario.period):
                    progress = (at - start) / step.seconds if step.seconds else 1.0
                    report = model.report(step, progress)
                    yield Emission(at, encode_report(report), report)
        start = end


def reports(scenario: Scenario) -> Iterator[tuple[float, RadarReport]]:
    """Only the decodable reports of `scenario`, with their times: for pure tests."""
    for item in play(scenario):
        if isinstance(item, Emission) and item.report is not None:
            yield item.at, item.report


def _ticks(start: float, end: float, period: float) -> Iterator[float]:
    """The report times in [start, end): multiples of `period`, free of float drift."""
    first = round(start / period)
    if first * period < start - 1e-9:
        first += 1
    k = first
    while k * period < end - 1e-9:
        yield round(k * period, 9)
        k += 1


class _Desk:
    """What the module reports for each kind of step; noise from a seeded generator."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng

    def report(self, step: Step, progress: float) -> RadarReport:
        rng, desk = self.rng, self.scenario.desk_cm
        match step:
            case Arrive():
                distance = round(FAR_CM + (desk - FAR_CM) * progress)
                seated = progress >= 0.5
                return self._report(
                    TargetState.BOTH if seated else TargetState.MOVING,
                    moving=(distance, rng.randint(50, 100)),
                    still=(distance, rng.randint(20, 60)) if seated else None,
                )
            case Seated():
                still = (desk + rng.randint(-6, 6), rng.randint(35, 75))
                if rng.random() < 0.15:
                    return self._report(
                        TargetState.BOTH, moving=(still[0], rng.randint(15, 40)), still=still
                    )
                return self._report(TargetState.STILL, still=still)
            case Leave():
                distance = round(desk + (FAR_CM - desk) * progress)
                return self._report(
                    TargetState.MOVING,
                    moving=(distance, rng.randint(40, 90)),
                    residual=rng.randint(0, 30),
                )
            case Ghost():
                return self._report(
                    TargetState.MOVING, moving=(rng.randint(100, 500), rng.randint(20, 60))
                )
            case Latched(energy=energy, distance_cm=distance):
                return self._report(TargetState.STILL, still=(distance, energy))
            case _:  # Empty, StillLost: no target, a little residual energy
                return self._report(TargetState.NONE, residual=rng.randint(0, 8))

    def _report(
        self,
        target: TargetState,
        *,
        moving: tuple[int, int] | None = None,
        still: tuple[int, int] | None = None,
        residual: int = 0,
    ) -> RadarReport:
        """A report from (distance, energy) pairs; `residual` is energy without a target."""
        moving_cm, moving_energy = moving or (0, residual)
        still_cm, still_energy = still or (0, residual)
        detection = max(moving_cm if moving else 0, still_cm if still else 0)
        engineering = None
        if self.scenario.engineering:
            engineering = Engineering(
                moving_gate_energies=self._gates(moving, residual),
                still_gate_energies=self._gates(still, residual),
                light=self.rng.randint(80, 140),
                out_pin=int(target is not TargetState.NONE),
            )
        return RadarReport(
            target=target,
            moving_distance_cm=moving_cm,
            moving_energy=moving_energy,
            still_distance_cm=still_cm,
            still_energy=still_energy,
            detection_distance_cm=detection,
            engineering=engineering,
        )

    def _gates(self, target: tuple[int, int] | None, residual: int) -> tuple[int, ...]:
        """Energies of gates 0..8: the target's at its gate, fading around it."""
        energies = [min(residual, self.rng.randint(0, 10)) for _ in range(MAX_GATE + 1)]
        if target is not None:
            distance, energy = target
            gate = min(distance // GATE_CM, MAX_GATE)
            energies[gate] = energy
            for near in (gate - 1, gate + 1):
                if 0 <= near <= MAX_GATE:
                    energies[near] = max(energies[near], energy // 2)
        return tuple(energies)


# --- the pty ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PtyRadarStats:
    """What a `PtyRadar` has written."""

    frames: int
    bytes_written: int
    bytes_dropped: int
    """Bytes the pty would not take (nobody reading and its buffer full), as a UART loses them."""
    cable_pulls: int


class PtyRadar:
    """Plays a `Scenario` into a pseudo-terminal from a background thread.

    `device` is the path to open with pyserial. With `link`, it is a symlink (like a udev
    `/dev/serial/by-id/...` name) that survives a pulled cable: on `CablePulled` the pty
    is closed and the link removed, so the reader sees its port vanish, and on plug-in a
    new pty appears behind the same link. Without `link` the pty stays open and only the
    stream stops. `speed` plays the timeline that many times faster than real time.
    When the scenario ends the radar falls silent, pty still open, until `stop()`.
    """

    def __init__(self, scenario: Scenario, *, speed: float = 1.0, link: Path | None = None) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.scenario = scenario
        self.speed = speed
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._plugged = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._frames = self._written = self._dropped = self._pulls = 0
        self._slave_name = ""
        self.started_at: float | None = None
        """`time.monotonic()` when playing started: scenario time 0."""
        self._plug()

    @property
    def device(self) -> str:
        """The serial device to open: the link when there is one, else the pty's slave."""
        if self.link is not None:
            return str(self.link)
        return self._slave_name

    @property
    def plugged(self) -> bool:
        """The cable is in: a pty is open behind `device`."""
        return self._plugged.is_set()

    @property
    def stats(self) -> PtyRadarStats:
        with self._lock:
            return PtyRadarStats(self._frames, self._written, self._dropped, self._pulls)

    def start(self) -> None:
        """Start playing in a background thread."""
        if self._thread is not None:
            raise RuntimeError("PtyRadar already started")
        self.started_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(self.started_at,), name="pty-radar", daemon=True
        )
        self._thread.start()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the whole scenario has been played; False on timeout."""
        return self._finished.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop playing and close the pty. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._unplug()

    def __enter__(self) -> PtyRadar:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, started: float) -> None:
        for item in play(self.scenario):
            delay = started + item.at / self.speed - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            if isinstance(item, Cable):
                if not item.connected:
                    with self._lock:
                        self._pulls += 1
                if self.link is None:
                    continue  # no name to come back under: keep the pty, the stream stops
                if item.connected:
                    self._plug()
                else:
                    self._unplug()
            else:
                self._write(item)
        self._finished.set()

    def _write(self, item: Emission) -> None:
        master = self._master
        if master is None:
            return
        try:
            written = os.write(master, item.data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            logger.warning("pty radar: write failed: %s", exc)
            written = 0
        with self._lock:
            self._written += written
            self._dropped += len(item.data) - written
            self._frames += int(item.report is not None and written == len(item.data))

    def _plug(self) -> None:
        """Open a fresh pty (raw, so the line discipline passes bytes untouched)."""
        if self._master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link is not None:
            temporary = self.link.with_name(f".{self.link.name}.tmp")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            temporary.symlink_to(self._slave_name)
            temporary.replace(self.link)
        self._plugged.set()

    def _unplug(self) -> None:
        """Close the pty: readers get an error, and the link (if any) disappears."""
        self._plugged.clear()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        master, slave = self._master, self._slave
        self._master = self._slave = None
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
