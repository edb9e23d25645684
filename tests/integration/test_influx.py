"""The InfluxDB writer against a real influxd: round trips, batching, outages, crashes, poison.

No mock stands in for InfluxDB or HTTP: outage tests start an influxd of their own and
stop it; crash tests SIGKILL a real writer process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from ruche.server.timeseries.influx import (
    InfluxError,
    InfluxUnavailable,
    InfluxWriter,
    SpoolError,
)
from ruche.server.timeseries.lineprotocol import LineProtocolError, Point, encode_points
from ruche.sim.services.influxd import InfluxdProcess
from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


def count(writer: InfluxWriter, measurement: str, field: str = "v") -> int:
    result = writer.query(f'SELECT count("{field}") FROM "{measurement}"')  # noqa: S608
    series = result["results"][0].get("series")
    return 0 if not series else int(series[0]["values"][0][1])


def points(n: int, *, start: int = 0, measurement: str = "occ") -> list[Point]:
    return [
        Point(measurement, {"desk": f"d{i % 50}", "site": "lyon 2"}, {"v": i}, T0 + i)
        for i in range(start, start + n)
    ]


def spooled_files(spool: Path) -> list[Path]:
    return sorted(spool.glob("*.lp"))


def create_database(url: str, name: str) -> None:
    httpx.post(
        f"{url}/query", data={"q": f'CREATE DATABASE "{name}"'}, timeout=10
    ).raise_for_status()


# --- round trips ---------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=12)
field_values = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20),
)
_db_counter = iter(range(10**9))


class TestRoundTrip:
    """What the encoder accepts, the real influxd stores and gives back exactly."""

    @settings(
        max_examples=40,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    )
    @given(
        measurement=names,
        tags=st.dictionaries(names, names, max_size=3),
        fields=st.dictionaries(names, field_values, min_size=1, max_size=3),
        time_ns=st.integers(-(2**62), 2**62),
    )
    def test_arbitrary_strings_read_back_exactly(
        self,
        influxd: InfluxdProcess,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, Any],
        time_ns: int,
    ) -> None:
        assume(not set(tags) & set(fields))  # InfluxQL would rename a field shadowed by a tag
        point = Point(measurement, tags, fields, time_ns)
        try:
            body = encode_points([point])
        except LineProtocolError:
            return  # refused up front: nothing to check against InfluxDB
        database = f"rt{os.getpid()}x{next(_db_counter)}"
        create_database(influxd.url, database)
        try:
            params = {"db": database, "precision": "ns"}
            response = httpx.post(f"{influxd.url}/write", params=params, content=body, timeout=10)
            assert response.status_code == 204, (body, response.text)
            result = httpx.get(f"{influxd.url}/query", params={"db": database, "epoch": "ns",
                               "q": "SELECT * FROM /.*/"}, timeout=10).json()  # fmt: skip
        finally:
            httpx.post(
                f"{influxd.url}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=10
            )
        [series] = result["results"][0]["series"]
        assert series["name"] == measurement
        [row] = series["values"]
        stored = {k: v for k, v in zip(series["columns"], row, strict=True) if v is not None}
        # InfluxDB's JSON prints large floats without an exponent ("1e16" as 10000000000000000):
        # compare those as floats; the stored value itself is the float written.
        expected = {"time": time_ns, **tags, **fields}
        for key, value in fields.items():
            if isinstance(value, float) and isinstance(stored.get(key), int):
                stored[key] = float(stored[key])
        assert stored == expected, body

    def test_awkward_strings_through_the_writer(self, influx: Any, tmp_path: Path) -> None:
        awkward = {
            "site": 'Lyon 2, "Part-Dieu" = east',
            "zone": "caf\u00e9\tn\u00b0 3\\west",
            "emoji": "\U0001f41d",
        }
        text = 'he said "a,b=c d" \\ done'
        with InfluxWriter(influx.url, influx.database, spool_dir=tmp_path / "spool") as writer:
            writer.write([Point("desk state", awkward, {"note": text, "v": 1.5}, T0)])
            assert writer.flush(10)
            result = writer.query('SELECT * FROM "desk state"')
        [series] = result["results"][0]["series"]
        row = dict(zip(series["columns"], series["values"][0], strict=True))
        assert row == {"time": T0, **awkward, "note": text, "v": 1.5}


# --- batching, idempotence, queries -----------------------------------------------------------


class TestWriterBatches:
    """Points go out in batches of `batch_points`, and replays rewrite the same points."""

    def test_batches_of_batch_points(self, influx: Any, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        with InfluxWriter(influx.url, influx.database, spool_dir=spool, batch_points=5000) as w:
            w.write(points(12_000))
            assert w.flush(30)
            stats = w.stats()
            assert count(w, "occ") == 12_000
        assert stats.batches_written == 3
        assert stats.points_written == 12_000
        assert (stats.spooled_points, stats.spool_bytes) == (0, 0)
        assert stats.up
        assert spooled_files(spool) == []

    def test_throughput(self, influx: Any, tmp_path: Path) -> None:
        total, per_call = 100_000, 1000
        with InfluxWriter(influx.url, influx.database, spool_dir=tmp_path / "spool") as w:
            started = time.perf_counter()
            for start in range(0, total, per_call):
                w.write(points(per_call, start=start))
            spooled = time.perf_counter() - started
            assert w.flush(60)
            elapsed = time.perf_counter() - started
            assert count(w, "occ") == total
        print(f"\nspooled {total / spooled:,.0f} points/s; stored {total / elapsed:,.0f} points/s")

    def test_same_points_twice_make_the_same_series(self, influx: Any, tmp_path: Path) -> None:
        with InfluxWriter(influx.url, influx.database, spool_dir=tmp_path / "spool") as w:
            w.write(points(1000))
            assert w.flush(10)
            first = w.query('SELECT * FROM "occ"')
            w.write(points(1000))
            assert w.flush(10)
            assert w.query('SELECT * FROM "occ"') == first
            assert count(w, "occ") == 1000
            series = w.query('SHOW SERIES FROM "occ"')["results"][0]["series"][0]["values"]
            assert len(series) == 50

    def test_query_errors_carry_influx_text(self, influx: Any, tmp_path: Path) -> None:
        with (
            InfluxWriter(influx.url, influx.database, spool_dir=tmp_path / "a") as w,
            pytest.raises(InfluxError, match="error parsing query"),
        ):
            w.query("SELECT * FROM")
        with (
            InfluxWriter(influx.url, "no_such_db", spool_dir=tmp_path / "b") as w,
            pytest.raises(InfluxError, match="database not found"),
        ):
            w.query('SELECT * FROM "occ"')
        dead = f"http://127.0.0.1:{free_port()}"
        with (
            InfluxWriter(dead, "x", spool_dir=tmp_path / "c", timeout=1) as w,
            pytest.raises(InfluxUnavailable),
        ):
            w.query("SHOW DATABASES")

    def test_one_writer_per_spool(self, influx: Any, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        with (
            InfluxWriter(influx.url, influx.database, spool_dir=spool),
            pytest.raises(SpoolError, match="another writer"),
        ):
            InfluxWriter(influx.url, influx.database, spool_dir=spool)


# --- outages, crashes, poison -----------------------------------------------------------------


class TestWriterOutage:
    """InfluxDB stopped mid-stream: points wait on disk and arrive exactly once when it returns."""

    def test_stop_for_ten_seconds_while_writing(self, tmp_path: Path) -> None:
        own = InfluxdProcess(tmp_path / "influx")
        own.start()
        try:
            create_database(own.url, "ruche")
            total, per_call, pause = 20_000, 100, 0.05  # about 2,000 points/s for 10 s
            writer = InfluxWriter(own.url, "ruche", spool_dir=tmp_path / "spool",
                                  batch_points=1000, flush_interval=0.1, timeout=2,
                                  max_backoff=0.5)  # fmt: skip
            errors: list[BaseException] = []

            def produce() -> None:
                try:
                    for start in range(0, total, per_call):
                        writer.write(points(per_call, start=start))
                        time.sleep(pause)
                except Exception as exc:  # noqa: BLE001 - reported to the test thread below
                    errors.append(exc)

            producer = threading.Thread(target=produce)
            producer.start()
            time.sleep(2)
            own.stop()
            time.sleep(1)
            during = writer.stats()
            time.sleep(9)
            own.start()
            producer.join()
            drained = writer.flush(60)
            after = writer.stats()
            stored = count(writer, "occ")
            writer.close()
        finally:
            own.stop()
        assert not errors
        assert not during.up
        assert during.spooled_points > 0
        assert during.write_errors
        assert drained
        assert stored == total
        assert after.points_written >= total
        assert after.spooled_points == 0
        assert after.dead_lettered_batches == 0
        assert spooled_files(tmp_path / "spool") == []


CHILD = """
import sys
from pathlib import Path
from ruche.server.timeseries.influx import InfluxWriter
from ruche.server.timeseries.lineprotocol import Point
url, database, spool = sys.argv[1:4]
writer = InfluxWriter(url, database, spool_dir=Path(spool), batch_points=700, flush_interval=0.05)
n = 0
while True:
    writer.write([Point("k", {"desk": f"d{i % 50}"}, {"v": i}, T0 + i) for i in range(n, n + 100)])
    n += 100
    print(n, flush=True)
