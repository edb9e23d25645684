"""The door adapter on real gpiozero devices over MockFactory pins, driven by the simulated door.

The only stand-in is gpiozero's own `MockFactory`: the agent's `GpioDoor` and the
simulator's `SimDoor` share its pins, so every edge goes through gpiozero's real
device and callback code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from ruche.edge.door import DoorRules, DoorSignal
from ruche.edge.gpio import DoorPins, GpioDoor, GpioError
from ruche.sim.door import (
    AwaitUnlock,
    Open,
    ScriptedPerson,
    SimDoor,
    exit_through,
    force_through,
    walk_through,
)
from ruche.sim.testing.fakes import Collector
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

PINS = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)


class Recorder(Collector[DoorSignal]):
    """Door signals from gpiozero's and the worker's threads."""

    @property
    def signals(self) -> list[DoorSignal]:
        return self.items()

    def kinds(self) -> list[str]:
        return [s.kind for s in self.items()]

    def until(self, kinds: list[str], timeout: float = 3.0) -> list[str]:
        """The kinds seen once they are `kinds`, or at `timeout`."""
        return [s.kind for s in self.wait_for(lambda got: [s.kind for s in got] == kinds,
                                              timeout=timeout)]  # fmt: skip


@dataclass
class Rig:
    factory: MockFactory
    recorder: Recorder
    make: Callable[..., tuple[GpioDoor, SimDoor, ScriptedPerson]]


@pytest.fixture
def rig() -> Iterator[Rig]:
    factory = MockFactory()
    previous = Device.pin_factory
    Device.pin_factory = factory  # nothing may fall back to a real pin factory
    recorder = Recorder()
    doors: list[GpioDoor] = []

    def make(
        pins: DoorPins = PINS, rules: DoorRules | None = None, *, is_open: bool = False
    ) -> tuple[GpioDoor, SimDoor, ScriptedPerson]:
        sim = SimDoor(pins, factory=factory, is_open=is_open)  # the door predates the agent
        door = GpioDoor(
            pins=pins,
            rules=rules or DoorRules(exit_ms=300, held_open_s=0.3),
            on_signal=recorder,
            pin_factory=factory,
        )
        doors.append(door)
        return door, sim, ScriptedPerson(sim)

    try:
        yield Rig(factory, recorder, make)
    finally:
        for door in doors:
            door.close()
        factory.close()
        Device.pin_factory = previous


class TestRelay:
    """An unlock energises the strike relay for its duration, then the door locks again."""

    def test_unlock_energises_for_its_duration(self, rig: Rig) -> None:
        door, sim, _ = rig.make()
        assert not sim.released
        start = time.monotonic()
        assert door.unlock(1_000) is True
        assert sim.released
        assert door.energised
        time.sleep(0.1)
        assert sim.released  # still inside the window
        wait_until(lambda: not sim.released)
        assert time.monotonic() - start >= 1.0  # never shorter than asked
        assert not door.energised
        assert rig.recorder.kinds() == []

    def test_inverted_relay_board(self, rig: Rig) -> None:
        pins = DoorPins(relay_pin=5, relay_active_high=False, contact_pin=6)
        door, sim, _ = rig.make(pins)
        assert rig.factory.pin(5).state is True  # active-low board: idle pin is high
        door.unlock(200)
        assert sim.released
        assert rig.factory.pin(5).state is False
        wait_until(lambda: not sim.released)

    def test_lock_ends_the_unlock(self, rig: Rig) -> None:
        door, sim, _ = rig.make()
        door.unlock(5_000)
        door.lock()
        assert not sim.released

    def test_person_without_unlock_gives_up(self, rig: Rig) -> None:
        _, sim, person = rig.make()
        assert person.run((AwaitUnlock(timeout_s=0.05), Open())) is False
        assert not sim.is_open
        assert rig.recorder.kinds() == []


class TestWalkThrough:
    """A person let in by an unlock records opened then closed, and relocks the strike."""

    def test_legitimate_passage(self, rig: Rig) -> None:
        door, sim, person = rig.make(rules=DoorRules(held_open_s=5.0))
        door.unlock(2_000)
        assert person.run(walk_through(hold_s=0.05)) is True
        assert rig.recorder.until(["opened", "closed"]) == ["opened", "closed"]
        assert not sim.released  # relocked on close
        assert not door.machine.is_open


class TestAlarms:
    """Forced-open and held-open alarms fire through the gpio adapter."""

    def test_forced_open(self, rig: Rig) -> None:
        _, _, person = rig.make()
        assert person.run(force_through(hold_s=0.05)) is True
        expected = ["opened", "forced", "closed"]
        assert rig.recorder.until(expected) == expected

    def test_held_open_fires_once(self, rig: Rig) -> None:
        door, _, person = rig.make(rules=DoorRules(held_open_s=0.2))
        door.unlock(1_000)
        person.run(walk_through(hold_s=0.6))
        expected = ["opened", "held_open", "closed"]
        assert rig.recorder.until(expected) == expected
        held = rig.recorder.signals[1]
        assert held.open_s is not None
        assert held.open_s >= 0.2

    def test_held_open_without_any_later_input(self, rig: Rig) -> None:
        door, sim, person = rig.make(rules=DoorRules(held_open_s=0.2))
        door.unlock(1_000)
        person.run(walk_through(hold_s=0.0)[:-1])  # opens and walks away
        assert rig.recorder.until(["opened", "held_open"]) == ["opened", "held_open"]
        assert sim.is_open

    def test_signals_become_contract_events(self, rig: Rig) -> None:
        _, _, person = rig.make()
        person.run(force_through(hold_s=0.0))
        rig.recorder.until(["opened", "forced", "closed"])
        payloads = [
            s.to_payload(seq=i + 1, ts=datetime.now(UTC))
            for i, s in enumerate(rig.recorder.signals)
        ]
        assert [p.kind for p in payloads] == ["opened", "forced", "closed"]


class TestExitButton:
    """The exit button releases the strike, so leaving is not a forced opening."""

    def test_exit_is_legitimate(self, rig: Rig) -> None:
        _, sim, person = rig.make()
        assert person.run(exit_through(hold_s=0.05)) is True
        assert rig.recorder.until(["opened", "closed"]) == ["opened", "closed"]
        assert not sim.released


class TestLockdown:
    """In lockdown the relay stays off and an unlock is refused."""

    def test_unlock_refused(self, rig: Rig) -> None:
        door, sim, person = rig.make()
        door.set_lockdown(active=True)
        assert door.unlock(1_000) is False
        assert not sim.released
        assert person.run((AwaitUnlock(timeout_s=0.05), Open())) is False
        door.set_lockdown(active=False)
        assert door.unlock(1_000) is True
        assert sim.released


class TestWiring:
    """Other contact and button wirings read the same door, as `DoorPins` describes them."""

    @pytest.mark.parametrize(
        "pins",
        [
            DoorPins(relay_pin=17, contact_pin=27, exit_pin=22, contact_pull_up=False),
            DoorPins(relay_pin=17, contact_pin=27, exit_pin=22, closed_when_active=False),
            DoorPins(
                relay_pin=17,
                contact_pin=27,
                exit_pin=22,
                contact_pull_up=None,
                contact_active_state=True,
                exit_pull_up=False,
            ),
        ],
        ids=["pull-down contact", "contact active when open", "external pull"],
    )
    def test_forced_and_exit(self, rig: Rig, pins: DoorPins) -> None:
        door, _, person = rig.make(pins)
        assert not door.machine.is_open
        person.run(force_through(hold_s=0.0))
        person.run(exit_through(hold_s=0.0))
        expected = ["opened", "forced", "closed", "opened", "closed"]
        assert rig.recorder.until(expected) == expected


class TestStartAndPins:
    """The adapter reads the door's state at start and reports bad pins in Ruche's terms."""

    def test_door_open_at_start_is_not_forced(self, rig: Rig) -> None:
        door, sim, _ = rig.make(is_open=True)
        assert door.machine.is_open
        sim.close()
        assert rig.recorder.until(["closed"]) == ["closed"]

    def test_pin_in_use(self, rig: Rig) -> None:
        rig.make()
        with pytest.raises(GpioError, match="pin 17 for the door's relay"):
            GpioDoor(pins=PINS, rules=DoorRules(), pin_factory=rig.factory)

    def test_failed_setup_releases_the_pins_it_took(self, rig: Rig) -> None:
        taken = GpioDoor(
            pins=DoorPins(relay_pin=5, contact_pin=6), rules=DoorRules(), pin_factory=rig.factory
        )
        clash = DoorPins(relay_pin=17, contact_pin=6)  # the contact pin is taken
        with pytest.raises(GpioError, match="contact"):
            GpioDoor(pins=clash, rules=DoorRules(), pin_factory=rig.factory)
        taken.close()
        rig.make()  # relay pin 17 was released by the failed attempt

    def test_close_is_idempotent(self, rig: Rig) -> None:
        door, _, _ = rig.make()
        door.close()
        door.close()
