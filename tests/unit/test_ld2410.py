"""The LD2410 UART protocol: documented frames, round trips, garbage, truncation, resync."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.edge.ld2410 import (
    FOOTER,
    HEADER,
    MAX_GATE,
    Engineering,
    FrameParser,
    Malformed,
    RadarReport,
    TargetState,
)
from ruche.sim.ld2410 import (
    Arrive,
    Cable,
    CablePulled,
    Emission,
    Empty,
    Garbage,
    Ghost,
    Latched,
    Leave,
    Scenario,
    Seated,
    Truncated,
    encode_report,
    play,
    reports,
)

# From the HLK-LD2410 serial protocol manual, section 2.3 (basic and engineering examples).
MANUAL_BASIC = bytes.fromhex("F4 F3 F2 F1 0D 00 02 AA 02 51 00 00 00 00 3B 00 00 55 00 F8 F7 F6 F5")
MANUAL_ENGINEERING = bytes.fromhex(
    "F4 F3 F2 F1 23 00 01 AA 03 1E 00 3C 00 00 39 00 00 08 08"
    " 3C 22 05 03 03 04 03 06 05 00 00 39 10 13 06 06 08 04 03 05 55 00 F8 F7 F6 F5"
)
# The same engineering report as traced by aio-ld2410, with light 0x60 and OUT pin 1.
TRACED_ENGINEERING = bytes.fromhex(
    "F4 F3 F2 F1 23 00 01 AA 03 1E 00 3C 00 00 39 00 00 08 08"
    " 3C 22 05 03 03 04 03 06 05 00 00 39 10 13 06 06 08 04 60 01 55 00 F8 F7 F6 F5"
)
# Captured from a module with nobody in range: no target, residual still energy.
FIELD_NO_TARGET = bytes.fromhex(
    "F4 F3 F2 F1 0D 00 02 AA 00 00 00 00 00 00 37 00 00 55 00 F8 F7 F6 F5"
)
FIELD_BOTH = bytes.fromhex("F4 F3 F2 F1 0D 00 02 AA 03 46 00 34 00 00 3C 00 00 55 00 F8 F7 F6 F5")


def parse_all(data: bytes) -> tuple[list[RadarReport], FrameParser]:
    parser = FrameParser()
    return parser.feed(data), parser


def with_intra(intra_hex: str) -> bytes:
    """A frame around an intra-frame block, with the length field computed."""
    intra = bytes.fromhex(intra_hex)
    return HEADER + len(intra).to_bytes(2, "little") + intra + FOOTER


energies = st.integers(0, 100)
distances = st.integers(0, 0xFFFF)
gate_energies = st.lists(energies, min_size=1, max_size=MAX_GATE + 1).map(tuple)


@st.composite
def radar_reports(draw: st.DrawFn) -> RadarReport:
    engineering = None
    if draw(st.booleans()):
        light = draw(st.none() | st.integers(0, 255))
        engineering = Engineering(
            moving_gate_energies=draw(gate_energies),
            still_gate_energies=draw(gate_energies),
            light=light,
            out_pin=None if light is None else draw(st.none() | st.integers(0, 1)),
        )
    return RadarReport(
        target=draw(st.sampled_from(TargetState)),
        moving_distance_cm=draw(distances),
        moving_energy=draw(energies),
        still_distance_cm=draw(distances),
        still_energy=draw(energies),
        detection_distance_cm=draw(distances),
        engineering=engineering,
    )


garbage = st.binary(max_size=64).filter(lambda b: HEADER not in b)


class TestDocumentedFrames:
    """The example frames of the manual and of real modules decode to their documented values."""

    def test_basic_example(self) -> None:
        [report], parser = parse_all(MANUAL_BASIC)
        assert report == RadarReport(
            target=TargetState.STILL,
            moving_distance_cm=0x51,
            moving_energy=0,
            still_distance_cm=0,
            still_energy=0x3B,
            detection_distance_cm=0,
        )
        assert parser.stats.frames == 1
        assert parser.stats.garbage_bytes == 0

    def test_engineering_example(self) -> None:
        [report], _ = parse_all(MANUAL_ENGINEERING)
        assert report.target is TargetState.BOTH
        assert (report.moving_distance_cm, report.moving_energy) == (30, 0x3C)
        assert (report.still_distance_cm, report.still_energy) == (0, 0x39)
        assert report.engineering == Engineering(
            moving_gate_energies=(0x3C, 0x22, 5, 3, 3, 4, 3, 6, 5),
            still_gate_energies=(0, 0, 0x39, 0x10, 0x13, 6, 6, 8, 4),
            light=3,
            out_pin=5,
        )

    def test_engineering_light_and_out_pin(self) -> None:
        [report], _ = parse_all(TRACED_ENGINEERING)
        assert report.engineering is not None
        assert (report.engineering.light, report.engineering.out_pin) == (0x60, 1)

    @pytest.mark.parametrize(
        ("frame", "target", "moving", "still"),
        [
            (FIELD_NO_TARGET, TargetState.NONE, (0, 0), (0, 0x37)),
            (FIELD_BOTH, TargetState.BOTH, (0x46, 0x34), (0, 0x3C)),
        ],
    )
    def test_field_frames(
        self,
        frame: bytes,
        target: TargetState,
        moving: tuple[int, int],
        still: tuple[int, int],
    ) -> None:
        [report], _ = parse_all(frame)
        assert report.target is target
        assert (report.moving_distance_cm, report.moving_energy) == moving
        assert (report.still_distance_cm, report.still_energy) == still

    def test_target_state_bits(self) -> None:
        assert [s.moving for s in TargetState][:4] == [False, True, False, True]
        assert [s.still for s in TargetState][:4] == [False, False, True, True]
        assert not TargetState.NOISE_DETECTING.moving
        assert not TargetState.NOISE_DETECTING.still


class TestEncodeReport:
    """The simulator's encoder writes the very bytes the module sends."""

    @pytest.mark.parametrize("frame", [MANUAL_BASIC, MANUAL_ENGINEERING, TRACED_ENGINEERING])
    def test_documented_frames_re_encode_identically(self, frame: bytes) -> None:
        [report], _ = parse_all(frame)
        assert encode_report(report) == frame

    @given(radar_reports())
    def test_round_trip(self, report: RadarReport) -> None:
        frame = encode_report(report)
        assert frame.startswith(HEADER)
        assert frame.endswith(FOOTER)
        assert parse_all(frame)[0] == [report]

    def test_report_validates_its_ranges(self) -> None:
        with pytest.raises(ValueError, match="moving_energy"):
            RadarReport(target=TargetState.MOVING, moving_energy=101)
        with pytest.raises(ValueError, match="still_distance_cm"):
            RadarReport(target=TargetState.STILL, still_distance_cm=70_000)
        with pytest.raises(ValueError, match="gates"):
            Engineering(moving_gate_energies=(), still_gate_energies=(1,))
        with pytest.raises(ValueError, match="light"):
            Engineering(moving_gate_energies=(1,), still_gate_energies=(1,), out_pin=1)


