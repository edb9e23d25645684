"""Scenario files: what the simulated hardware does, for `ruche sim run`, tests and the demo.

```toml
speed = 1.0                       # play the timeline this many times faster

[[radars]]
desk = "desk-1"
link = "radar-desk-1"             # the pty appears behind this symlink (relative: to --dir)
steps = [["empty", 5], ["arrive", 2], ["seated", 60], ["ghost", 0.5],
         ["latched", 20], ["still_lost", 3], ["garbage", 64], ["cable_pulled", 4],
         ["leave", 2]]

[[badges]]
device = "udp:127.0.0.1:5555"     # the door reader's nfcpy device string
taps = [[3.0, "0114b3c2d1e0f001"], [9.5, "0114b3c2d1e0f002", 2.0]]   # at s, UID, hold s
```

Radar steps are `[kind, seconds]` (`garbage` takes a byte count; `truncated` nothing);
badge UIDs are 8-byte FeliCa IDms in hex (nfcpy emulates FeliCa cards only).
Doors live on gpiozero mock pins inside the agent's process, so door scripts are
played in-process (`ruche.sim.door`), not from here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ruche.config import describe, read_toml
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
    Step,
    StillLost,
    Truncated,
)
from ruche.sim.nfc import BadgeEmulator

log = logging.getLogger(__name__)

_TIMED: dict[str, Callable[[float], Step]] = {
    "empty": Empty,
    "arrive": Arrive,
    "seated": Seated,
    "leave": Leave,
    "ghost": Ghost,
    "latched": Latched,
    "still_lost": StillLost,
    "cable_pulled": CablePulled,
}


class ScenarioError(ValueError):
    """A scenario file that cannot be played; the message names the entry and why."""


def parse_step(raw: list[object]) -> Step:
    """`["seated", 60]` → `Seated(60)`; `["garbage", 64]` → 64 bytes; `["truncated"]`."""
    if not raw or not isinstance(raw[0], str):
        raise ValueError(f"a step is [kind, number], not {raw!r}")
    kind, args = raw[0], raw[1:]
    if kind == "truncated":
        return Truncated()
    if len(args) != 1 or not isinstance(args[0], int | float) or isinstance(args[0], bool):
        raise ValueError(f"step {kind!r} takes one number, got {args!r}")
    if kind == "garbage":
        return Garbage(nbytes=int(args[0]))
    if kind not in _TIMED:
        known = ", ".join([*_TIMED, "garbage", "truncated"])
        raise ValueError(f"unknown step {kind!r}; known: {known}")
    if args[0] < 0:
        raise ValueError(f"step {kind!r} cannot last {args[0]} s")
    return _TIMED[kind](float(args[0]))


class RadarSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    desk: str = Field(min_length=1)
    link: Path
    steps: tuple[Step, ...] = Field(min_length=1)
    engineering: bool = False
    seed: int = 0

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: object) -> tuple[Step, ...]:
        if not isinstance(value, list):
            raise ValueError("steps is a list of [kind, number]")  # noqa: TRY004 - pydantic wants ValueError
        return tuple(parse_step(item if isinstance(item, list) else [item]) for item in value)

    def scenario(self) -> Scenario:
        return Scenario(steps=self.steps, engineering=self.engineering, seed=self.seed)


class TapSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: float = Field(ge=0)
    uid: bytes
    hold: float = Field(default=1.5, gt=0)

    @field_validator("uid", mode="before")
    @classmethod
    def _uid(cls, value: object) -> bytes:
        try:
            uid = bytes.fromhex(str(value))
        except ValueError:
            raise ValueError(f"UID {value!r} is not hex") from None
        if len(uid) != 8:
            raise ValueError(f"UID {value!r} must be 8 bytes (a FeliCa IDm)")
        return uid


class BadgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Annotated[str, Field(pattern=r"^udp:[\w.-]+:\d+$")]
    taps: tuple[TapSpec, ...] = ()

    @field_validator("taps", mode="before")
    @classmethod
    def _taps(cls, value: object) -> list[dict[str, object]]:
        if not isinstance(value, list):
            raise ValueError("taps is a list of [at, uid] or [at, uid, hold]")  # noqa: TRY004
        out = []
        for item in value:
            if not isinstance(item, list) or len(item) not in (2, 3):
                raise ValueError(f"a tap is [at, uid] or [at, uid, hold], not {item!r}")
            out.append(dict(zip(("at", "uid", "hold"), item, strict=False)))
        return out


class SimScenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    speed: float = Field(default=1.0, gt=0, le=1000)
    radars: tuple[RadarSpec, ...] = ()
    badges: tuple[BadgeSpec, ...] = ()

    @property
    def duration(self) -> float:
        """Seconds of simulated time until the last radar step or tap ends."""
        ends = [r.scenario().duration for r in self.radars]
        ends += [t.at + t.hold for b in self.badges for t in b.taps]
        return max(ends, default=0.0)


def load_scenario(path: Path) -> SimScenario:
    """Read a scenario file; ScenarioError names each bad entry."""
    data = read_toml(path, ScenarioError, what="scenario file")
    try:
        return SimScenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{path}: invalid scenario:\n{describe(exc)}") from exc


@dataclass
class PlayedTap:
    device: str
    uid: bytes
    at: float


class ScenarioPlayer:
    """Plays a scenario: radars into ptys behind their links, badge taps on their readers."""

    def __init__(self, scenario: SimScenario, *, directory: Path) -> None:
        self.scenario = scenario
        self.directory = directory
        self.radars = [
            PtyRadar(spec.scenario(), speed=scenario.speed, link=self._path(spec.link))
            for spec in scenario.radars
        ]
        self.played: list[PlayedTap] = []
        self._emulators: list[BadgeEmulator] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def radar_links(self) -> dict[str, Path]:
        return {spec.desk: self._path(spec.link) for spec in self.scenario.radars}

    def start(self) -> None:
        for radar in self.radars:
            radar.start()
        started = time.monotonic()
        for spec in self.scenario.badges:
            emulator = BadgeEmulator(device=spec.device)
            self._emulators.append(emulator)
            thread = threading.Thread(
                target=self._tap, args=(emulator, spec, started), name=f"badges-{spec.device}"
            )
            self._threads.append(thread)
            thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the whole timeline has played (or `stop()` was called)."""
        return self._stop.wait(
            self.scenario.duration / self.scenario.speed if timeout is None else timeout
        )

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for emulator in self._emulators:
            emulator.close()
        for radar in self.radars:
            radar.stop()

    def _tap(self, emulator: BadgeEmulator, spec: BadgeSpec, started: float) -> None:
        speed = self.scenario.speed
        for tap in sorted(spec.taps, key=lambda t: t.at):
            delay = started + tap.at / speed - time.monotonic()
            if self._stop.wait(max(0.0, delay)):
                return
            # Holds stay in real time: nfcpy's UDP reader looks about once a second.
            emulator.tap(tap.uid, hold_s=tap.hold)
            self.played.append(PlayedTap(spec.device, tap.uid, time.monotonic() - started))

    def _path(self, link: Path) -> Path:
        return link if link.is_absolute() else self.directory / link

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
