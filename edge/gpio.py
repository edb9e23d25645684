"""gpiozero adapter for one door: strike relay, door contact and exit button.

The rules live in `ruche.edge.door`; this module feeds them what the pins report and
applies what they decide to the relay. Works with any gpiozero pin factory (lgpio on a
Pi, `MockFactory` on a laptop).

```python
from gpiozero.pins.mock import MockFactory

pins = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)
with GpioDoor(pins=pins, rules=DoorRules(), on_signal=print, pin_factory=MockFactory()) as door:
    door.unlock(3000)  # strike released for 3 s; False while locked down
```

Threads: gpiozero calls back on its own thread, and a worker thread of this door wakes
at the machine's next deadline (end of an unlock, held-open limit). One lock orders
them all, and `on_signal` is called while it is held, in the order signals happened:
keep it short (put the signal in a queue or the outbox).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from gpiozero import Button, DigitalInputDevice, GPIOZeroError, OutputDevice

from ruche.edge.door import DoorMachine, DoorRules, DoorSignal, DoorStep

__all__ = ["DoorPins", "GpioDoor", "GpioError", "input_active_level"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

Pin = int | str
"""A gpiozero pin name: 17, "GPIO17", "BOARD11"."""


class GpioError(RuntimeError):
    """A door's pins could not be set up or driven."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorPins:
    """Where one door is wired, and how its inputs read."""

    relay_pin: Pin
    """Output to the strike relay; energised releases the door."""
    relay_active_high: bool = True
    """False for relay boards that energise when the pin is driven low."""
    contact_pin: Pin
    """Input from the door contact (a reed switch)."""
    contact_pull_up: bool | None = True
    """Internal pull-up (True), pull-down (False), or none (None: set `contact_active_state`)."""
    contact_active_state: bool | None = None
    """With no internal pull: the pin level at which the contact is active."""
    closed_when_active: bool = True
    """The contact is active (switch made) when the door is closed: the usual reed wiring."""
    exit_pin: Pin | None = None
    """Input from the request-to-exit button; None if the door has none."""
    exit_pull_up: bool | None = True
    exit_active_state: bool | None = None
    bounce_s: float | None = 0.05
    """Debounce time for both inputs, in seconds (None: none; the machine still ignores
    repeated reports of the same state)."""


def input_active_level(*, pull_up: bool | None, active_state: bool | None) -> bool:
    """The pin level (True = high) at which a gpiozero input with these options is active."""
    if pull_up is None:
        if active_state is None:
            raise ValueError("an input without internal pull needs its active_state")
        return active_state
    return not pull_up


