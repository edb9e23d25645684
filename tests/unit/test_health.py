"""Health as values: readiness verdicts, agents' states, and the health points' line protocol."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from ruche.broker import Status
from ruche.server.ops.health import (
    AgentBoard,
    StatsSnapshot,
    agent_status_point,
    first_line,
    influx_state,
    mqtt_state,
    percentile,
    readiness,
    server_stats_point,
)
from ruche.server.ops.prometheus_batch import observe_many
from ruche.server.timeseries.lineprotocol import encode_points

TS = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NS = 1_795_424_400_000_000_000


class TestReadiness:
    """Ready only when every check is `ok`; each other state says what is wrong."""

    def test_all_ok(self):
        verdict = readiness({"database": "ok", "mqtt": "ok"})
        assert verdict.ready
        assert verdict.as_json() == {"ready": True, "checks": {"database": "ok", "mqtt": "ok"}}

    def test_one_down(self):
        verdict = readiness({"database": "ok", "influxdb": "down: connection refused"})
        assert not verdict.ready

    def test_mqtt_names_the_disconnected_workers(self):
        assert mqtt_state({"ingest": True, "doors": True}) == "ok"
        assert mqtt_state({"live": False, "ingest": True, "doors": False}) == (
            "down: doors, live not connected to the broker"
        )

    def test_influx_down_names_the_spool(self):
        state = influx_state(ping_error="connection refused", up=False, last_error="x",
                             spooled_points=1234)  # fmt: skip
        assert state == "down: connection refused (spool holds 1234 points)"

    def test_influx_answering_but_writes_not_yet_through(self):
        state = influx_state(ping_error=None, up=False, last_error="InfluxDB answered 503: x",
                             spooled_points=7)  # fmt: skip
        assert state == "failing: InfluxDB answered 503: x (spool holds 7 points)"

    def test_influx_ok(self):
        assert influx_state(ping_error=None, up=True, last_error="old", spooled_points=3) == "ok"
        refused = "InfluxDB answered 401: unauthorized"
        state = influx_state(ping_error=None, up=True, last_error=refused, spooled_points=3,
                             refusing=True)  # fmt: skip
        assert state == f"failing: {refused} (spool holds 3 points)"
        # Before the first write: nothing has failed yet.
        assert influx_state(ping_error=None, up=False, last_error=None, spooled_points=0) == "ok"

    def test_first_line(self):
        assert first_line(RuntimeError("refused\n\tIs the server running?")) == "refused"
        assert first_line(RuntimeError("")) == "RuntimeError"
        assert first_line("x" * 300).endswith("...")
        assert len(first_line("x" * 300)) == 200


class TestAgentBoard:
    """Each agent's last status; offline agents count 0 and report no backlog."""

    def test_states_and_counts(self):
        board = AgentBoard()
        board.record("lyon", "a1", Status(state="online", ts=TS, outbox_depth=5,
                                          faults=("desk-1", "desk-2")))  # fmt: skip
        board.record("lyon", "a2", Status(state="online", ts=TS))
        board.record("lyon", "a2", Status(state="offline", ts=TS, outbox_depth=9))
        board.record("nice", "b1", Status(state="offline", ts=TS))
        assert board.online_by_site() == {"lyon": 1, "nice": 0}
        a1 = board.states()[("lyon", "a1")]
        assert (a1.online, a1.outbox_depth, a1.faults) == (True, 5, 2)
        a2 = board.states()[("lyon", "a2")]
        assert (a2.online, a2.outbox_depth, a2.faults) == (False, 0, 0)


class TestPoints:
    """`server_stats` and `agent_status` as line protocol, by the names the dashboards read."""

    def test_agent_status(self):
        board = AgentBoard()
        state = board.record("lyon", "a1", Status(state="online", ts=TS, outbox_depth=3,
                                                  faults=("desk-1",)))  # fmt: skip
        point = agent_status_point("lyon", "a1", state, time_ns=NS)
        assert encode_points([point]).decode() == (
            f"agent_status,agent=a1,site=lyon online=1i,outbox_depth=3i,faults=1i {NS}\n"
        )

    def test_server_stats(self):
        snapshot = StatsSnapshot(received=10, stored=8, duplicates=1, bad=1, lag_ms_p50=4.5,
                                 lag_ms_p99=12.0, spool_points=2, influx_write_errors=3,
                                 points_written=7, decisions=4)  # fmt: skip
        point = server_stats_point(snapshot, host="srv1", process="ingest-1", time_ns=NS)
        assert encode_points([point]).decode() == (
            "server_stats,host=srv1,process=ingest-1 received=10i,stored=8i,duplicates=1i,"
            "bad=1i,spool_points=2i,influx_write_errors=3i,points_written=7i,decisions=4i,"
            f"lag_ms_p50=4.5,lag_ms_p99=12.0 {NS}\n"
        )

    def test_no_lag_fields_without_events(self):
        point = server_stats_point(StatsSnapshot(), host="h", process="main", time_ns=NS)
        assert "lag_ms_p50" not in point.fields
        assert "lag_ms_p99" not in point.fields
        assert point.fields["received"] == 0


class TestPercentile:
    """Nearest rank: always one of the values, never below the lower quantile's."""

    def test_known(self):
        values = [float(v) for v in range(1, 101)]
        assert percentile(values, 0.5) == 50.0
        assert percentile(values, 0.99) == 99.0
        assert percentile(values, 1.0) == 100.0
        assert percentile([7.0], 0.99) == 7.0
        assert percentile([], 0.5) is None

    def test_bad_quantile(self):
        with pytest.raises(ValueError, match="quantile"):
            percentile([1.0], 0)

    @given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
    def test_properties(self, values):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        assert p50 in values
        assert p99 in values
        assert p50 is not None
        assert p99 is not None
        assert min(values) <= p50 <= p99 <= max(values)


class TestObserveMany:
    """`observe_many` counts what `Histogram.observe` would, one by one."""

    @given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=200))
    def test_same_exposition_as_observe(self, amounts):
        one, many = CollectorRegistry(), CollectorRegistry()
        buckets = (0.1, 0.5, 1.0, 5.0, 30.0)
        by_one = Histogram("lag", "lag", buckets=buckets, registry=one)
        by_many = Histogram("lag", "lag", buckets=buckets, registry=many)
        for amount in amounts:
            by_one.observe(amount)
        observe_many(by_many, amounts)
        assert _samples(many) == pytest.approx(_samples(one))


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }
