"""A door in software: contact, exit button and strike on gpiozero's mock pins.

The agent's `GpioDoor` runs unchanged on a `MockFactory`; this module plays the
physical side on the same pins: it drives the contact and exit-button inputs
(`pin.drive_high()` / `drive_low()`) and reads the relay output, so the agent's code
path is the real gpiozero one. Its contact and exit-button pins are `WiredPin`s: a
made switch holds its line against the pull the agent configures, as copper does.

```python
factory = MockFactory()
pins = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)
sim = SimDoor(pins, factory=factory)  # the door exists before the agent boots
agent_door = GpioDoor(pins=pins, rules=DoorRules(), pin_factory=factory)
person = ScriptedPerson(sim)
agent_door.unlock(3000)
person.run(walk_through(hold_s=1.0))  # waits for the strike, opens, holds, closes
```

A script is a tuple of steps (plain data, so scenario files can hold them):
`AwaitUnlock`, `Open` (try the handle: opens only if the strike is released),
`Force` (opens whatever the strike), `Close`, `PressExit`, `Wait`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from gpiozero.pins.mock import MockFactory, MockPin

from ruche.edge.gpio import DoorPins, input_active_level

__all__ = [
    "AwaitUnlock",
    "Close",
    "Force",
    "Open",
    "PressExit",
    "ScriptedPerson",
    "SimDoor",
    "Step",
    "Wait",
    "WiredPin",
    "exit_through",
    "force_through",
    "walk_through",
]


class WiredPin(MockPin):  # type: ignore[misc]  # gpiozero ships no type information
    """A mock input pin wired to a switch that holds its level against the pin's own pull.

    A plain `MockPin` follows its pull: a device configured with `pull_up=True` drives
    it high, as if nothing were connected. A real door contact that is made ties the
    line to ground whatever the pull, so a door closed before the agent starts reads
    closed from the first instant. `hold(level=...)` models that.
    """

    def __init__(self, factory: MockFactory, info: object) -> None:
        super().__init__(factory, info)
        self.held: bool | None = None

    def hold(self, *, level: bool) -> None:
        """Tie the line to `level` (True = high) until told otherwise."""
        self.held = level
        _drive(self, level=level)

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        if self.held is not None:
            _drive(self, level=self.held)


class SimDoor:
    """The physical door on mock pins: what a person does to it, and what the strike does."""

    def __init__(self, pins: DoorPins, *, factory: MockFactory, is_open: bool = False) -> None:
        """Wire the door to `factory`'s pins (the `MockFactory` the agent's devices use).

        Create it before the agent's `GpioDoor`, as the door exists before the agent
        boots: the agent then reads the door's state at start without an edge. Created
        after, it drives the pins the agent already holds, which the agent sees as a
        change.
        """
        self.pins = pins
        self._relay: _MockPin = factory.pin(pins.relay_pin)
        self._contact: _MockPin = factory.pin(pins.contact_pin, pin_class=WiredPin)
        self._exit: _MockPin | None = (
            None if pins.exit_pin is None else factory.pin(pins.exit_pin, pin_class=WiredPin)
        )
        contact_made = input_active_level(
            pull_up=pins.contact_pull_up, active_state=pins.contact_active_state
        )
        self._closed_level = contact_made if pins.closed_when_active else not contact_made
        self._exit_pressed_level = input_active_level(
            pull_up=pins.exit_pull_up, active_state=pins.exit_active_state
        )
        _hold(self._contact, level=self._closed_level != is_open)
        if self._exit is not None:
            _hold(self._exit, level=not self._exit_pressed_level)

    @property
    def released(self) -> bool:
        """Whether the agent has energised the strike relay (the door gives way)."""
        return bool(self._relay.state) == self.pins.relay_active_high

    @property
    def is_open(self) -> bool:
        """Whether the door is open, as the contact reports it."""
        return bool(self._contact.state) != self._closed_level

    def open(self) -> None:
        """Swing the door open, whatever the strike (forcing it when locked)."""
        _hold(self._contact, level=not self._closed_level)

    def close(self) -> None:
        """Shut the door."""
        _hold(self._contact, level=self._closed_level)

    def press_exit(self) -> None:
        """Push the request-to-exit button (and keep it pushed until `release_exit`)."""
        _hold(self._exit_button(), level=self._exit_pressed_level)

    def release_exit(self) -> None:
        """Let go of the request-to-exit button."""
        _hold(self._exit_button(), level=not self._exit_pressed_level)

    def _exit_button(self) -> _MockPin:
        if self._exit is None:
            raise ValueError("this door has no exit button (DoorPins.exit_pin is None)")
        return self._exit


class _MockPin(Protocol):
    """What the door uses of gpiozero's `MockPin`."""

    @property
    def state(self) -> bool | int: ...
    def drive_high(self) -> None: ...
    def drive_low(self) -> None: ...