class GpioDoor:
    """One door on gpiozero devices, driven by a `DoorMachine`; close it when done."""

    def __init__(
        self,
        *,
        pins: DoorPins,
        rules: DoorRules,
        on_signal: Callable[[DoorSignal], None] | None = None,
        pin_factory: object | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Claim the pins and start the deadline worker.

        `on_signal` receives every door signal (opened, closed, forced, held_open).
        `pin_factory` is a gpiozero pin factory; None uses gpiozero's default.
        `clock` is the monotonic clock the machine runs on, in seconds; it must run at
        real speed, since the worker sleeps until the machine's deadlines.
        """
        self.pins = pins
        self._on_signal = on_signal
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._closed = False
        with ExitStack() as stack:
            self._relay = _claim(
                stack,
                "relay",
                pins.relay_pin,
                lambda: OutputDevice(
                    pins.relay_pin,
                    active_high=pins.relay_active_high,
                    initial_value=False,
                    pin_factory=pin_factory,
                ),
            )
            self._contact = _claim(
                stack,
                "contact",
                pins.contact_pin,
                lambda: DigitalInputDevice(
                    pins.contact_pin,
                    pull_up=pins.contact_pull_up,
                    active_state=pins.contact_active_state,
                    bounce_time=pins.bounce_s,
                    pin_factory=pin_factory,
                ),
            )
            self._exit = None
            if (exit_pin := pins.exit_pin) is not None:
                self._exit = _claim(
                    stack,
                    "exit button",
                    exit_pin,
                    lambda: Button(
                        exit_pin,
                        pull_up=pins.exit_pull_up,
                        active_state=pins.exit_active_state,
                        bounce_time=pins.bounce_s,
                        pin_factory=pin_factory,
                    ),
                )
            self._machine = DoorMachine(rules=rules, is_open=self._contact_says_open())
            self._contact.when_activated = self._on_contact_change
            self._contact.when_deactivated = self._on_contact_change
            if self._exit is not None:
                self._exit.when_pressed = self._on_exit_pressed
            self._worker = threading.Thread(
                target=self._run, name=f"door-{pins.relay_pin}", daemon=True
            )
            self._worker.start()
            stack.pop_all()

    # --- commands -------------------------------------------------------------------

    def unlock(self, ms: int) -> bool:
        """Release the strike for `ms` milliseconds; False if refused (locked down)."""
        with self._cond:
            step = self._machine.unlock(self._clock(), ms)
            self._apply(step)
            return not step.refused

    def lock(self) -> None:
        """Lock the strike now, ending any unlock window."""
        with self._cond:
            self._apply(self._machine.lock(self._clock()))

    def set_lockdown(self, *, active: bool) -> None:
        """Start or lift a lockdown: unlocks are refused while it lasts."""
        with self._cond:
            self._apply(self._machine.set_lockdown(self._clock(), active=active))

    def tick(self) -> None:
        """Let the machine notice time passing (the worker does this by itself)."""
        with self._cond:
            self._apply(self._machine.tick(self._clock()))

    # --- state ----------------------------------------------------------------------

    @property
    def machine(self) -> DoorMachine:
        """The door's current state."""
        with self._cond:
            return self._machine

    @property
    def energised(self) -> bool:
        """Whether the strike relay is energised (the door released)."""
        with self._cond:
            return bool(self._relay.is_active)

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker, de-energise the relay and release the pins. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._worker.join()
        for device in (self._exit, self._contact, self._relay):
            if device is not None:
                device.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------

    def _contact_says_open(self) -> bool:
        return bool(self._contact.is_active) != self.pins.closed_when_active

    def _on_contact_change(self) -> None:
        with self._cond:
            if self._closed:
                return
            now = self._clock()
            self._apply(self._machine.contact(now, is_open=self._contact_says_open()))

    def _on_exit_pressed(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._apply(self._machine.exit_button(self._clock()))

    def _apply(self, step: DoorStep) -> None:
        """Adopt the step's machine, drive the relay, report signals, wake the worker."""
        self._machine = step.machine
        try:
            if step.energise != bool(self._relay.is_active):
                if step.energise:
                    self._relay.on()
                else:
                    self._relay.off()
        except GPIOZeroError as exc:
            raise GpioError(
                f"cannot drive the strike relay on pin {self.pins.relay_pin}: {exc}"
            ) from exc
        if self._on_signal is not None:
            for signal in step.signals:
                try:
                    self._on_signal(signal)
                except Exception:
                    # A failing listener must not stop the door: the relay is already
                    # right, and the worker must still wake at the next deadline.
                    logger.exception("door signal listener failed on %s", signal.kind)
        self._cond.notify_all()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                deadline = self._machine.next_deadline()
                if deadline is None:
                    self._cond.wait()
                    continue
                delay = deadline - self._clock()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                try:
                    self._apply(self._machine.tick(self._clock()))
                except GpioError:
                    # The machine has moved on; keep waking for the next deadlines so a
                    # relay that fails once is still switched off when its window ends.
                    logger.exception("door worker could not drive the relay")


def _claim(stack: ExitStack, role: str, pin: Pin, build: Callable[[], _T]) -> _T:
    """Build a gpiozero device, translating its errors; the stack closes it on failure."""
    try:
        device = build()
    except GPIOZeroError as exc:
        raise GpioError(
            f"cannot use pin {pin!r} for the door's {role}: {exc};"
            " check the door pins in the agent config"
        ) from exc
    close = getattr(device, "close", None)
    if callable(close):
        stack.callback(close)
    return device
