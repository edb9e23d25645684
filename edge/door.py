"""One door's rules: strike relay, door contact and exit button, as a pure state machine.

No I/O and no clock reads: every input carries `now`, the agent's monotonic clock in
seconds. Each input returns a `DoorStep`: the next machine, whether the strike relay
must be energised, what to record, and when to call `tick` next.

```python
machine = DoorMachine(rules=DoorRules(held_open_s=30.0))
step = machine.unlock(100.0, 5000)  # step.energise is True, step.wake_at == 105.0
step = step.machine.contact(101.0, is_open=True)  # one signal: opened
```

The rules:

- **Unlock window.** `unlock(now, ms)` energises the strike until `now + ms/1000`; a
  second unlock extends the window, never shortens it. At the window's end (reached by
  any input, usually `tick`) the strike is de-energised. Windows are half-open: at
  exactly the end the door is locked again. `lock(now)` ends the window at once.
- **Legitimate or forced.** An opening is legitimate when it happens inside an unlock
  or exit-button window; otherwise it is forced. Every opening records `opened`; a
  forced one records `forced` right after it. A closing records `closed`.
- **Relock on close.** When a legitimate opening closes, the window ends (if
  `relock_on_close`), so one badge lets one opening through.
- **Exit button.** Request-to-exit opens a window of `exit_ms`, like an unlock.
- **Held open.** A legitimate opening still open `held_open_s` after it began records
  `held_open` once, with how long it has been open. A forced opening does not: it has
  already raised its alarm.
- **Lockdown.** While locked down, `unlock` is refused (`DoorStep.refused`) and the
  strike stays de-energised; starting a lockdown ends any window. The exit button
  still marks the next opening as legitimate (people leave through the mechanical
  handle: free egress) but does not release the strike.
- **Contact bounce.** A contact report equal to the door's current state changes nothing.
- **Start.** A door found open at start (`DoorMachine(is_open=True)`) is neither forced
  nor held open: nobody knows when or how it opened.

The strike relay is energised to release the door (a fail-secure strike); a fail-safe
magnetic lock is wired through the relay's other contact, so the same rule holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from ruche.broker.payloads import DoorClosed, DoorForced, DoorHeldOpen, DoorOpened

__all__ = [
    "MAX_UNLOCK_MS",
    "DoorMachine",
    "DoorRules",
    "DoorSignal",
    "DoorSignalKind",
    "DoorStep",
]

MAX_UNLOCK_MS = 600_000
"""The longest unlock the contract allows (`Unlock.ms`)."""

DoorSignalKind = Literal["opened", "closed", "forced", "held_open"]
"""The contract's door event kinds the machine can produce (`DoorEvent.kind`)."""

DoorPayload = DoorOpened | DoorClosed | DoorForced | DoorHeldOpen


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorRules:
    """How one door behaves; validated on construction."""

    exit_ms: int = 5_000
    """How long the exit button releases the strike, in milliseconds."""
    held_open_s: float = 30.0
    """How long a legitimate opening may last before `held_open` is recorded."""
    relock_on_close: bool = True
    """End the unlock window when a legitimate opening closes."""

    def __post_init__(self) -> None:
        if not 1 <= self.exit_ms <= MAX_UNLOCK_MS:
            raise ValueError(f"exit_ms must be 1..{MAX_UNLOCK_MS}, got {self.exit_ms}")
        if not self.held_open_s > 0:
            raise ValueError(f"held_open_s must be positive, got {self.held_open_s}")


@dataclass(frozen=True, slots=True)
class DoorSignal:
    """Something to record about the door: what happened, and when (monotonic seconds)."""

    kind: DoorSignalKind
    mono: float
    open_s: float | None = None
    """For `held_open`: how long the door had been open when the limit was noticed."""

    def to_payload(self, *, seq: int, ts: datetime) -> DoorPayload:
        """The contract's door event for this signal, once the outbox has given it a seq."""
        mono = max(self.mono, 0.0)
        match self.kind:
            case "opened":
                return DoorOpened(seq=seq, ts=ts, mono=mono)
            case "closed":
                return DoorClosed(seq=seq, ts=ts, mono=mono)
            case "forced":
                return DoorForced(seq=seq, ts=ts, mono=mono)
            case "held_open":
                return DoorHeldOpen(seq=seq, ts=ts, mono=mono, open_s=self.open_s or 0.0)


@dataclass(frozen=True, slots=True)
class DoorStep:
    """The result of one input: the next machine, and what the shell must do."""

    machine: DoorMachine
    signals: tuple[DoorSignal, ...] = ()
    """What to record, in order."""
    refused: bool = False
    """True when an unlock was refused because the door is locked down."""

    @property
    def energise(self) -> bool:
        """Whether the strike relay must be energised (released) now."""
        return self.machine.energised

    @property
    def wake_at(self) -> float | None:
        """Call `tick` at this monotonic time (or earlier); None: nothing is pending."""
        return self.machine.next_deadline()