class TestFrameParser:
    """The parser finds frames anywhere in the stream, discards bad ones by reason, never raises."""

    def test_split_at_every_byte(self) -> None:
        stream = MANUAL_BASIC + MANUAL_ENGINEERING + FIELD_BOTH
        for cut in range(len(stream) + 1):
            parser = FrameParser()
            got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
            assert len(got) == 3, cut
            assert parser.stats.garbage_bytes == 0
            assert parser.pending == 0

    def test_byte_by_byte(self) -> None:
        parser = FrameParser()
        got = [r for byte in MANUAL_ENGINEERING * 3 for r in parser.feed(bytes([byte]))]
        assert len(got) == 3

    def test_garbage_before_between_and_after_is_counted(self) -> None:
        noise = b"\x00\xff\x55\xaa hello \xf4\xf3"
        got, parser = parse_all(noise + MANUAL_BASIC + noise + FIELD_BOTH + b"\x01\x02\x03")
        assert len(got) == 2
        assert parser.stats.garbage_bytes == 2 * len(noise) + 3
        assert parser.stats.malformed == {}

    def test_partial_header_is_held_back(self) -> None:
        parser = FrameParser()
        assert parser.feed(b"junk" + HEADER[:3]) == []
        assert parser.pending == 3
        assert parser.stats.garbage_bytes == 4
        assert len(parser.feed(MANUAL_BASIC[3:])) == 1

    def test_truncated_frame_then_resync(self) -> None:
        got, parser = parse_all(MANUAL_BASIC[:15] + FIELD_BOTH)
        assert got == parse_all(FIELD_BOTH)[0]
        assert parser.stats.malformed == {Malformed.TRUNCATED: 1}
        assert parser.stats.garbage_bytes == 15

    def test_truncated_inside_length_field(self) -> None:
        got, parser = parse_all(MANUAL_BASIC[:5] + FIELD_BOTH)
        assert got == parse_all(FIELD_BOTH)[0]
        assert parser.stats.malformed_total == 1

    @pytest.mark.parametrize(
        ("frame", "reason"),
        [
            (with_intra("02 AA 02 51 00 00 00 00 3B 00 00 55"), Malformed.BAD_LENGTH),  # short
            (HEADER + b"\xff\x00" + b"\x00" * 20, Malformed.BAD_LENGTH),  # absurd length
            (with_intra("02 AA 02 51 00 00 00 00 3B 00 00 00 55 00"), Malformed.BAD_LENGTH),
            (MANUAL_BASIC[:-1] + b"\x00", Malformed.BAD_FOOTER),
            (with_intra("02 AB 02 51 00 00 00 00 3B 00 00 55 00"), Malformed.BAD_MARKER),
            (with_intra("02 AA 02 51 00 00 00 00 3B 00 00 54 00"), Malformed.BAD_MARKER),
            (with_intra("02 AA 02 51 00 00 00 00 3B 00 00 55 01"), Malformed.BAD_MARKER),
            (with_intra("03 AA 02 51 00 00 00 00 3B 00 00 55 00"), Malformed.UNKNOWN_TYPE),
            (with_intra("02 AA 07 51 00 00 00 00 3B 00 00 55 00"), Malformed.BAD_VALUE),
            (with_intra("02 AA 02 51 00 65 00 00 3B 00 00 55 00"), Malformed.BAD_VALUE),  # 101
            # Gate 9 does not exist.
            (
                with_intra(f"01 AA 03 1E 00 3C 00 00 39 00 00 09 00{' 00' * 11} 55 00"),
                Malformed.BAD_VALUE,
            ),
            # Fewer gate energies than the gate counts announce.
            (
                with_intra("01 AA 03 1E 00 3C 00 00 39 00 00 08 08 01 02 55 00"),
                Malformed.BAD_LENGTH,
            ),
            (with_intra("01 AA 03 1E 00 3C 00 00 39 00 00 55 00"), Malformed.BAD_LENGTH),
        ],
    )
    def test_malformed_frames_are_counted_and_skipped(
        self, frame: bytes, reason: Malformed
    ) -> None:
        got, parser = parse_all(frame + MANUAL_BASIC)
        assert got == parse_all(MANUAL_BASIC)[0]
        assert parser.stats.malformed == {reason: 1}
        assert parser.stats.frames == 1

    def test_command_ack_frames_are_garbage(self) -> None:
        ack = bytes.fromhex("FD FC FB FA 04 00 FF 01 00 00 04 03 02 01")
        got, parser = parse_all(ack + MANUAL_BASIC)
        assert len(got) == 1
        assert parser.stats.garbage_bytes == len(ack)

    def test_buffer_stays_small_on_endless_garbage(self) -> None:
        parser = FrameParser()
        for _ in range(1000):
            parser.feed(b"\x00" * 97 + b"\xf4")
        assert parser.pending <= len(HEADER)

    @given(st.binary(max_size=2000))
    @settings(max_examples=300)
    def test_arbitrary_bytes_never_raise(self, data: bytes) -> None:
        parser = FrameParser()
        got = parser.feed(data)
        stats = parser.stats
        assert stats.frames == len(got)
        assert stats.garbage_bytes + parser.pending <= len(data)

    @given(st.lists(st.tuples(garbage, radar_reports())), garbage, st.data())
    def test_frames_in_garbage_are_all_recovered(
        self,
        pieces: list[tuple[bytes, RadarReport]],
        tail: bytes,
        data: st.DataObject,
    ) -> None:
        stream = b"".join(noise + encode_report(report) for noise, report in pieces) + tail
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        parser = FrameParser()
        got: list[RadarReport] = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            got += parser.feed(stream[start:end])
        assert got == [report for _, report in pieces]


