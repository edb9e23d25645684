"""The door state machine: relay, contact, exit button, alarms and lockdown, no pins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

import pytest

from ruche.broker import DoorClosed, DoorForced, DoorHeldOpen, DoorOpened
from ruche.edge.door import DoorMachine, DoorRules, DoorSignal, DoorSignalKind, DoorStep

RULES = DoorRules(exit_ms=4_000, held_open_s=10.0)
Input = Callable[[DoorMachine], DoorStep]


def unlock(now: float, ms: int) -> Input:
    return lambda m: m.unlock(now, ms)


def lock(now: float) -> Input:
    return lambda m: m.lock(now)


def opens(now: float) -> Input:
    return lambda m: m.contact(now, is_open=True)


def closes(now: float) -> Input:
    return lambda m: m.contact(now, is_open=False)


def exit_button(now: float) -> Input:
    return lambda m: m.exit_button(now)


def tick(now: float) -> Input:
    return lambda m: m.tick(now)


def lockdown(now: float, active: bool = True) -> Input:
    return lambda m: m.set_lockdown(now, active=active)


def run(
    inputs: list[Input], machine: DoorMachine | None = None
) -> tuple[list[DoorStep], DoorMachine]:
    machine = machine or DoorMachine(rules=RULES)
    steps = []
    for feed in inputs:
        step = feed(machine)
        steps.append(step)
        machine = step.machine
    return steps, machine


def kinds(steps: list[DoorStep]) -> list[str]:
    return [signal.kind for step in steps for signal in step.signals]


@dataclass(frozen=True)
class Case:
    name: str
    inputs: list[Input]
    signals: list[str]
    energised: bool


CASES = [
    Case(
        "legit open and close", [unlock(0, 5_000), opens(1), closes(3)], ["opened", "closed"], False
    ),
    Case("open without unlock is forced", [opens(1)], ["opened", "forced"], False),
    Case("forced then closed", [opens(1), closes(2)], ["opened", "forced", "closed"], False),
    Case(
        "open after the window ended is forced",
        [unlock(0, 2_000), opens(2)],
        ["opened", "forced"],
        False,
    ),
    Case("open just before the end is legit", [unlock(0, 2_000), opens(1.999)], ["opened"], True),
    Case(
        "lock ends the window: next opening forced",
        [unlock(0, 5_000), lock(1), opens(2)],
        ["opened", "forced"],
        False,
    ),
    Case(
        "exit button legitimises an opening",
        [exit_button(0), opens(1), closes(2)],
        ["opened", "closed"],
        False,
    ),
    Case(
        "opening after the exit window is forced",
        [exit_button(0), opens(4)],
        ["opened", "forced"],
        False,
    ),
    Case(
        "held open fires once after the limit",
        [unlock(0, 5_000), opens(1), tick(10.9), tick(11), tick(20), tick(30)],
        ["opened", "held_open"],
        False,
    ),
    Case(
        "closing before the limit: no alarm",
        [unlock(0, 5_000), opens(1), closes(10.9), tick(30)],
        ["opened", "closed"],
        False,
    ),
    Case(
        "held open noticed by the next input, not only tick",
        [unlock(0, 5_000), opens(1), closes(12)],
        ["opened", "held_open", "closed"],
        False,
    ),
    Case(
        "each opening gets its own held-open",
        [unlock(0, 5_000), opens(1), tick(11), closes(12), unlock(13, 5_000), opens(14), tick(24)],
        ["opened", "held_open", "closed", "opened", "held_open"],
        False,
    ),
    Case(
        "forced opening never reports held open", [opens(1), tick(100)], ["opened", "forced"], False
    ),
    Case(
        "repeated contact reports change nothing",
        [unlock(0, 5_000), opens(1), opens(1.1), closes(2), closes(2.1)],
        ["opened", "closed"],
        False,
    ),
    Case(
        "lockdown refuses unlock",
        [lockdown(0), unlock(1, 5_000), opens(2)],
        ["opened", "forced"],
        False,
    ),
    Case(
        "lockdown ends a running window",
        [unlock(0, 5_000), lockdown(1), opens(2)],
        ["opened", "forced"],
        False,
    ),
    Case(
        "lifted lockdown allows unlock again",
        [lockdown(0), lockdown(1, active=False), unlock(2, 5_000), opens(3)],
        ["opened"],
        True,
    ),
    Case(
        "exit in lockdown: free egress, strike stays locked",
        [lockdown(0), exit_button(1), opens(2)],
        ["opened"],
        False,
    ),
    Case(
        "relock on close: a second opening is forced",
        [unlock(0, 5_000), opens(1), closes(2), opens(3)],
        ["opened", "closed", "opened", "forced"],
        False,
    ),
]


class TestDoorScenarios:
    """Each sequence of inputs records the expected signals and leaves the relay as expected."""

    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_case(self, case: Case) -> None:
        steps, machine = run(case.inputs)
        assert kinds(steps) == case.signals
        assert steps[-1].energise is case.energised
        assert machine.energised is case.energised


class TestRelayTiming:
    """An unlock energises the strike for exactly its duration, extended never shortened."""

    def test_energised_until_the_end_of_the_window(self) -> None:
        steps, _ = run([unlock(100, 3_000), tick(102.999), tick(103)])
        assert [s.energise for s in steps] == [True, True, False]
        assert steps[0].wake_at == 103

    def test_second_unlock_extends(self) -> None:
        steps, _ = run([unlock(0, 3_000), unlock(2, 3_000), tick(4.9), tick(5)])
        assert [s.energise for s in steps] == [True, True, True, False]

    def test_shorter_unlock_does_not_shorten(self) -> None:
        steps, _ = run([unlock(0, 5_000), unlock(1, 1_000), tick(4.9), tick(5)])
        assert [s.energise for s in steps] == [True, True, True, False]

    def test_exit_button_energises_for_exit_ms(self) -> None:
        steps, _ = run([exit_button(10), tick(13.999), tick(14)])
        assert [s.energise for s in steps] == [True, True, False]

    def test_relock_on_close_de_energises(self) -> None:
        steps, _ = run([unlock(0, 5_000), opens(1), closes(2)])
        assert [s.energise for s in steps] == [True, True, False]

    def test_without_relock_on_close_the_window_runs_out(self) -> None:
        rules = DoorRules(held_open_s=10.0, relock_on_close=False)
        steps, _ = run([unlock(0, 5_000), opens(1), closes(2), opens(3)], DoorMachine(rules=rules))
        assert steps[2].energise is True
        assert kinds(steps) == ["opened", "closed", "opened"]

    def test_lock_de_energises_at_once(self) -> None:
        steps, _ = run([unlock(0, 5_000), lock(1)])
        assert [s.energise for s in steps] == [True, False]

    @pytest.mark.parametrize("ms", [0, -1, 600_001])
    def test_bad_durations_are_refused(self, ms: int) -> None:
        with pytest.raises(ValueError, match="unlock ms"):
            DoorMachine().unlock(0, ms)


class TestWakeAt:
    """`wake_at` tells the shell the next time `tick` would change something."""

    def test_idle_door_never_needs_a_tick(self) -> None:
        assert DoorMachine().tick(5).wake_at is None

    def test_wakes_for_the_window_then_the_held_open_limit(self) -> None:
        steps, _ = run([unlock(0, 5_000), opens(1), tick(5)])
        assert [s.wake_at for s in steps] == [5, 5, 11]

    def test_nothing_pending_after_held_open_fired(self) -> None:
        steps, _ = run([unlock(0, 5_000), opens(1), tick(11)])
        assert steps[-1].wake_at is None


class TestHeldOpen:
    """Held open carries how long the door had been open when the limit was noticed."""

    def test_open_seconds_at_detection(self) -> None:
        steps, _ = run([unlock(0, 5_000), opens(1), tick(13.5)])
        (signal,) = steps[-1].signals
        assert signal == DoorSignal("held_open", 13.5, open_s=12.5)


class TestLockdown:
    """Lockdown refuses unlocks and says so; lifting it restores them."""

    def test_unlock_is_refused(self) -> None:
        steps, _ = run([lockdown(0), unlock(1, 5_000)])
        assert steps[-1].refused is True
        assert steps[-1].energise is False

    def test_unlock_is_accepted_otherwise(self) -> None:
        steps, _ = run([unlock(1, 5_000)])
        assert steps[-1].refused is False


class TestStart:
    """A door found open at start is neither forced nor held open."""

    def test_open_at_start(self) -> None:
        steps, _ = run([tick(100), closes(101)], DoorMachine(rules=RULES, is_open=True))
        assert kinds(steps) == ["closed"]


class TestRules:
    """Rules refuse values that would make the machine meaningless."""

    @pytest.mark.parametrize(
        "kwargs", [{"exit_ms": 0}, {"exit_ms": 600_001}, {"held_open_s": 0}, {"held_open_s": -1.0}]
    )
    def test_bad_rules(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="must be"):
            DoorRules(**kwargs)  # type: ignore[arg-type]


class TestSignalPayload:
    """A signal becomes the contract's door event of the same kind."""

    TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("signal", "model"),
        [
            (DoorSignal("opened", 1.0), DoorOpened),
            (DoorSignal("closed", 1.0), DoorClosed),
            (DoorSignal("forced", 1.0), DoorForced),
            (DoorSignal("held_open", 31.0, open_s=30.0), DoorHeldOpen),
        ],
    )
    def test_payload(self, signal: DoorSignal, model: type) -> None:
        payload = signal.to_payload(seq=7, ts=self.TS)
        assert type(payload) is model
        assert (payload.kind, payload.seq, payload.ts, payload.mono) == (
            signal.kind,
            7,
            self.TS,
            signal.mono,
        )

    def test_held_open_carries_its_duration(self) -> None:
        payload = DoorSignal("held_open", 31.0, open_s=30.0).to_payload(seq=1, ts=self.TS)
        assert isinstance(payload, DoorHeldOpen)
        assert payload.open_s == 30.0

    def test_every_kind_is_a_contract_kind(self) -> None:
        contract = {
            m.model_fields["kind"].default
            for m in (DoorOpened, DoorClosed, DoorForced, DoorHeldOpen)
        }
        assert set(get_args(DoorSignalKind)) == contract