def _drive(pin: _MockPin, *, level: bool) -> None:
    if level:
        pin.drive_high()
    else:
        pin.drive_low()


def _hold(pin: _MockPin, *, level: bool) -> None:
    """Hold a wired pin at `level`; a plain mock pin (claimed before the door) is driven."""
    if isinstance(pin, WiredPin):
        pin.hold(level=level)
    else:
        _drive(pin, level=level)


# --- scripts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwaitUnlock:
    """Stand at the door until the strike releases; give up after `timeout_s`."""

    timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Open:
    """Try the handle: the door opens only if the strike is released, else give up."""


@dataclass(frozen=True, slots=True)
class Force:
    """Open the door whatever the strike."""


@dataclass(frozen=True, slots=True)
class Close:
    """Shut the door."""


@dataclass(frozen=True, slots=True)
class PressExit:
    """Push the exit button for `hold_s`, then let go."""

    hold_s: float = 0.05


@dataclass(frozen=True, slots=True)
class Wait:
    """Do nothing for `seconds` (hold the door open, walk away...)."""

    seconds: float


Step = AwaitUnlock | Open | Force | Close | PressExit | Wait


def walk_through(*, hold_s: float = 1.0, wait_s: float = 2.0) -> tuple[Step, ...]:
    """Wait for an unlock, open, hold the door `hold_s` (long: held open), close."""
    return (AwaitUnlock(wait_s), Open(), Wait(hold_s), Close())


def force_through(*, hold_s: float = 1.0) -> tuple[Step, ...]:
    """Force the locked door open, hold it `hold_s`, close it."""
    return (Force(), Wait(hold_s), Close())


def exit_through(*, hold_s: float = 1.0, wait_s: float = 2.0) -> tuple[Step, ...]:
    """Press the exit button, open when the strike gives, hold `hold_s`, close."""
    return (PressExit(), AwaitUnlock(wait_s), Open(), Wait(hold_s), Close())


class ScriptedPerson:
    """Someone at the door, following a script of steps, in the calling thread."""

    def __init__(
        self,
        door: SimDoor,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.005,
    ) -> None:
        self.door = door
        self._sleep = sleep
        self._clock = clock
        self._poll_s = poll_s

    def run(self, steps: Iterable[Step]) -> bool:
        """Follow `steps`; False if the person gave up (no unlock came, handle locked)."""
        return all(self.do(step) for step in steps)  # stops at the first step not done

    def do(self, step: Step) -> bool:
        """Take one step; False if it could not be done."""
        door = self.door
        match step:
            case AwaitUnlock(timeout_s=timeout_s):
                return self._await_release(timeout_s)
            case Open():
                if not door.released:
                    return False
                door.open()
            case Force():
                door.open()
            case Close():
                door.close()
            case PressExit(hold_s=hold_s):
                door.press_exit()
                self._sleep(hold_s)
                door.release_exit()
            case Wait(seconds=seconds):
                self._sleep(seconds)
        return True

    def _await_release(self, timeout_s: float) -> bool:
        deadline = self._clock() + timeout_s
        while not self.door.released:
            if self._clock() >= deadline:
                return False
            self._sleep(self._poll_s)
        return True
