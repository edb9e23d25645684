"""Line protocol: byte-level fixtures per escaping rule, refusals, and properties over any text.

Whether InfluxDB itself reads what we write back unchanged is checked against the real
influxd in tests/integration/test_influx.py, not against a parser of our own.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.timeseries.lineprotocol import (
    INT64_MAX,
    INT64_MIN,
    TIME_MAX_NS,
    TIME_MIN_NS,
    LineProtocolError,
    Point,
    encode_point,
    encode_points,
)

T = 1_700_000_000_000_000_000


def line(point: Point) -> bytes:
    return encode_points([point])


class TestEncodeEscaping:
    """Each element escapes exactly its own special characters, byte for byte."""

    @pytest.mark.parametrize(
        ("point", "expected"),
        [
            (Point("desk", {}, {"v": 1}, T), b"desk v=1i %d\n" % T),
            (Point("desk state", {}, {"v": 1}, 1), b"desk\\ state v=1i 1\n"),
            (Point("a,b", {}, {"v": 1}, 1), b"a\\,b v=1i 1\n"),
            # `=` needs no escape in a measurement.
            (Point("a=b", {}, {"v": 1}, 1), b"a=b v=1i 1\n"),
            (Point("m", {"t k": "v"}, {"v": 1}, 1), b"m,t\\ k=v v=1i 1\n"),
            (Point("m", {"t,k": "v"}, {"v": 1}, 1), b"m,t\\,k=v v=1i 1\n"),
            (Point("m", {"t=k": "v"}, {"v": 1}, 1), b"m,t\\=k=v v=1i 1\n"),
            (Point("m", {"t": "a b,c=d"}, {"v": 1}, 1), b"m,t=a\\ b\\,c\\=d v=1i 1\n"),
            (Point("m", {}, {"f k,=": 1}, 1), b"m f\\ k\\,\\==1i 1\n"),
            # Tag values may hold double quotes and lone backslashes as they are.
            (Point("m", {"t": 'say "hi"'}, {"v": 1}, 1), b'm,t=say\\ "hi" v=1i 1\n'),
            (Point("m", {"t": "a\\b"}, {"v": 1}, 1), b"m,t=a\\b v=1i 1\n"),
            (Point("m", {}, {"s": 'a "q" \\ b'}, 1), b'm s="a \\"q\\" \\\\ b" 1\n'),
            (Point("m", {}, {"s": "a, b=c"}, 1), b'm s="a, b=c" 1\n'),
            (Point("m", {}, {"s": ""}, 1), b'm s="" 1\n'),
            (Point("m", {}, {"s": "caf\u00e9 \u2603"}, 1), 'm s="caf\u00e9 \u2603" 1\n'.encode()),
        ],
    )
    def test_escapes(self, point: Point, expected: bytes) -> None:
        assert line(point) == expected


class TestEncodeValues:
    """Integers get `i`, booleans are words, floats round-trip, tags are sorted, empty tags go."""

    def test_field_types(self) -> None:
        point = Point("m", {}, {"i": -42, "f": 0.1, "t": True, "n": False, "w": 3.0}, 5)
        assert line(point) == b"m i=-42i,f=0.1,t=true,n=false,w=3.0 5\n"

    def test_float_repr_is_exact(self) -> None:
        assert line(Point("m", {}, {"f": 1e16}, 1)) == b"m f=1e+16 1\n"
        assert float(line(Point("m", {}, {"f": math.pi}, 1)).split(b"=")[1].split()[0]) == math.pi

    def test_int64_bounds(self) -> None:
        bounds = Point("m", {}, {"a": INT64_MIN, "b": INT64_MAX}, 1)
        assert line(bounds) == b"m a=%di,b=%di 1\n" % (INT64_MIN, INT64_MAX)

    def test_tags_sorted_and_empty_omitted(self) -> None:
        point = Point("m", {"z": "1", "a": "2", "empty": ""}, {"v": 1}, 1)
        assert line(point) == b"m,a=2,z=1 v=1i 1\n"

    def test_time_bounds(self) -> None:
        assert line(Point("m", {}, {"v": 1}, TIME_MIN_NS)).endswith(b" %d\n" % TIME_MIN_NS)
        assert line(Point("m", {}, {"v": 1}, TIME_MAX_NS)).endswith(b" %d\n" % TIME_MAX_NS)

    def test_many_points_one_line_each(self) -> None:
        points = [Point("m", {"d": str(i)}, {"v": i}, i) for i in range(3)]
        assert encode_points(points) == b"m,d=0 v=0i 0\nm,d=1 v=1i 1\nm,d=2 v=2i 2\n"
        assert encode_points([]) == b""


class TestEncodeRefusals:
    """What InfluxDB could not read back unchanged is refused with a clear LineProtocolError."""

    @pytest.mark.parametrize(
        ("point", "message"),
        [
            (Point("m", {}, {"f": math.nan}, 1), "not a finite number"),
            (Point("m", {}, {"f": math.inf}, 1), "not a finite number"),
            (Point("m", {}, {"f": -math.inf}, 1), "not a finite number"),
            (Point("m", {}, {"i": INT64_MAX + 1}, 1), "int64"),
            (Point("m", {}, {"i": INT64_MIN - 1}, 1), "int64"),
            (Point("m", {}, {}, 1), "no field"),
            (Point("", {}, {"v": 1}, 1), "measurement is empty"),
            (Point("m", {"": "x"}, {"v": 1}, 1), "tag key is empty"),
            (Point("m", {}, {"": 1}, 1), "field key is empty"),
            (Point("#m", {}, {"v": 1}, 1), "comment"),
            (Point("\tm", {}, {"v": 1}, 1), "whitespace"),
            (Point("\x00m", {}, {"v": 1}, 1), "whitespace"),
            (Point("m", {}, {"\tv": 1}, 1), "whitespace"),
            (Point("m", {"time": "x"}, {"v": 1}, 1), "reserved"),
            (Point("m", {}, {"time": 1}, 1), "reserved"),
            (Point("m\nx", {}, {"v": 1}, 1), "newline"),
            (Point("m", {"t": "a\nb"}, {"v": 1}, 1), "newline"),
            (Point("m", {}, {"s": "a\nb"}, 1), "newline"),
            (Point("m", {"t": "ends\\"}, {"v": 1}, 1), "backslash"),
            (Point("m", {"t": "a\\,b"}, {"v": 1}, 1), "backslash"),
            (Point("m", {"t": "a\\\\b"}, {"v": 1}, 1), "backslash"),
            (Point("m\\ x", {}, {"v": 1}, 1), "backslash"),
            (Point("m", {}, {"k\\=": 1}, 1), "backslash"),
            (Point("m", {"t": "\ud800"}, {"v": 1}, 1), "Unicode"),
            (Point("m", {}, {"v": 1}, TIME_MAX_NS + 1), "outside"),
            (Point("m", {}, {"v": 1}, TIME_MIN_NS - 1), "outside"),
            (Point("m", {}, {"v": None}, 1), "not a field type"),  # type: ignore[dict-item]
            (Point("m", {"t": 1}, {"v": 1}, 1), "strings"),  # type: ignore[dict-item]
        ],
    )
    def test_refuses(self, point: Point, message: str) -> None:
        with pytest.raises(LineProtocolError, match=message):
            encode_point(point)

    def test_one_bad_point_refuses_the_batch(self) -> None:
        with pytest.raises(LineProtocolError):
            encode_points([Point("m", {}, {"v": 1}, 1), Point("m", {}, {"v": math.nan}, 2)])


text = st.text(max_size=30)
values = st.one_of(
    st.integers(INT64_MIN, INT64_MAX), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), text,
)  # fmt: skip


class TestEncodeProperties:
    """Any input either encodes to exactly one newline-free line per point, or is refused."""

    @settings(max_examples=500, deadline=None)
    @given(
        measurement=text,
        tags=st.dictionaries(text, text, max_size=4),
        fields=st.dictionaries(text, values, min_size=1, max_size=4),
        time_ns=st.integers(TIME_MIN_NS, TIME_MAX_NS),
    )
    def test_one_line_or_refused(
        self, measurement: str, tags: dict[str, str], fields: dict[str, object], time_ns: int
    ) -> None:
        point = Point(measurement, tags, fields, time_ns)  # type: ignore[arg-type]
        try:
            encoded = encode_points([point, point])
        except LineProtocolError:
            return
        lines = encoded.split(b"\n")
        assert lines[2] == b""
        assert lines[0] == lines[1]
        assert lines[0].endswith(b" %d" % time_ns)
        assert not lines[0].startswith(b"#")
        assert encoded.decode("utf-8")

    @settings(max_examples=300, deadline=None)
    @given(name=st.text(alphabet=st.characters(exclude_characters="\n\\"), min_size=1))
    def test_backslash_free_names_always_encode(self, name: str) -> None:
        if name.startswith(("#", "\t", "\x00")) or name == "time":
            return
        point = Point(name, {name: name}, {name: name}, 1)
        if any(0xD800 <= ord(c) <= 0xDFFF for c in name):
            with pytest.raises(LineProtocolError, match="Unicode"):
                encode_point(point)
        else:
            encode_point(point)