@dataclass(frozen=True, slots=True)
class DoorMachine:
    """One door's state; every input returns a `DoorStep` with the next machine."""

    rules: DoorRules = field(default_factory=DoorRules)
    is_open: bool = False
    locked_down: bool = False
    unlocked_until: float | None = None
    """End of the window in which the strike is released; None: locked."""
    authorised_until: float | None = None
    """End of the window in which an opening is legitimate; None: any opening is forced."""
    opened_at: float | None = None
    """When the current opening began; None when closed or open since start."""
    legitimate: bool = False
    """Whether the current opening happened inside a window."""
    held_reported: bool = False
    """Whether `held_open` was already recorded for the current opening."""

    @property
    def energised(self) -> bool:
        """Whether the strike relay is energised, as of the last input."""
        return self.unlocked_until is not None

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` would change something; None if never."""
        deadlines = [t for t in (self.unlocked_until, self.authorised_until) if t is not None]
        if self._held_open_pending() and self.opened_at is not None:
            deadlines.append(self.opened_at + self.rules.held_open_s)
        return min(deadlines, default=None)

    # --- inputs ---------------------------------------------------------------------

    def tick(self, now: float) -> DoorStep:
        """Let time pass: end windows that are over, notice a door held open."""
        machine, signals = self._advance(now)
        return DoorStep(machine, signals)

    def unlock(self, now: float, ms: int) -> DoorStep:
        """Release the strike for `ms` milliseconds (refused while locked down)."""
        if not 1 <= ms <= MAX_UNLOCK_MS:
            raise ValueError(f"unlock ms must be 1..{MAX_UNLOCK_MS}, got {ms}")
        machine, signals = self._advance(now)
        if machine.locked_down:
            return DoorStep(machine, signals, refused=True)
        return DoorStep(machine._open_window(now + ms / 1000, release=True), signals)

    def lock(self, now: float) -> DoorStep:
        """End the unlock window now: de-energise the strike."""
        machine, signals = self._advance(now)
        return DoorStep(machine._close_window(), signals)

    def exit_button(self, now: float) -> DoorStep:
        """Request to exit: a window of `exit_ms` (the strike stays locked in lockdown)."""
        machine, signals = self._advance(now)
        until = now + machine.rules.exit_ms / 1000
        return DoorStep(machine._open_window(until, release=not machine.locked_down), signals)

    def set_lockdown(self, now: float, *, active: bool) -> DoorStep:
        """Start (ending any window) or lift a lockdown."""
        machine, signals = self._advance(now)
        if active:
            machine = machine._close_window()
        return DoorStep(replace(machine, locked_down=active), signals)

    def contact(self, now: float, *, is_open: bool) -> DoorStep:
        """The door contact reports the door open or closed."""
        machine, signals = self._advance(now)
        if is_open == machine.is_open:
            return DoorStep(machine, signals)
        if is_open:
            legitimate = machine.authorised_until is not None
            signals += (DoorSignal("opened", now),)
            if not legitimate:
                signals += (DoorSignal("forced", now),)
            opened = replace(
                machine, is_open=True, opened_at=now, legitimate=legitimate, held_reported=False
            )
            return DoorStep(opened, signals)
        closed = replace(
            machine, is_open=False, opened_at=None, legitimate=False, held_reported=False
        )
        if machine.legitimate and machine.rules.relock_on_close:
            closed = closed._close_window()
        return DoorStep(closed, (*signals, DoorSignal("closed", now)))

    # --- internals ------------------------------------------------------------------

    def _advance(self, now: float) -> tuple[DoorMachine, tuple[DoorSignal, ...]]:
        machine = self
        if machine.unlocked_until is not None and now >= machine.unlocked_until:
            machine = replace(machine, unlocked_until=None)
        if machine.authorised_until is not None and now >= machine.authorised_until:
            machine = replace(machine, authorised_until=None)
        if machine._held_open_pending() and machine.opened_at is not None:
            open_s = now - machine.opened_at
            if open_s >= machine.rules.held_open_s:
                signal = DoorSignal("held_open", now, open_s=open_s)
                return replace(machine, held_reported=True), (signal,)
        return machine, ()

    def _held_open_pending(self) -> bool:
        return self.is_open and self.legitimate and not self.held_reported

    def _open_window(self, until: float, *, release: bool) -> DoorMachine:
        authorised = max(until, self.authorised_until or until)
        if not release:
            return replace(self, authorised_until=authorised)
        unlocked = max(until, self.unlocked_until or until)
        return replace(self, unlocked_until=unlocked, authorised_until=authorised)

    def _close_window(self) -> DoorMachine:
        return replace(self, unlocked_until=None, authorised_until=None)
