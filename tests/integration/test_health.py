"""`/healthz`, `/readyz`, `/metrics` and the health points, on real SQL, Mosquitto and InfluxDB.

The server's workers are built as `ruche server run` builds them (`ServerWorkers.build`)
and its app is served in process; the last test runs `ruche server run --workers 2`
itself. InfluxDB outages are real: a private influxd is stopped and started again.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ruche.broker import Presence, PresenceState, Status, Topic, encode
from ruche.broker.payloads import MAX_INT64
from ruche.broker.tokens import badge_token
from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.run import ServerWorkers
from ruche.server.settings import ServerInflux, ServerMqtt, ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.sim.bench.access import Door
from ruche.sim.services.influxd import InfluxdProcess
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.sites import SiteBuilder
from ruche.sim.testing.waits import eventually

pytestmark = pytest.mark.integration

STATS_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Seeded:
    allowed: str
    """A 24/7 member's badge token."""
    unknown: str
    """A token no badge holds."""


def seed(url: str, site: str) -> Seeded:
    """The test's site with `agent-a` driving door `front` and reading desks `desk-0` to
    `desk-2`, and a 24/7 member's badge."""
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            built = SiteBuilder(session, site, name="Health")
            built.agent("agent-a", doors=["front"], desks=["desk-0", "desk-1", "desk-2"])
            built.member("Ada", "ada@example.org", plan=built.plan("resident"),
                         since=datetime.now(UTC) - timedelta(days=1),
                         badge=b"\x04\xa2\x2b\x1a")  # fmt: skip
            secret = bytes(registry.site_key_of(session, built.id).key)
        return Seeded(badge_token(secret, b"\x04\xa2\x2b\x1a"), badge_token(secret, b"\x01"))
    finally:
        engine.dispose()


def settings_for(site, database_url: str, influx_url: str, database: str, spool: Path):
    server = site.broker.server
    mqtt = ServerMqtt(
        host=site.broker.host,
        port=site.broker.port,
        username=server.username,
        password=server.password.get_secret_value(),
    )
    influx = ServerInflux(url=influx_url, database=database, spool_dir=spool)
    return ServerSettings(database_url=database_url, mqtt=mqtt, influx=influx)


Sample = tuple[str, frozenset[tuple[str, str]]]


