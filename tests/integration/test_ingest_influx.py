"""Events through ingestion into InfluxDB, point for point, whatever InfluxDB does."""

from __future__ import annotations

import functools
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.ingest import IngestWorker
from ruche.server.storage.db import make_engine, make_sessions, run_migrations
from ruche.server.storage.models import StoredEventRow
from ruche.server.timeseries.influx import InfluxWriter
from ruche.server.timeseries.points import time_ns, write_events
from ruche.sim.services.influxd import InfluxdProcess

pytestmark = pytest.mark.integration


def presence_builder(site: str):
    def build(seq: int) -> tuple[str, bytes]:
        state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
        payload = Presence(seq=seq, ts=datetime.now(UTC), mono=seq / 100, state=state)
        return str(Topic.presence(site, "agent-a", f"desk-{seq % 5}")), encode(payload)

    return build


def count_points(writer: InfluxWriter) -> int:
    result = writer.query("SELECT count(occupied) FROM presence")
    series = result["results"][0].get("series")
    return 0 if not series else int(series[0]["values"][0][1])


def run_pipeline(
    site, tmp_path, register_devices, *, influx_url: str, database: str, during=None, events=600
):
    account = site.agents["agent-a"]
    server = site.broker.server
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    register_devices(url, site.site, desks={"agent-a": [f"desk-{i}" for i in range(5)]})
    engine = make_engine(url)
    writer = InfluxWriter(influx_url, database, spool_dir=tmp_path / "spool", timeout=2.0)
    writer.query(f'CREATE DATABASE "{database}"')
    options = MqttOptions(
        host=site.broker.host,
        port=site.broker.port,
        username=server.username,
        password=server.password.get_secret_value(),
    )
    worker = IngestWorker(make_sessions(engine), options, site=site.site,
                          before_ack=functools.partial(write_events, writer))  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.db")
    link = AgentLink(
        LinkOptions(site=site.site, agent="agent-a", host=site.broker.host,
                    port=site.broker.port, username=account.username,
                    password=account.password.get_secret_value(), resend_after=1.0),
        outbox, on_command=lambda c: None, on_allowlist=lambda a: None,
    )  # fmt: skip
    worker.start()
    link.start()
    build = presence_builder(site.site)

    def produce() -> None:
        for _ in range(events):
            outbox.append(build)
            link.wake()
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        if during is not None:
            during(outbox)
        producer.join()
        deadline = time.monotonic() + 60
        while outbox.depth and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.depth == 0, "every event was acked"
        assert writer.flush(timeout=60), f"the spool drained: {writer.stats()}"
        return count_points(writer), writer.stats()
    finally:
        link.stop()
        outbox.close()
        worker.stop()
        writer.close()
        engine.dispose()


class TestPointForPoint:
    """Every stored presence event is one point in InfluxDB, at the agent's event time."""

    def test_all_points_arrive(self, site, influx, tmp_path, register_devices):
        count, stats = run_pipeline(site, tmp_path, register_devices, influx_url=influx.url,
                                    database=influx.database)  # fmt: skip
        assert count == 600
        assert stats.dead_lettered_points == 0


class TestInfluxOutage:
    """InfluxDB stopped mid-stream: agents are still acked, and no point is lost or doubled."""

    @pytest.mark.slow
    def test_influxd_stopped_and_started(self, site, tmp_path, register_devices):
        influxd = InfluxdProcess(tmp_path / "influxd")
        influxd.start()
        acked_during_outage: list[int] = []

        def outage(outbox: Outbox) -> None:
            time.sleep(1.0)
            influxd.stop()
            depth_before = outbox.next_seq
            time.sleep(6.0)
            acked_during_outage.append(outbox.acked_seq - depth_before)
            influxd.start()

        try:
            count, stats = run_pipeline(
                site, tmp_path, register_devices, influx_url=influxd.url, database="outage",
                during=outage, events=1500,
            )  # fmt: skip
        finally:
            influxd.stop()
        assert acked_during_outage[0] > 0, "the durable spool let acks go on during the outage"
        assert count == 1500
        assert stats.write_errors, "the outage was seen"


class TestResentWithOtherContent:
    """A seq sent twice with different content is kept once, the same version, in SQL
    and in InfluxDB: the first one SQL stored."""

    def test_sql_and_influx_keep_the_same_version(self, site, influx, tmp_path, register_devices):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        register_devices(url, site.site, desks={"agent-a": ["desk-1"]})
        engine = make_engine(url)
        writer = InfluxWriter(influx.url, influx.database, spool_dir=tmp_path / "spool")
        server = site.broker.server
        options = MqttOptions(host=site.broker.host, port=site.broker.port,
                              username=server.username,
                              password=server.password.get_secret_value())  # fmt: skip
        worker = IngestWorker(make_sessions(engine), options, site=site.site,
                              before_ack=functools.partial(write_events, writer))  # fmt: skip
        worker.start()
        try:
            agent = site.connect_agent("agent-a")
            topic = str(Topic.presence(site.site, "agent-a", "desk-1"))
            first = Presence(seq=1, ts=datetime(2026, 12, 1, 9, tzinfo=UTC), mono=1.0,
                             state=PresenceState.OCCUPIED)  # fmt: skip
            other = Presence(seq=1, ts=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), mono=2.0,
                             state=PresenceState.VACANT)  # fmt: skip
            agent.publish(topic, encode(first), qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 10
            while worker.stats.stored < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            agent.publish(topic, encode(other), qos=1).wait_for_publish(5)
            while worker.stats.duplicates < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert (worker.stats.stored, worker.stats.duplicates) == (1, 1)
            assert writer.flush(timeout=10)
            result = writer.query("SELECT occupied, seq FROM presence WHERE agent = 'agent-a'")
            rows = result["results"][0]["series"][0]["values"]
            assert [tuple(row) for row in rows] == [(time_ns(first.ts), 1, 1)]
            with make_sessions(engine)() as session:
                assert session.scalars(select(StoredEventRow.kind)).all() == ["occupied"]
        finally:
            worker.stop()
            writer.close()
            engine.dispose()
