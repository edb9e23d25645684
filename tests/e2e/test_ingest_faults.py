"""Ingestion under faults, through the real pipeline `ruche bench ingest` starts: its own
Mosquitto, InfluxDB and `ruche server run`, agents publishing presence at QoS 1.

What is counted is counted where it lands: points in InfluxDB itself, rows in SQL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ruche.sim.bench.ingest import Faults, IngestBenchResult, run_ingest_bench

pytestmark = pytest.mark.integration


def _assert_exactly_once(result: IngestBenchResult) -> None:
    assert result.lost == 0, result
    assert result.duplicates == 0, result
    assert result.stored == result.sent, result
    assert result.stored_sql == result.sent, result
    assert result.acked == result.sent, result


class TestFaults:
    """InfluxDB stopped for 60 s and one of two workers killed, at 1,000 events a second."""

    @pytest.mark.slow
    def test_influx_down_60s_and_a_worker_killed_lose_and_duplicate_nothing(
        self, pg_url: str
    ) -> None:
        result = run_ingest_bench(
            rate=1000,
            seconds=75,
            agents=20,
            desks_per_agent=10,
            workers=2,
            database_url=pg_url,
            faults=Faults(influx_down_at=5, influx_down_for=60, kill_worker_at=30),
        )
        assert result.faults == [
            "5s influx_down",
            result.faults[1],  # names the pid it killed
            "65s influx_up",
        ]
        assert result.faults[1].startswith("30s kill_worker (pid ")
        assert result.sent == 75_000
        _assert_exactly_once(result)
        # The kill cost the agents a resend; the server kept one copy of each.
        assert result.resent > 0
        # Acks never waited for InfluxDB: durable in SQL and the spool was enough.
        assert result.lag_p50_ms < 1000


class TestCommand:
    """`ruche bench ingest --json` prints the figures the issue asks for."""

    def test_json_figures(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ruche", "bench", "ingest", "--rate", "500", "--seconds", "4",
             "--agents", "5", "--desks", "4", "--json"],
            capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout)
        for key in ("sent", "stored", "lost", "duplicates", "rate_achieved", "lag_p50_ms",
                    "lag_p99_ms", "server_rss_mb"):  # fmt: skip
            assert key in figures
        assert figures["sent"] == 2000
        assert figures["stored"] == 2000
        assert figures["lost"] == figures["duplicates"] == 0
        assert figures["server_rss_mb"] > 10

    def test_a_worker_kill_needs_two_workers(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ruche", "bench", "ingest", "--seconds", "1",
             "--kill-worker-at", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode != 0
        assert "--workers 2" in done.stderr