class TestScenario:
    """The simulated radar plays a timeline at 10 Hz, with the field's faults, reproducibly."""

    def test_reports_every_tenth_of_a_second(self) -> None:
        times = [t for t, _ in reports(Scenario((Empty(1), Arrive(1), Seated(1))))]
        assert times == [round(k / 10, 9) for k in range(30)]

    def test_same_seed_same_bytes(self) -> None:
        scenario = Scenario((Arrive(2), Seated(5), Garbage(20), Leave(2)), seed=7)
        assert list(play(scenario)) == list(play(scenario))
        assert list(play(scenario)) != list(play(Scenario(scenario.steps, seed=8)))

    def test_person_arrives_sits_and_leaves(self) -> None:
        timeline = dict(reports(Scenario((Empty(1), Arrive(2), Seated(5), Leave(2), Empty(1)))))
        assert timeline[0.5].target is TargetState.NONE
        assert timeline[1.0].target.moving
        assert timeline[1.0].moving_distance_cm > timeline[2.9].moving_distance_cm
        assert all(timeline[t / 10].target.still for t in range(30, 80))
        assert timeline[9.5].target is TargetState.MOVING
        assert timeline[10.5].target is TargetState.NONE

    def test_seated_person_breathes(self) -> None:
        readings = {
            (r.still_energy, r.still_distance_cm) for _, r in reports(Scenario((Seated(5),)))
        }
        assert len(readings) > 20

    def test_latched_reading_never_changes(self) -> None:
        got = [r for _, r in reports(Scenario((Latched(3, energy=42, distance_cm=150),)))]
        assert {(r.target, r.still_energy, r.still_distance_cm) for r in got} == {
            (TargetState.STILL, 42, 150)
        }

    def test_ghost_is_a_moving_target(self) -> None:
        assert all(r.target is TargetState.MOVING for _, r in reports(Scenario((Ghost(0.5),))))

    def test_cable_pulled_stops_the_stream(self) -> None:
        items = list(play(Scenario((Seated(1), CablePulled(2), Seated(1)))))
        cables = [i for i in items if isinstance(i, Cable)]
        assert cables == [Cable(1.0, connected=False), Cable(3.0, connected=True)]
        times = [i.at for i in items if isinstance(i, Emission)]
        assert not [t for t in times if 1.0 <= t < 3.0]
        assert len(times) == 20

    def test_faults_parse_as_counted_garbage(self) -> None:
        scenario = Scenario((Seated(1), Garbage(100), Truncated(), Seated(1)), seed=3)
        stream = b"".join(i.data for i in play(scenario) if isinstance(i, Emission))
        got, parser = parse_all(stream)
        assert got == [r for _, r in reports(scenario)]
        assert parser.stats.garbage_bytes >= 100
        assert parser.stats.malformed_total == 1  # the truncated frame

    def test_engineering_frames(self) -> None:
        scenario = Scenario((Empty(1), Arrive(2), Seated(2), Leave(1)), engineering=True)
        expected = [r for _, r in reports(scenario)]
        stream = b"".join(encode_report(r) for r in expected)
        assert all(r.engineering is not None for r in expected)
        assert parse_all(stream)[0] == expected