""".replace("T0", str(T0))


class TestWriterCrash:
    """A writer killed with SIGKILL after write() returned loses nothing: the next one replays."""

    @pytest.mark.parametrize("influx_reachable", [True, False], ids=["draining", "offline"])
    def test_sigkill_then_replay(self, influx: Any, tmp_path: Path, influx_reachable: bool) -> None:
        spool = tmp_path / "spool"
        url = influx.url if influx_reachable else f"http://127.0.0.1:{free_port()}"
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, influx.database, str(spool)],
            stdout=subprocess.PIPE,
            text=True,
        )
        acknowledged = 0
        assert child.stdout is not None
        with child.stdout:
            while acknowledged < 5000:
                acknowledged = int(child.stdout.readline())
            child.send_signal(signal.SIGKILL)
            child.wait()
        if not influx_reachable:
            assert spooled_files(spool)  # everything it acknowledged is still waiting
        with InfluxWriter(influx.url, influx.database, spool_dir=spool) as writer:
            replayed = writer.stats().spooled_points
            assert writer.flush(30)
            stored_acked = count_below(writer, acknowledged)
            stats = writer.stats()
        assert stored_acked == acknowledged
        assert stats.dead_lettered_batches == 0
        assert spooled_files(spool) == []
        if not influx_reachable:
            assert replayed >= acknowledged

    def test_torn_last_line_is_cut(self, influx: Any, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        spool.mkdir()
        body = encode_points(points(3, measurement="k"))
        (spool / "00000000000000000007.lp").write_bytes(body + b"k,desk=d1 v=9")
        with InfluxWriter(influx.url, influx.database, spool_dir=spool) as writer:
            assert writer.stats().spooled_points == 3
            assert writer.flush(10)
            assert count(writer, "k") == 3
            writer.write(points(1, start=3, measurement="k"))  # numbering goes on after 7
            assert writer.flush(10)
            assert count(writer, "k") == 4


def count_below(writer: InfluxWriter, limit: int) -> int:
    result = writer.query(f'SELECT count("v") FROM "k" WHERE "v" < {limit}')  # noqa: S608
    series = result["results"][0].get("series")
    return 0 if not series else int(series[0]["values"][0][1])


class TestWriterPoison:
    """A batch InfluxDB rejects is dead-lettered with its reason; later batches still arrive."""

    def test_field_type_conflict(self, influx: Any, tmp_path: Path) -> None:
        spool = tmp_path / "spool"
        with InfluxWriter(influx.url, influx.database, spool_dir=spool) as writer:
            writer.write([Point("p", {}, {"x": 1}, T0)])
            assert writer.flush(10)
            writer.write([Point("p", {}, {"x": "a"}, T0 + 1)])
            assert writer.flush(10)
            writer.write([Point("p", {}, {"x": 3}, T0 + 2), Point("p", {}, {"x": 4}, T0 + 3)])
            assert writer.flush(10)
            stats = writer.stats()
            assert count(writer, "p", "x") == 3
        assert stats.dead_lettered_batches == 1
        assert stats.dead_lettered_points == 1
        assert stats.write_errors == {"rejected": 1}
        assert stats.last_error is not None
        assert "field type conflict" in stats.last_error
        [dead] = sorted((spool / "dead-letter").glob("*.lp"))
        assert dead.read_bytes() == b'p x="a" %d\n' % (T0 + 1)
        note = json.loads(dead.with_suffix(".json").read_text(encoding="utf-8"))
        assert "field type conflict" in note["error"]
        assert note["points"] == 1
        assert spooled_files(spool) == []
