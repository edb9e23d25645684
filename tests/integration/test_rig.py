"""The test rig itself: real influxd and PostgreSQL, one database per test."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


class TestInfluxRig:
    """Each test writes line protocol to its own database on a real influxd."""

    def test_write_and_query_roundtrip(self, influx):
        response = influx.write("presence,site=lab,desk=d1 occupied=1i 1700000000000000000\n")
        assert response.status_code == 204, response.text
        result = influx.query("SELECT occupied FROM presence")
        series = result["results"][0]["series"][0]
        assert series["values"] == [["2023-11-14T22:13:20Z", 1]]

    def test_databases_are_separate(self, influx):
        result = influx.query("SHOW MEASUREMENTS")
        assert "series" not in result["results"][0], "a fresh database is empty"


class TestPostgresRig:
    """Each test gets a database of its own on a real PostgreSQL."""

    def test_own_database(self, pg_dsn):
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
            (count,) = conn.execute("SELECT count(*) FROM t").fetchone()
        assert count == 1

    def test_other_tests_tables_are_not_here(self, pg_dsn):
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("SELECT to_regclass('public.t')").fetchone()
        assert row == (None,)
