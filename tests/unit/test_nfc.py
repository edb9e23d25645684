"""Pure parts of the NFC reader and the badge emulator: debounce, backoff, UID mapping."""

from __future__ import annotations

import pytest

from ruche.edge.nfc import (
    HARDWARE_TARGETS,
    UDP_TARGETS,
    BadgeField,
    badge_gone,
    badge_seen,
    check_device,
    default_targets,
    next_backoff,
)
from ruche.sim.nfc import DEFAULT_PMM, felica_sensf_res

ALICE = bytes.fromhex("0123456789abcdef")
BOB = bytes.fromhex("fedcba9876543210")
REARM = 0.5


def run(events: list[tuple[str, bytes | None, float]]) -> list[bytes]:
    """Feed ("seen", uid, t) / ("gone", None, t) events; return the taps reported."""
    field, taps = BadgeField(), []
    for kind, uid, now in events:
        if kind == "seen":
            assert uid is not None
            field, is_tap = badge_seen(field, uid, now, rearm_s=REARM)
            if is_tap:
                taps.append(uid)
        else:
            field = badge_gone(field, now)
    return taps


class TestDebounce:
    """One tap per presentation: held badges and brief dropouts do not repeat it."""

    def test_first_sighting_is_a_tap(self) -> None:
        assert run([("seen", ALICE, 0.0)]) == [ALICE]

    def test_seen_again_while_held_is_not_a_tap(self) -> None:
        assert run([("seen", ALICE, 0.0), ("seen", ALICE, 3.0)]) == [ALICE]

    def test_dropout_shorter_than_rearm_is_the_same_tap(self) -> None:
        events = [("seen", ALICE, 0.0), ("gone", None, 1.0), ("seen", ALICE, 1.0 + REARM / 2)]
        assert run(events) == [ALICE]

    def test_same_badge_after_rearm_is_a_new_tap(self) -> None:
        events = [("seen", ALICE, 0.0), ("gone", None, 1.0), ("seen", ALICE, 1.0 + REARM)]
        assert run(events) == [ALICE, ALICE]

    def test_other_badge_is_a_tap_at_once(self) -> None:
        events = [("seen", ALICE, 0.0), ("gone", None, 1.0), ("seen", BOB, 1.01)]
        assert run(events) == [ALICE, BOB]

    def test_other_badge_replacing_a_held_one_is_a_tap(self) -> None:
        assert run([("seen", ALICE, 0.0), ("seen", BOB, 0.5)]) == [ALICE, BOB]

    def test_dropout_window_closes_after_another_badge(self) -> None:
        events = [
            ("seen", ALICE, 0.0),
            ("gone", None, 1.0),
            ("seen", BOB, 1.1),
            ("gone", None, 1.2),
            ("seen", ALICE, 1.3),
        ]
        assert run(events) == [ALICE, BOB, ALICE]

    def test_gone_with_nothing_held_changes_nothing(self) -> None:
        field = BadgeField(left=ALICE, left_at=1.0)
        assert badge_gone(field, 2.0) == field


class TestBackoff:
    """Reopen delays start at `first`, double, and stop at `cap`."""

    def test_doubles_up_to_the_cap(self) -> None:
        delays, delay = [], 0.0
        for _ in range(6):
            delay = next_backoff(delay, first=0.5, cap=5.0)
            delays.append(delay)
        assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]

    def test_first_never_exceeds_the_cap(self) -> None:
        assert next_backoff(0.0, first=3.0, cap=1.0) == 1.0


class TestDevice:
    """Device strings are nfcpy's; udp readers sense only what nfcpy can emulate."""

    @pytest.mark.parametrize("device", ["usb", "usb:054c:06c3", "tty:AMA0:pn532", "udp:h:1"])
    def test_accepts_nfcpy_strings(self, device: str) -> None:
        assert check_device(device) == device

    @pytest.mark.parametrize("device", ["", "/dev/ttyAMA0", "nfc0", "USB"])
    def test_refuses_other_strings_naming_them(self, device: str) -> None:
        with pytest.raises(ValueError, match="not an nfcpy device string"):
            check_device(device)

    def test_udp_senses_type_3_only(self) -> None:
        assert default_targets("udp:127.0.0.1:54321") == UDP_TARGETS == ("212F",)

    def test_hardware_senses_a_b_and_f(self) -> None:
        assert default_targets("usb") == HARDWARE_TARGETS == ("106A", "106B", "212F")


class TestFelicaMapping:
    """A badge UID becomes the emulated card's IDm verbatim, or is refused."""

    def test_layout(self) -> None:
        res = felica_sensf_res(ALICE, system_code=0x12FC)
        assert len(res) == 19
        assert res[0] == 0x01
        assert res[1:9] == ALICE
        assert res[9:17] == DEFAULT_PMM
        assert res[17:19] == b"\x12\xfc"

    @pytest.mark.parametrize("length", [0, 4, 7, 10])
    def test_other_lengths_are_refused(self, length: int) -> None:
        with pytest.raises(ValueError, match="exactly 8 bytes"):
            felica_sensf_res(bytes(range(1, length + 1)))

    def test_nfc_dep_prefix_is_refused(self) -> None:
        with pytest.raises(ValueError, match="01fe"):
            felica_sensf_res(bytes.fromhex("01fe000000000001"))

    def test_pmm_must_be_8_bytes(self) -> None:
        with pytest.raises(ValueError, match="PMm"):
            felica_sensf_res(ALICE, pmm=b"\x00")
