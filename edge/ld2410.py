"""The HLK-LD2410 radar's UART report protocol: frames in, `RadarReport` values out. No I/O.

The inverse, `ruche.sim.ld2410.encode_report`, lives with the simulated radar.

The module reports about ten times a second, at 256000 baud 8N1, in frames of this
shape (HLK-LD2410 serial communication protocol, section 2.3; all multi-byte fields
little-endian)::

    F4 F3 F2 F1 | length (2 bytes) | type | AA | target data | 55 | 00 | F8 F7 F6 F5

`length` counts the intra-frame bytes from `type` to the `00` calibration byte.
`type` is 0x02 for basic target information and 0x01 for engineering mode. The basic
target data is 9 bytes::

    state | moving distance cm (2) | moving energy | still distance cm (2) | still energy
          | detection distance cm (2)

Engineering mode appends the farthest moving gate N, the farthest still gate M, N+1
moving gate energies, M+1 still gate energies and "retained" bytes (on current firmware
the light sensor reading and the OUT pin level). The documented examples::

    F4 F3 F2 F1 0D 00 02 AA 02 51 00 00 00 00 3B 00 00 55 00 F8 F7 F6 F5
    F4 F3 F2 F1 23 00 01 AA 03 1E 00 3C 00 00 39 00 00 08 08 3C 22 05 03 03 04 03
    06 05 00 00 39 10 13 06 06 08 04 60 01 55 00 F8 F7 F6 F5

There is no checksum (the "calibration" byte is always 0), so the parser trusts only
structure: header, a plausible length, the footer where the length says, the AA/55/00
markers, and values inside their documented ranges. Anything else is discarded,
counted by reason, and the parser resynchronises on the next header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Final

HEADER: Final = b"\xf4\xf3\xf2\xf1"
FOOTER: Final = b"\xf8\xf7\xf6\xf5"
HEAD: Final = 0xAA
TAIL: Final = 0x55
CHECK: Final = 0x00
TYPE_ENGINEERING: Final = 0x01
TYPE_BASIC: Final = 0x02

BAUD_RATE: Final = 256_000
"""The module's factory baud rate."""

MAX_GATE: Final = 8
"""The LD2410 has distance gates 0 to 8."""

MAX_ENERGY: Final = 100
"""Energies are documented as 0 to 100."""

MAX_INTRA_FRAME: Final = 64
"""Largest believable length field: an engineering frame with all 9 gates is 35 bytes.
A larger length is garbage that happened to contain a header; refusing it quickly keeps
the parser from waiting for bytes that belong to the next frames."""

_BASIC_LEN: Final = 9
_PREFIX_LEN: Final = len(HEADER) + 2
_MIN_INTRA_FRAME: Final = 2 + _BASIC_LEN + 2  # type, AA, target data, 55, 00


class TargetState(IntEnum):
    """What the module says it sees (protocol table 14)."""

    NONE = 0x00
    MOVING = 0x01
    STILL = 0x02
    BOTH = 0x03
    NOISE_DETECTING = 0x04
    """Background-noise calibration in progress: the report says nothing about people."""
    NOISE_DETECTED = 0x05
    NOISE_FAILED = 0x06

    @property
    def moving(self) -> bool:
        """A moving target is reported."""
        return self in (TargetState.MOVING, TargetState.BOTH)

    @property
    def still(self) -> bool:
        """A still (stationary) target is reported."""
        return self in (TargetState.STILL, TargetState.BOTH)


class Malformed(StrEnum):
    """Why a frame was discarded; the keys of `ParserStats.malformed`."""

    BAD_LENGTH = "bad_length"
    """The length field is out of range, or disagrees with the frame's contents."""
    BAD_FOOTER = "bad_footer"
    """The footer is not where the length field says."""
    TRUNCATED = "truncated"
    """The frame stopped early: another header starts before its footer."""
    BAD_MARKER = "bad_marker"
    """The AA head, 55 tail or 00 calibration byte is wrong."""
    UNKNOWN_TYPE = "unknown_type"
    """The data type is neither basic (0x02) nor engineering (0x01)."""
    BAD_VALUE = "bad_value"
    """A field is outside its documented range (target state, energy over 100, gates)."""


@dataclass(frozen=True, slots=True)
class Engineering:
    """Per-gate energies of an engineering-mode report (gate k covers k x 0.75 m by default)."""

    moving_gate_energies: tuple[int, ...]
    """Gates 0..N; N is the farthest moving gate configured."""
    still_gate_energies: tuple[int, ...]
    """Gates 0..M; M is the farthest still gate configured."""
    light: int | None = None
    """Light sensor reading 0..255, when the firmware sends it."""
    out_pin: int | None = None
    """Level of the OUT pin (1: target), when the firmware sends it."""

    def __post_init__(self) -> None:
        for name, energies in (
            ("moving_gate_energies", self.moving_gate_energies),
            ("still_gate_energies", self.still_gate_energies),
        ):
            if not 1 <= len(energies) <= MAX_GATE + 1:
                raise ValueError(f"{name}: {len(energies)} gates, expected 1 to {MAX_GATE + 1}")
            if any(not 0 <= e <= MAX_ENERGY for e in energies):
                raise ValueError(f"{name}: energies must be 0 to {MAX_ENERGY}")
        if self.light is not None and not 0 <= self.light <= 0xFF:
            raise ValueError("light must be one byte")
        if self.out_pin is not None and not 0 <= self.out_pin <= 0xFF:
            raise ValueError("out_pin must be one byte")
        if self.light is None and self.out_pin is not None:
            raise ValueError("out_pin follows light on the wire: give light too")