def labelled(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def samples(exposition: str) -> dict[Sample, float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        labelled(sample.name, **sample.labels): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@dataclass
class Running:
    client: TestClient
    workers: ServerWorkers

    def scrape(self) -> dict[Sample, float]:
        response = self.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return samples(response.text)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.scrape().get(labelled(name, **labels))

    def total(self, name: str) -> float:
        """The sum of a labelled counter over all its labels."""
        return sum(v for (n, _), v in self.scrape().items() if n == name)

    def ready(self) -> tuple[int, dict[str, Any]]:
        response = self.client.get("/readyz")
        return response.status_code, response.json()


@contextmanager
def running_server(settings: ServerSettings) -> Iterator[Running]:
    """Migrate, build and start the workers as `ruche server run` does; the app in process."""
    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    workers = ServerWorkers.build(settings, sessions, stats_interval=STATS_INTERVAL_S)
    workers.start()
    try:
        app = create_app(
            sessions=sessions,
            commands=workers.doors,
            listener=workers.listener,
            live=workers.live,
            health=workers.health_checks(sessions),
        )
        with TestClient(app) as client:
            yield Running(client, workers)
    finally:
        workers.stop()
        engine.dispose()


def publish_presence(agent, site: str, seqs: range) -> None:
    for seq in seqs:
        state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
        payload = Presence(seq=seq, ts=datetime.now(UTC), mono=seq / 10, state=state)
        agent.publish(str(Topic.presence(site, "agent-a", f"desk-{seq % 3}")), encode(payload))


@dataclass(frozen=True)
class Influx:
    url: str
    database: str

    def rows(self, q: str, **params: object) -> list[list[Any]]:
        """The first series' rows of InfluxQL `q`, with `$name` bound to `params`."""
        data = {"db": self.database, "q": q, "epoch": "ns", "params": json.dumps(params)}
        response = httpx.post(f"{self.url}/query", data=data, timeout=10)
        response.raise_for_status()
        series = response.json()["results"][0].get("series")
        return [] if not series else list(series[0]["values"])

    def scalar(self, q: str, **params: object) -> Any:
        rows = self.rows(q, **params)
        return None if not rows else rows[0][1]

    def tag_values(self, measurement: str, key: str) -> set[str]:
        return {
            row[1] for row in self.rows(f'SHOW TAG VALUES FROM {measurement} WITH KEY = "{key}"')
        }


def elapsed_since(moment: datetime) -> float:
    return (datetime.now(UTC) - moment).total_seconds()


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


def status(state: str, **fields: Any) -> bytes:
    return encode(Status(state=state, ts=datetime.now(UTC), **fields))  # type: ignore[arg-type]


def tap_three(site, seeded: Seeded) -> list[str | None]:
    """Two taps of the member's badge and one of an unknown token; the answers' commands."""
    door = Door(site.broker.host, site.broker.port, site.agents["agent-a"], "front")
    try:
        taps = ((6, seeded.allowed), (7, seeded.allowed), (8, seeded.unknown))
        answers = [door.tap(token, seq) for seq, token in taps]
    finally:
        door.close()
    return [None if answer is None else answer[1].cmd for answer in answers]


def check_metrics(server: Running, site: str) -> None:
    server_metric = server.metric
    eventually(lambda: server_metric("ruche_ingest_stored_total") == 8, what="8 events stored")
    eventually(
        lambda: server_metric("ruche_agent_outbox_depth", site=site, agent="agent-a") == 3,
        what="the status's outbox depth",
    )
    eventually(
        lambda: server_metric("ruche_ingest_bad_total", reason="bad_json") == 1,
        what="the bad message counted by its reason",
    )
    scraped = server.scrape()

    def get(name: str, **labels: str) -> float | None:
        return scraped.get(labelled(name, **labels))

    # Ten messages sent; on a loaded machine the broker may deliver one again (a QoS 1
    # message whose ack was late): each such is one more received, and one more duplicate.
    received = get("ruche_ingest_received_total") or 0
    again = received - 10
    assert again >= 0, received
    assert get("ruche_ingest_duplicates_total") == 1 + again
    assert get("ruche_ingest_commit_failures_total") == 0
    assert (get("ruche_ingest_batches_total") or 0) >= 1
    # Every valid event's lag, the duplicates' too.
    assert get("ruche_ingest_lag_seconds_count") == 9 + again
    assert get("ruche_ingest_lag_seconds_bucket", le="+Inf") == 9 + again
    assert get("ruche_door_decisions_total", result="allowed", reason="schedule") == 2
    assert get("ruche_door_decisions_total", result="denied", reason="unknown_badge") == 1
    assert get("ruche_door_decision_seconds_count") == 3
    assert get("ruche_door_decision_seconds_bucket", le="2.5") == 3
    assert get("ruche_door_unanswered_total") == 0
    assert get("ruche_agents_online", site=site) == 1
    assert get("ruche_agent_faults", site=site, agent="agent-a") == 1
    # Up once a write has been answered; the spool's drainer may not have posted yet.
    eventually(lambda: server_metric("ruche_influx_up") == 1, what="InfluxDB up")
    assert get("ruche_influx_spool_segments") is not None
    assert get("ruche_influx_spool_points") is not None
    assert get("process_cpu_seconds_total") is not None
    eventually(
        lambda: (server_metric("ruche_influx_points_written_total") or 0) >= 8,
        what="the events' points written",
    )


def check_points(db: Influx, site: str) -> None:
    """The reporter's latest `server_stats` point caught up with the counters; the status
    is an `agent_status` point."""

    def caught_up() -> list[Any] | None:
        rows = db.rows(
            "SELECT last(stored), last(decisions), last(duplicates), last(bad), last(received) "
            "FROM server_stats WHERE process = 'main'"
        )
        return rows[0][1:] if rows and rows[0][1:] == [8, 3, 1, 1, 10] else None

    eventually(caught_up, what="a server_stats point with every figure")
    assert db.tag_values("server_stats", "host") == {socket.gethostname()}
    assert db.scalar("SELECT count(lag_ms_p50) FROM server_stats") >= 1
    assert db.scalar("SELECT max(lag_ms_p99) FROM server_stats") >= 0
    rows = eventually(
        lambda: db.rows(
            "SELECT online, outbox_depth, faults FROM agent_status "
            "WHERE site = $site AND agent = 'agent-a'",
            site=site,
        ),
        what="the agent_status point",
    )
    assert [row[1:] for row in rows] == [[1, 3, 1]]


def check_agent_goes_offline(server: Running, db: Influx, agent, site: str) -> None:
    """Its last will says offline: counted at once, and a second point, after the first."""
    agent.publish(str(Topic.status(site, "agent-a")), status("offline"), retain=True)
    eventually(
        lambda: server.metric("ruche_agents_online", site=site) == 0,
        what="the agent counted offline",
    )
    query = "SELECT online, outbox_depth FROM agent_status WHERE site = $site"
    eventually(lambda: len(db.rows(query, site=site)) == 2, what="the offline point")
    assert [row[1:] for row in db.rows(query, site=site)] == [[1, 3], [0, 0]]


def check_decision_lines(records: list[logging.LogRecord], site: str, seeded: Seeded) -> None:
    """One canonical line per decision; never a whole badge token anywhere in the log."""
    lines = [
        vars(r)
        for r in records
        if r.name == "ruche.server.access.taps" and r.getMessage().startswith("door decision")
    ]
    keys = ("site", "agent", "door", "badge", "result", "reason", "source")
    assert [tuple(line[k] for k in keys) for line in lines] == [
        (site, "agent-a", "front", seeded.allowed[:8], "allowed", "schedule", "online"),
        (site, "agent-a", "front", seeded.allowed[:8], "allowed", "schedule", "online"),
        (site, "agent-a", "front", seeded.unknown[:8], "denied", "unknown_badge", "online"),
    ]
    assert [isinstance(line["member_id"], int) for line in lines] == [True, True, False]
    assert all(0 < line["latency_ms"] < 2000 for line in lines)
    everything = "\n".join(json.dumps(vars(r), default=str) for r in records)
    assert seeded.allowed not in everything
    assert seeded.unknown not in everything


class TestMetricsAndPoints:
    """After events, a duplicate, a bad message, door decisions and an agent's status:
    /metrics says so by name, label and value; the log has one line per decision; and
    `server_stats` and `agent_status` points are in InfluxDB."""

    def test_metrics_logs_and_points(self, site, influx, tmp_path, caplog):
        caplog.set_level(logging.INFO, logger="ruche.server.access.taps")
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        seeded = seed(url, site.site)
        settings = settings_for(site, url, influx.url, influx.database, tmp_path / "spool")
        with running_server(settings) as server:
            assert server.ready() == (
                200,
                {"ready": True, "checks": {"database": "ok", "mqtt": "ok", "influxdb": "ok"}},
            )
            agent = site.connect_agent("agent-a")
            publish_presence(agent, site.site, range(1, 6))
            publish_presence(agent, site.site, range(3, 4))  # an outbox resend: a duplicate
            agent.publish(str(Topic.presence(site.site, "agent-a", "desk-1")), b"{not json")
            online = status("online", outbox_depth=3, faults=("desk-1",))
            agent.publish(str(Topic.status(site.site, "agent-a")), online, retain=True)
            assert tap_three(site, seeded) == ["unlock", "unlock", "deny"]
            check_metrics(server, site.site)
            check_points(Influx(influx.url, influx.database), site.site)
            check_agent_goes_offline(server, Influx(influx.url, influx.database), agent, site.site)
        check_decision_lines(caplog.records, site.site, seeded)


class TestAgentStatusNumbers:
    """A status whose number no store can hold is refused as bad_value and counted; the
    largest the contract accepts reaches the gauge and InfluxDB whole."""

    def test_int64_bounds(self, site, influx, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        seed(url, site.site)
        settings = settings_for(site, url, influx.url, influx.database, tmp_path / "spool")
        db = Influx(influx.url, influx.database)
        with running_server(settings) as server:
            agent = site.connect_agent("agent-a")
            topic = str(Topic.status(site.site, "agent-a"))
            huge = json.dumps({"v": 1, "state": "online", "ts": datetime.now(UTC).isoformat(),
                               "outbox_depth": 2**70})  # fmt: skip
            agent.publish(topic, huge.encode(), retain=True).wait_for_publish(5)
            eventually(lambda: server.metric("ruche_live_bad_total", reason="bad_value") == 1,
                       what="the status refused as bad_value")  # fmt: skip
            assert (
                server.metric("ruche_agent_outbox_depth", site=site.site, agent="agent-a") is None
            )
            largest = status("online", outbox_depth=MAX_INT64)
            agent.publish(topic, largest, retain=True).wait_for_publish(5)
            eventually(
                lambda: server.metric("ruche_agent_outbox_depth", site=site.site,
                                      agent="agent-a") == float(MAX_INT64),
                what="the gauge at the largest int64",
            )  # fmt: skip
            stored = eventually(
                lambda: db.scalar("SELECT outbox_depth FROM agent_status WHERE site = $site",
                                  site=site.site),
                what="the agent_status point",
            )  # fmt: skip
            assert stored == MAX_INT64, "InfluxDB holds it exactly, as an integer"
            assert server.ready()[0] == 200
            # The config it runs, and whether it refused the latest, as gauges.
            refusing = status("online", config_version=7, config_refused="version 8: no reader")
            agent.publish(topic, refusing, retain=True).wait_for_publish(5)
            labels = {"site": site.site, "agent": "agent-a"}
            eventually(lambda: server.metric("ruche_agent_config_refused", **labels) == 1.0,
                       what="the refusal as a gauge")  # fmt: skip
            assert server.metric("ruche_agent_config_version", **labels) == 7.0


class TestInfluxOutage:
    """InfluxDB stopped: /readyz turns 503 naming it, /metrics counts the failed writes
    and the growing spool; started again: ready, the spool drains, no point is lost, and
    the server_stats points made during the outage land with their own times."""

    def test_outage_and_recovery(self, site, pg_url, tmp_path):
        run_migrations(pg_url)
        seed(pg_url, site.site)
        influxd = InfluxdProcess(tmp_path / "influxd")
        settings = settings_for(site, pg_url, influxd.url, "ruche", tmp_path / "spool")
        try:
            influxd.start()
            with running_server(settings) as server:
                agent = site.connect_agent("agent-a")
                publish_presence(agent, site.site, range(1, 21))
                eventually(lambda: server.metric("ruche_ingest_stored_total") == 20)
                eventually(lambda: server.ready()[0] == 200, what="ready with InfluxDB up")

                down_at = datetime.now(UTC)
                influxd.stop()
                spooled = self.see_outage(server, agent, site.site)
                assert spooled >= 60
                # Long enough for several server_stats points, some showing that spool,
                # to wait in the spool themselves.
                time.sleep(
                    max(2.5 * STATS_INTERVAL_S, 6 * STATS_INTERVAL_S - elapsed_since(down_at))
                )

                up_at = datetime.now(UTC)
                influxd.start()
                eventually(lambda: server.ready()[0] == 200, what="/readyz green again")
                eventually(
                    lambda: server.metric("ruche_influx_spool_points") == 0,
                    what="the spool drained",
                )
                assert server.metric("ruche_influx_up") == 1
            self.check_landed(Influx(influxd.url, "ruche"), down_at, up_at)
        finally:
            influxd.stop()

    @staticmethod
    def see_outage(server: Running, agent, site: str) -> int:
        """/readyz red, agents still acked, errors and spool growing; the spooled points."""
        ready = eventually(
            lambda: (answer := server.ready())[0] == 503 and answer[1],
            what="/readyz turning red",
        )
        assert ready["ready"] is False
        assert ready["checks"]["database"] == "ok"
        assert ready["checks"]["mqtt"] == "ok"
        assert ready["checks"]["influxdb"].startswith("down: connection refused (spool holds ")
        assert server.client.get("/healthz").status_code == 200

        publish_presence(agent, site, range(21, 51))
        eventually(lambda: server.metric("ruche_ingest_stored_total") == 50, what="acked")

        def spool() -> float:
            return server.metric("ruche_influx_spool_points") or 0

        def errors() -> float:
            return server.total("ruche_influx_write_errors_total")

        eventually(lambda: errors() > 0 and spool() >= 30, what="write errors and a spool")
        first_spool, first_errors = spool(), errors()
        assert server.metric("ruche_influx_write_errors_total", kind="connect")
        assert server.metric("ruche_influx_up") == 0
        assert (server.metric("ruche_influx_spool_segments") or 0) >= 1
        publish_presence(agent, site, range(51, 81))
        eventually(
            lambda: spool() >= first_spool + 30 and errors() > first_errors,
            what="the spool and the errors growing",
        )
        state = server.ready()[1]["checks"]["influxdb"]
        return int(state.split("spool holds ")[1].split()[0])

    @staticmethod
    def check_landed(db: Influx, down_at: datetime, up_at: datetime) -> None:
        assert db.scalar("SELECT count(occupied) FROM presence") == 80, "none lost or doubled"
        during = db.rows(
            "SELECT spool_points, influx_write_errors FROM server_stats "
            "WHERE process = 'main' AND time >= $down AND time < $up",
            down=ns(down_at),
            up=ns(up_at),
        )
        assert len(during) >= 3, "the points made during the outage landed at their own times"
        assert max(row[1] for row in during) >= 60, "showing the spool during the outage"
        assert during[-1][2] > during[0][2], "and the write errors climbing"


class TestServerRunProcesses:
    """`ruche server run --workers 2`: /metrics and /readyz over HTTP, JSON log lines with
    the decision's canonical line, and server_stats points from each process."""

    def test_two_processes(self, site, influx, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        seeded = seed(url, site.site)
        http_port = free_port()
        server = site.broker.server
        config = tmp_path / "server.toml"
        config.write_text(
            f'database_url = "{url}"\n'
            f'[mqtt]\nhost = "{site.broker.host}"\nport = {site.broker.port}\n'
            f'username = "{server.username}"\npassword = "{server.password.get_secret_value()}"\n'
            f"[http]\nport = {http_port}\n"
            f'[influx]\nurl = "{influx.url}"\ndatabase = "{influx.database}"\n'
            f'spool_dir = "{tmp_path / "spool"}"\n'
        )
        log_path = tmp_path / "server.log"
        command = [sys.executable, "-m", "ruche", "server", "run", "--config", str(config)]
        with log_path.open("wb") as log:
            proc = subprocess.Popen([*command, "--workers", "2"], stdout=log, stderr=log)
        base = f"http://127.0.0.1:{http_port}"
        db = Influx(influx.url, influx.database)
        try:
            assert wait_for_port("127.0.0.1", http_port, timeout=30), "the API never came up"
            eventually(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200)
            door = Door(site.broker.host, site.broker.port, site.agents["agent-a"], "front")
            try:
                answer = door.tap(seeded.allowed, 1)
            finally:
                door.close()
            assert answer is not None
            assert answer[1].cmd == "unlock"
            allowed = labelled("ruche_door_decisions_total", result="allowed", reason="schedule")
            # Counted just after the answer is sent: a scrape may come first.
            metrics = eventually(
                lambda: (
                    (m := samples(httpx.get(f"{base}/metrics", timeout=5).text)).get(allowed) == 1
                    and m
                ),
                what="the decision counted",
            )
            assert metrics[labelled("ruche_ingest_children_running")] == 1
            eventually(
                lambda: db.tag_values("server_stats", "process") >= {"main", "ingest-1"},
                what="server_stats points from both processes",
            )
        finally:
            proc.terminate()
            proc.wait(60)
        text = log_path.read_text()
        assert proc.returncode == 0, text
        entries = [json.loads(line) for line in text.splitlines() if line]
        (line,) = [e for e in entries if str(e["msg"]).startswith("door decision")]
        expected = {
            "level": "info",
            "logger": "ruche.server.access.taps",
            "site": site.site,
            "agent": "agent-a",
            "door": "front",
            "badge": seeded.allowed[:8],
            "result": "allowed",
            "reason": "schedule",
            "source": "online",
        }
        assert {key: line[key] for key in expected} == expected
        assert isinstance(line["member_id"], int)
        assert line["latency_ms"] > 0
        assert seeded.allowed not in text
        assert any(str(e["msg"]).startswith("ingest process ingest-1") for e in entries)
