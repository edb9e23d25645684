"""The door reader and the badge emulator, both real nfcpy, over nfcpy's UDP driver."""

from __future__ import annotations

import queue
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ruche.edge.nfc import NfcError, NfcReader
from ruche.sim.nfc import BadgeEmulator, BadgeEmulatorError
from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

ALICE = bytes.fromhex("0123456789abcdef")
BOB = bytes.fromhex("fedcba9876543210")
TAP_BOUND_S = 2.0  # nfcpy's UDP sense waits 1 s per round: a tap lands within ~1.1 s
QUIET_S = 1.5  # long enough for a spurious second tap to have shown up
TAPS = 6
HOLD_S = 1.2  # longer than one UDP sense round (~1.05 s), so no tap can fall between two


@dataclass
class Taps:
    """What reached `on_tap`, with when it arrived."""

    arrived: queue.Queue[tuple[bytes, str, float]] = field(default_factory=queue.Queue)

    def __call__(self, uid: bytes, reader_id: str) -> None:
        self.arrived.put((uid, reader_id, time.monotonic()))

    def next(self, timeout: float = 5.0) -> tuple[bytes, str, float]:
        try:
            return self.arrived.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no tap within {timeout} s")

    def assert_quiet(self, seconds: float = QUIET_S) -> None:
        time.sleep(seconds)
        extra = []
        while not self.arrived.empty():
            extra.append(self.arrived.get_nowait()[0].hex())
        assert extra == [], f"unexpected extra taps: {extra}"


@pytest.fixture
def device() -> str:
    return f"udp:127.0.0.1:{free_port()}"


@pytest.fixture
def taps() -> Taps:
    return Taps()


@pytest.fixture
def reader(device: str, taps: Taps) -> Iterator[NfcReader]:
    with NfcReader(device=device, reader_id="front", on_tap=taps) as r:
        yield r


@pytest.fixture
def badge(device: str) -> Iterator[BadgeEmulator]:
    with BadgeEmulator(device=device) as b:
        yield b


def wait_until_gone(seconds: float = 1.0) -> None:
    """Let the reader notice a removal and let the re-arm window pass."""
    time.sleep(seconds)


class TestTap:
    """A tapped badge reaches on_tap once, with its UID and the reader's id, within 2 s."""

    def test_each_tap_arrives_once_and_promptly(
        self, reader: NfcReader, badge: BadgeEmulator, taps: Taps
    ) -> None:
        latencies = []
        for _ in range(TAPS):
            time.sleep(random.uniform(0, 1.1))  # land anywhere in the reader's sense round
            presented_at = time.monotonic()
            badge.present(ALICE)
            uid, reader_id, arrived_at = taps.next()
            latencies.append(arrived_at - presented_at)
            assert (uid, reader_id) == (ALICE, "front")
            time.sleep(0.3)
            badge.remove()
            wait_until_gone()
        taps.assert_quiet()
        shown = ", ".join(f"{s * 1000:.0f}" for s in latencies)
        print(f"tap latency over UDP (ms): {shown}; max {max(latencies) * 1000:.0f}")
        assert max(latencies) < TAP_BOUND_S
        assert reader.stats.taps == TAPS
        assert reader.stats.errors == 0


class TestSequence:
    """Two different badges, one after the other, are both seen, in order."""

    @pytest.mark.usefixtures("reader")
    def test_two_badges_in_order(self, badge: BadgeEmulator, taps: Taps) -> None:
        badge.tap(ALICE, hold_s=HOLD_S)
        first = taps.next()
        badge.tap(BOB, hold_s=HOLD_S)
        second = taps.next()
        assert [first[0], second[0]] == [ALICE, BOB]
        taps.assert_quiet()

    @pytest.mark.usefixtures("reader")
    def test_swapping_badges_without_a_gap(self, badge: BadgeEmulator, taps: Taps) -> None:
        badge.present(ALICE)
        assert taps.next()[0] == ALICE
        badge.present(BOB)
        assert taps.next()[0] == BOB
        badge.remove()
        taps.assert_quiet()


class TestHold:
    """A badge held on the reader for seconds is one tap, not one per presence check."""

    def test_long_hold_is_one_tap(
        self, reader: NfcReader, badge: BadgeEmulator, taps: Taps
    ) -> None:
        badge.present(ALICE)
        assert taps.next()[0] == ALICE
        time.sleep(4.0)
        badge.remove()
        taps.assert_quiet()
        assert reader.stats.taps == 1


class TestEmulatorRestart:
    """The reader keeps reading after the emulator goes away and another comes back."""

    def test_reader_survives_emulator_restart(
        self, device: str, reader: NfcReader, taps: Taps
    ) -> None:
        with BadgeEmulator(device=device) as first:
            first.tap(ALICE, hold_s=HOLD_S)
            assert taps.next()[0] == ALICE
        time.sleep(2.0)  # the reader senses into the void meanwhile
        with BadgeEmulator(device=device) as second:
            second.tap(BOB, hold_s=HOLD_S)
            assert taps.next()[0] == BOB
        assert reader.stats.errors == 0

    def test_second_emulator_on_a_taken_port_is_refused(
        self, device: str, badge: BadgeEmulator
    ) -> None:
        badge.present(ALICE)
        time.sleep(0.3)  # the first emulator is listening, so it holds the port
        with pytest.raises(BadgeEmulatorError, match="is taken"):
            BadgeEmulator(device=device)


class TestCallbackErrors:
    """An on_tap that raises is counted and the reader keeps reporting taps."""

    def test_failing_callback_does_not_stop_the_reader(
        self, device: str, badge: BadgeEmulator
    ) -> None:
        seen: queue.Queue[bytes] = queue.Queue()

        def on_tap(uid: bytes, _reader_id: str) -> None:
            seen.put(uid)
            if uid == ALICE:
                raise RuntimeError("downstream is broken")

        with NfcReader(device=device, reader_id="side", on_tap=on_tap) as reader:
            badge.tap(ALICE, hold_s=HOLD_S)
            assert seen.get(timeout=5) == ALICE
            badge.tap(BOB, hold_s=HOLD_S)
            assert seen.get(timeout=5) == BOB
            assert reader.stats.callback_errors == 1


class TestReaderErrors:
    """A missing device fails at start naming it; a failing one is retried with backoff."""

    @pytest.mark.parametrize(
        "device", ["tty:ruche-no-such-port:pn532", "udp:no-such-host.invalid:54321", "nfc0"]
    )
    def test_missing_device_names_the_device_string(self, device: str) -> None:
        with pytest.raises(NfcError, match=repr(device).replace(".", r"\.")):
            NfcReader(device=device, reader_id="front", on_tap=lambda _u, _r: None)

    def test_failing_device_is_reopened_with_backoff(self) -> None:
        # Datagrams to the broadcast address are refused (no SO_BROADCAST): every sense
        # round fails inside nfcpy, as a reader that was unplugged would.
        started = time.monotonic()
        with NfcReader(
            device=f"udp:255.255.255.255:{free_port()}",
            reader_id="front",
            on_tap=lambda _u, _r: None,
            backoff_s=0.1,
            max_backoff_s=0.4,
        ) as reader:
            time.sleep(1.5)
            stats = reader.stats
        assert time.monotonic() - started < 4.0  # close() did not hang
        assert stats.errors >= 3
        assert stats.reopens >= 3
        assert stats.reopens <= stats.errors
        # 0.1 + 0.2 + 0.4 + 0.4 ... : backoff keeps it from spinning
        assert stats.errors <= 8