@dataclass(frozen=True, slots=True)
class RadarReport:
    """One target report, basic or (with `engineering`) engineering mode."""

    target: TargetState
    moving_distance_cm: int = 0
    moving_energy: int = 0
    still_distance_cm: int = 0
    still_energy: int = 0
    detection_distance_cm: int = 0
    engineering: Engineering | None = None

    def __post_init__(self) -> None:
        for name in ("moving_distance_cm", "still_distance_cm", "detection_distance_cm"):
            if not 0 <= getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} must fit in two bytes")
        for name in ("moving_energy", "still_energy"):
            if not 0 <= getattr(self, name) <= MAX_ENERGY:
                raise ValueError(f"{name} must be 0 to {MAX_ENERGY}")


@dataclass(frozen=True, slots=True)
class ParserStats:
    """What a `FrameParser` has seen so far."""

    frames: int = 0
    """Frames decoded into reports."""
    garbage_bytes: int = 0
    """Bytes skipped while looking for a header, including the rest of discarded frames."""
    malformed: dict[Malformed, int] = field(default_factory=dict)
    """Frames discarded, by reason."""

    @property
    def malformed_total(self) -> int:
        """All frames discarded, whatever the reason."""
        return sum(self.malformed.values())


class FrameParser:
    """Turns a byte stream, fed in chunks of any size, into reports. Never raises."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._frames = 0
        self._garbage = 0
        self._malformed: dict[Malformed, int] = {}

    @property
    def stats(self) -> ParserStats:
        """A snapshot of the counters."""
        return ParserStats(self._frames, self._garbage, dict(self._malformed))

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[RadarReport]:
        """Add bytes from the line; return the reports of every frame they complete."""
        self._buffer += data
        reports: list[RadarReport] = []
        while True:
            if not self._sync():
                return reports
            buf = self._buffer
            if len(buf) < _PREFIX_LEN:
                return reports
            length = int.from_bytes(buf[4:6], "little")
            if not _MIN_INTRA_FRAME <= length <= MAX_INTRA_FRAME:
                self._discard(Malformed.BAD_LENGTH)
                continue
            end = _PREFIX_LEN + length + len(FOOTER)
            if len(buf) < end:
                return reports
            if buf[end - len(FOOTER) : end] != FOOTER:
                early = buf.find(HEADER, 1, end)
                self._discard(Malformed.BAD_FOOTER if early < 0 else Malformed.TRUNCATED)
                continue
            decoded = _decode(bytes(buf[_PREFIX_LEN : _PREFIX_LEN + length]))
            del buf[:end]
            if isinstance(decoded, Malformed):
                # The footer was where the length said: the framing held, so the whole
                # frame goes and the bytes after it are the next frame.
                self._count(decoded)
                self._garbage += end
            else:
                self._frames += 1
                reports.append(decoded)

    def _sync(self) -> bool:
        """Drop bytes before the next header; False when no header is in the buffer yet."""
        buf = self._buffer
        start = buf.find(HEADER)
        if start == 0:
            return True
        if start > 0:
            self._garbage += start
            del buf[:start]
            return True
        # Keep a tail that could be the start of a header split across reads.
        keep = next(
            (n for n in range(len(HEADER) - 1, 0, -1) if buf.endswith(HEADER[:n])),
            0,
        )
        self._garbage += len(buf) - keep
        del buf[: len(buf) - keep]
        return False

    def _discard(self, reason: Malformed) -> None:
        """Give up on the frame at the start of the buffer: skip its header, resync after."""
        self._count(reason)
        self._garbage += len(HEADER)
        del self._buffer[: len(HEADER)]

    def _count(self, reason: Malformed) -> None:
        self._malformed[reason] = self._malformed.get(reason, 0) + 1


def _decode(intra: bytes) -> RadarReport | Malformed:
    """The report in an intra-frame block (type .. calibration byte), or why it is bad."""
    if intra[1] != HEAD or intra[-2] != TAIL or intra[-1] != CHECK:
        return Malformed.BAD_MARKER
    kind, target = intra[0], intra[2:-2]
    if kind == TYPE_BASIC and len(target) != _BASIC_LEN:
        return Malformed.BAD_LENGTH
    if kind not in (TYPE_BASIC, TYPE_ENGINEERING):
        return Malformed.UNKNOWN_TYPE
    if target[0] > max(TargetState):
        return Malformed.BAD_VALUE
    engineering: Engineering | None = None
    try:
        if kind == TYPE_ENGINEERING:
            decoded = _decode_engineering(target[_BASIC_LEN:])
            if isinstance(decoded, Malformed):
                return decoded
            engineering = decoded
        return RadarReport(
            target=TargetState(target[0]),
            moving_distance_cm=int.from_bytes(target[1:3], "little"),
            moving_energy=target[3],
            still_distance_cm=int.from_bytes(target[4:6], "little"),
            still_energy=target[6],
            detection_distance_cm=int.from_bytes(target[7:9], "little"),
            engineering=engineering,
        )
    except ValueError:
        return Malformed.BAD_VALUE


def _decode_engineering(extra: bytes) -> Engineering | Malformed:
    """Gate counts, gate energies and retained bytes, following the basic 9 bytes."""
    if len(extra) < 2:
        return Malformed.BAD_LENGTH
    moving_gates, still_gates = extra[0] + 1, extra[1] + 1
    if moving_gates > MAX_GATE + 1 or still_gates > MAX_GATE + 1:
        return Malformed.BAD_VALUE
    energies_end = 2 + moving_gates + still_gates
    if len(extra) < energies_end:
        return Malformed.BAD_LENGTH
    retained = extra[energies_end:]
    return Engineering(
        moving_gate_energies=tuple(extra[2 : 2 + moving_gates]),
        still_gate_energies=tuple(extra[2 + moving_gates : energies_end]),
        light=retained[0] if len(retained) > 0 else None,
        out_pin=retained[1] if len(retained) > 1 else None,
    )
