"""Every dashboard panel's query, run against a real InfluxDB filled by a simulated day.

Once for the module: a planned coworking day (`ruche.sim.day`, ten desks, two doors,
nine members) is played by `ruche.sim.day_player` through the session's Mosquitto to
the server's own workers (ingestion into PostgreSQL and InfluxDB), as
tests/e2e/test_simulated_day.py does; then the occupancy worker refreshes the site at
the day's end with the InfluxDB writer, which charts its bookings (`booking` points).
What a day of the simulator does not hold is written through the same writer: door
alarms and offline decisions (points of real payloads, by `points_of`), and the
server's health measurements (`server_stats`, `agent_status`).

Then each query of each panel is filled in as Grafana fills it (`$timeFilter` for the
dashboard's range, or the panel's own, ending at 14:00 on the simulated day;
`$__interval`; `$site`, `$desk` = All, `$tz` = Europe/Paris), posted to `/query`, and
its answer checked against what the plan says it must show: columns, series, and the
figures themselves where the plan fixes them.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from sqlalchemy import func, select, update

from ruche.broker import Channel, DoorForced, DoorHeldOpen, Message, OfflineDecision, Topic
from ruche.dashboards.catalogue import DASHBOARDS
from ruche.dashboards.macros import auto_interval, expand, parse_duration
from ruche.dashboards.model import Dashboard, Panel, Query, Variable
from ruche.server import registry
from ruche.server.occupancy.worker import OccupancyWorker
from ruche.server.run import ServerWorkers
from ruche.server.settings import ServerInflux, ServerMqtt, ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, BookingStatus, Role
from ruche.server.storage.models import AuditRow, BookingRow
from ruche.server.timeseries.influx import InfluxWriter
from ruche.server.timeseries.lineprotocol import Point
from ruche.server.timeseries.points import points_of, time_ns
from ruche.sim.day import DayPlan, DeskSpot, DoorSpot, Member, SiteLayout, plan_day
from ruche.sim.day_player import play_day

pytestmark = pytest.mark.integration

SEED = 2026
KEY = bytes.fromhex("8c1f0e6a2b4d5f7081a3c5e7f9021436")
MEMBERS = [
    *(Member(f"member-{i}@dash.example", bytes([0x02, 0x14, 0xB3, i])) for i in range(8)),
    Member("revoked@dash.example", bytes([0x02, 0x14, 0xB3, 0xFF]), revoked=True),
]
AGENTS = ("agent-a", "agent-b", "agent-c")
TZ = "Europe/Paris"
HOST = "ruche-1"
DESKS = 10


# --- the day ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    """The filled InfluxDB database and what it must show."""

    site: str
    url: str
    database: str
    plan: DayPlan
    now: datetime
    """When the dashboards are looked at: 14:00 on the simulated day (UTC)."""
    booking_ids: tuple[int, ...]
    """In the plan's order."""
    no_show_ids: frozenset[int]
    pg_url: str

    def local(self, hour: int, minute: int = 0) -> datetime:
        return local(self.plan, hour, minute)


def local(plan: DayPlan, hour: int, minute: int = 0) -> datetime:
    """A local time of the simulated day, in UTC."""
    return datetime.combine(plan.day, dtime(hour, minute), ZoneInfo(TZ)).astimezone(UTC)


def layout_of(site: str) -> SiteLayout:
    return SiteLayout(
        site=site,
        timezone=TZ,
        site_key=KEY,
        doors=(DoorSpot("agent-a", "front"), DoorSpot("agent-a", "back")),
        desks=tuple(DeskSpot("agent-b" if i < 5 else "agent-c", f"desk-{i}") for i in range(10)),
    )


def seed_registry(url: str, layout: SiteLayout, plan: DayPlan) -> list[int]:
    """The site, its agents, doors, desks and members, and the plan's bookings; returns the
    booking ids in the plan's order."""
    run_migrations(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            key = registry.create_site_key(session, layout.site_key)
            site = registry.create_site(session, slug=layout.site, name="Dashboards",
                                        timezone=layout.timezone, key_id=key.id)  # fmt: skip
            session.flush()
            agents = {a: registry.create_agent(session, site_id=site.id, slug=a) for a in AGENTS}
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            for door in layout.doors:
                registry.create_door(session, site_id=site.id, slug=door.door,
                                     agent_id=agents[door.agent].id)  # fmt: skip
            desks = {
                spot.desk: registry.create_desk(session, zone_id=zone.id, slug=spot.desk,
                                                agent_id=agents[spot.agent].id, x=x, y=0)
                for x, spot in enumerate(layout.desks)
            }  # fmt: skip
            plan_row = registry.create_plan(session, name="Resident", site_ids=[site.id],
                                            schedule={"kind": "24/7"})  # fmt: skip
            session.flush()
            since = min(plan.start, datetime.now(UTC)) - timedelta(days=60)
            members = {}
            for m in MEMBERS:
                member = registry.create_member(session, name=m.key.split("@")[0], email=m.key)
                session.flush()
                registry.create_membership(session, member_id=member.id, plan_id=plan_row.id,
                                           starts_at=since)  # fmt: skip
                badge = registry.enrol_badge(session, member.id, key, m.uid)
                session.flush()
                if m.revoked:
                    registry.revoke_badge(session, badge.id)
                members[m.key] = member.id
            session.flush()
            ids = [
                registry.book(session, member_id=members[b.member], site_id=site.id,
                              desk_id=desks[b.desk].id, starts_at=b.start, ends_at=b.end).id
                for b in plan.bookings
            ]  # fmt: skip
            registry.create_api_key(session, role=Role.ADMIN, name="dashboards")
            return ids
    finally:
        engine.dispose()


def play(broker: Any, plan: DayPlan, *, influx_url: str, database: str, pg_url: str,
         spool: Path) -> None:  # fmt: skip
    """The server's workers, the day played to them; returns once InfluxDB holds every
    point and every tap's decision is audited."""
    site = plan.site
    accounts = broker.register(site, list(AGENTS))
    server = broker.server
    settings = ServerSettings(
        database_url=pg_url,
        mqtt=ServerMqtt(
            host=broker.host, port=broker.port, username=server.username, password=server.password
        ),
        influx=ServerInflux(url=influx_url, database=database, spool_dir=spool),
    )
    engine = make_engine(pg_url)
    sessions = make_sessions(engine)
    workers = ServerWorkers.build(settings, sessions)
    try:
        workers.start()
        summary = play_day(plan, host=broker.host, port=broker.port, accounts=accounts.values())
        assert summary.acked == plan.total
        assert workers.influx is not None
        assert workers.influx.flush(timeout=60), workers.influx.stats()
        decisions = select(func.count()).where(
            AuditRow.site == site, AuditRow.kind == AuditKind.DECISION
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sessions() as session:
                if session.scalar(decisions) == len(plan.taps):
                    break
            time.sleep(0.1)
    finally:
        workers.stop()
        engine.dispose()


def chart_bookings(pg_url: str, writer: InfluxWriter, at: datetime) -> None:
    """The occupancy worker's refresh at the day's end, charting the bookings: twice, as
    it runs every 30 seconds (the second writes nothing new)."""
    engine = make_engine(pg_url)
    try:
        worker = OccupancyWorker(make_sessions(engine), points=writer, clock=lambda: at)
        worker.refresh_all()
        worker.refresh_all()
        assert worker.failures == 0
    finally:
        engine.dispose()


def door_extras(site: str, day: Day) -> list[Point]:
    """Two held-open doors and a forced one, two offline decisions: real payloads, the
    points ingestion would write for them."""
    seq = iter(range(900_001, 900_100))
    front = Topic(site, "agent-a", Channel.DOOR_EVENT, "front")
    back = Topic(site, "agent-a", Channel.DOOR_EVENT, "back")
    token = "ab" * 32
    payloads = [
        (front, DoorHeldOpen(seq=next(seq), ts=day.local(9, 15), mono=1.0, open_s=45.0)),
        (back, DoorHeldOpen(seq=next(seq), ts=day.local(9, 40), mono=2.0, open_s=120.5)),
        (front, DoorForced(seq=next(seq), ts=day.local(10, 5), mono=3.0)),
        (front, OfflineDecision(seq=next(seq), ts=day.local(10, 10), mono=4.0, token=token,
                                allowed=True, reason="allowlist", tap_seq=1)),
        (back, OfflineDecision(seq=next(seq), ts=day.local(10, 20), mono=5.0, token=token,
                               allowed=False, reason="not_on_list", tap_seq=2)),
    ]  # fmt: skip
    return [p for topic, payload in payloads for p in points_of(Message(topic, payload))]


def health_extras(site: str, day: Day) -> list[Point]:
    """Two hours of `server_stats` every 10 s from two processes (`ingest-1` restarted an
    hour in: its counters start again), and the agents' statuses of the day."""
    points = []
    start = day.now - timedelta(hours=2)
    restart = day.now - timedelta(hours=1)
    spooling = day.now - timedelta(minutes=30)
    step = timedelta(seconds=10)
    for process, rate in (("main", 5), ("ingest-1", 3)):
        moment, count = start, 0
        while moment <= day.now:
            if process == "ingest-1" and restart <= moment < restart + step:
                count = 0
            elapsed = (moment - start) // step
            fields: dict[str, int | float] = {
                "received": count,
                "stored": count,
                "duplicates": count // 50,
                "bad": 0,
                "spool_points": 500 if spooling <= moment < spooling + timedelta(minutes=1) else 0,
                "influx_write_errors": 3 if process == "main" and elapsed >= 300 else 0,
                "points_written": count,
                "decisions": 2 * elapsed,
                "lag_ms_p50": 12.0,
                "lag_ms_p99": 80.0,
            }
            tags = {"host": HOST, "process": process}
            points.append(Point("server_stats", tags, fields, time_ns(moment)))
            moment += step
            count += rate * 10
    # Statuses come when an agent's status does: agent-a's since midnight, agent-b's
    # reconnect at 09:00, agent-c's radar fault with a backlog, then its last will.
    statuses = [
        ("agent-a", day.local(0, 5), 1, 0, 0),
        ("agent-c", day.local(8, 30), 1, 0, 0),
        ("agent-b", day.local(9), 1, 0, 0),
        ("agent-c", day.now - timedelta(minutes=30), 1, 31, 1),
        ("agent-c", day.now - timedelta(minutes=10), 0, 31, 1),
    ]
    for agent, moment, online, outbox, faults in statuses:
        fields = {"online": online, "outbox_depth": outbox, "faults": faults}
        tags = {"site": site, "agent": agent}
        points.append(Point("agent_status", tags, fields, time_ns(moment)))
    return points


@pytest.fixture(scope="module")
def day(broker: Any, influxd: Any, postgres: Any, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Day]:  # fmt: skip
    """A simulated day in a database of the session's influxd, seen at 14:00."""
    site = f"dash{secrets.token_hex(3)}"
    database = f"dash{secrets.token_hex(4)}"
    pg_name = f"ruche_dash{secrets.token_hex(4)}"
    directory = tmp_path_factory.mktemp("dashboards")
    httpx.post(f"{influxd.url}/query", data={"q": f'CREATE DATABASE "{database}"'},
               timeout=10).raise_for_status()  # fmt: skip
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{pg_name}"')
    pg_url = postgres.url(pg_name)
    try:
        # A week ahead, so the server's own refresh (real clock) judges no booking early.
        plan = plan_day(layout_of(site), MEMBERS, (datetime.now(UTC) + timedelta(days=7)).date(),
                        seed=SEED)  # fmt: skip
        booking_ids = seed_registry(pg_url, layout_of(site), plan)
        play(broker, plan, influx_url=influxd.url, database=database, pg_url=pg_url,
             spool=directory / "spool")  # fmt: skip
        no_shows = frozenset(i for i, b in zip(booking_ids, plan.bookings, strict=True)
                             if b.no_show)  # fmt: skip
        seen = Day(site, influxd.url, database, plan, now=local(plan, 14),
                   booking_ids=tuple(booking_ids), no_show_ids=no_shows,
                   pg_url=pg_url)  # fmt: skip
        with InfluxWriter(influxd.url, database, spool_dir=directory / "charts") as writer:
            chart_bookings(pg_url, writer, plan.end)
            writer.write(door_extras(site, seen))
            writer.write(health_extras(site, seen))
            assert writer.flush(60), writer.stats()
        yield seen
    finally:
        httpx.post(f"{influxd.url}/query", data={"q": f'DROP DATABASE "{database}"'}, timeout=10)
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


# --- running a panel's query -----------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    tags: dict[str, str]
    columns: list[str]
    rows: list[dict[str, Any]]

    def values(self, column: str) -> list[Any]:
        return [row[column] for row in self.rows]


def influxql(day: Day, query: str) -> list[Series]:
    response = httpx.post(f"{day.url}/query", data={"db": day.database, "q": query,
                                                    "epoch": "ms"}, timeout=30)  # fmt: skip
    response.raise_for_status()
    [result] = response.json()["results"]
    assert "error" not in result, f"{result['error']}: {query}"
    return [
        Series(s.get("tags", {}), s["columns"],
               [dict(zip(s["columns"], v, strict=True)) for v in s["values"]])
        for s in result.get("series", [])
    ]  # fmt: skip


def panel_range(dashboard: Dashboard, panel: Panel, now: datetime) -> tuple[datetime, datetime]:
    """The range Grafana queries a panel for: its own (`timeFrom`) or the dashboard's."""
    span = panel.time_from if panel.time_from is not None else dashboard.time_from
    return now - parse_duration(span), now


def run_panel(day: Day, dashboard: Dashboard, panel: Panel, query: Query,
              desk: str | list[str] = ".*") -> list[Series]:  # fmt: skip
    start, end = panel_range(dashboard, panel, day.now)
    # No panel minimum: the data source's (10 s), as Grafana does.
    interval = auto_interval(start, end, minimum=panel.interval or "10s")
    text = expand(query.influxql, start=start, end=end, interval=interval,
                  variables={"site": day.site, "desk": desk, "tz": TZ})  # fmt: skip
    return influxql(day, text)


# --- what each panel must show -----------------------------------------------------------------


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def seated_at(day: Day, moment: datetime) -> int:
    return sum(1 for s in day.plan.sessions if s.start <= moment < s.end)


def plan_events(day: Day, channel: Channel, start: datetime, end: datetime) -> list[Any]:
    return [
        e
        for events in day.plan.events.values()
        for e in events
        if e.topic.channel is channel and start <= e.payload.ts <= end
    ]


def started_bookings(day: Day) -> list[Any]:
    return [b for b in day.plan.bookings if b.start <= day.now]


def occupied_hours(day: Day, desk: str | None = None) -> float:
    """Desk-hours the plan's sessions occupied from the day's start to `now`."""
    total = timedelta()
    for s in day.plan.sessions:
        if desk is None or s.desk == desk:
            total += max(timedelta(), min(s.end, day.now) - s.start)
    return total / timedelta(hours=1)


def one(series: list[Series], columns: list[str]) -> dict[str, Any]:
    """The single row of a single series, with these columns."""
    [only] = series
    assert only.columns == columns
    [row] = only.rows
    return row


def by_tag(series: list[Series], tag: str) -> dict[str, Series]:
    return {s.tags[tag]: s for s in series}


Check = Callable[[list[Series], Day], None]
EXPECT: dict[tuple[str, str, str], Check] = {}


def expect(uid: str, title: str, ref: str = "A") -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        EXPECT[(uid, title, ref)] = check
        return check

    return register


# Live occupancy


@expect("ruche-live", "Seated now")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "seated"])
    assert row["seated"] == seated_at(day, day.now) > 0


@expect("ruche-live", "Desks by state")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "occupied", "vacant"])
    seated = seated_at(day, day.now)
    assert (row["occupied"], row["vacant"]) == (seated, DESKS - seated)


def _taps(day: Day, exits: bool) -> int:
    taps = plan_events(day, Channel.TAP, day.now - timedelta(hours=12), day.now)
    return sum(1 for t in taps if t.payload.reader.endswith("-out") == exits)


@expect("ruche-live", "Door taps in and out", "A")
def _(series: list[Series], day: Day) -> None:
    assert one(series, ["time", "in"])["in"] == _taps(day, exits=False) > 0


@expect("ruche-live", "Door taps in and out", "B")
def _(series: list[Series], day: Day) -> None:
    assert one(series, ["time", "out"])["out"] == _taps(day, exits=True) > 0


@expect("ruche-live", "Seated over time")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "seated"]
    values = only.values("seated")
    assert all(0 <= v <= DESKS for v in values)
    assert max(values) >= seated_at(day, day.now)
    # Night: nobody; the interval is at least the panel's 10 minutes.
    assert values[0] == 0
    times = only.values("time")
    assert min(b - a for a, b in itertools.pairwise(times)) >= 600_000


@expect("ruche-live", "Desks")
def _(series: list[Series], day: Day) -> None:
    assert len(series) == DESKS
    assert {s.tags["desk"] for s in series} == {f"desk-{i}" for i in range(DESKS)}
    assert all(s.columns == ["time", "state"] for s in series)
    states = [one([s], ["time", "state"])["state"] for s in series]
    assert set(states) <= {0, 1}
    assert sum(states) == seated_at(day, day.now)


@expect("ruche-live", "Latest door events")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "door", "kind", "agent", "seq"]
    assert len(only.rows) == 20
    times = only.values("time")
    assert times == sorted(times, reverse=True)
    assert {r["kind"] for r in only.rows} <= {"opened", "closed", "forced", "held_open",
                                              "offline_decision"}  # fmt: skip


# Utilisation


def _shares(values: list[Any]) -> None:
    assert values
    assert all(0.0 <= v <= 1.0 for v in values)


@expect("ruche-utilisation", "Occupancy by desk and hour")
def _(series: list[Series], day: Day) -> None:
    assert set(by_tag(series, "desk")) == {f"desk-{i}" for i in range(DESKS)}
    for s in series:
        assert s.columns == ["time", "occupied"]
        _shares(s.values("occupied"))
        # From the day's first heartbeat to 14:00: an hour a cell.
        assert 13 <= len(s.rows) <= 16  # 14 hours, one more or less on a DST day
    assert any(v > 0 for s in series for v in s.values("occupied"))


@expect("ruche-utilisation", "Share occupied, hourly")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "occupied"]
    _shares(only.values("occupied"))
    assert only.values("occupied")[0] == 0.0  # midnight: nobody


@expect("ruche-utilisation", "Share occupied, daily")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "occupied"])
    assert row["time"] == ms(day.plan.start)  # local midnight, through tz('Europe/Paris')
    share = occupied_hours(day) / (DESKS * (day.now - day.plan.start) / timedelta(hours=1))
    assert row["occupied"] == pytest.approx(share, abs=0.03)


@expect("ruche-utilisation", "Share occupied, weekly")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "occupied"])
    monday: date = day.plan.day - timedelta(days=day.plan.day.weekday())
    assert row["time"] == ms(datetime.combine(monday, datetime.min.time(), ZoneInfo(TZ)))
    _shares([row["occupied"]])


@expect("ruche-utilisation", "Desks ranked")
def _(series: list[Series], day: Day) -> None:
    hours = (day.now - day.plan.start) / timedelta(hours=1)
    assert len(series) == DESKS
    for desk, s in by_tag(series, "desk").items():
        row = one([s], ["time", "occupied"])
        # The mean of reports is the share of time, to within a few percent.
        assert row["occupied"] == pytest.approx(occupied_hours(day, desk) / hours, abs=0.03)


# Bookings


@expect("ruche-bookings", "Bookings")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "bookings", "no-shows"])
    started = started_bookings(day)
    assert row["bookings"] == len(started) > 0
    assert row["no-shows"] == sum(b.no_show for b in started) > 0


@expect("ruche-bookings", "No-show rate")
def _(series: list[Series], day: Day) -> None:
    started = started_bookings(day)
    rate = one(series, ["time", "no-show rate"])["no-show rate"]
    assert rate == pytest.approx(sum(b.no_show for b in started) / len(started))


@expect("ruche-bookings", "Bookings and no-shows per day")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "bookings", "no-shows"]
    rows = {r["time"]: r for r in only.rows}
    assert len(rows) >= 30  # fill(0): a bar for every day of the range
    today = rows.pop(ms(day.plan.start))
    started = started_bookings(day)
    assert (today["bookings"], today["no-shows"]) == (
        len(started), sum(b.no_show for b in started),
    )  # fmt: skip
    assert all(r["bookings"] == r["no-shows"] == 0 for r in rows.values())


def _today(series: list[Series], day: Day, column: str) -> float:
    [only] = series
    assert only.columns == ["time", column]
    rows = {r["time"]: r[column] for r in only.rows}
    today = rows.pop(ms(day.plan.start))
    assert all(v == 0 for v in rows.values())
    return float(today)


@expect("ruche-bookings", "Booked and occupied desk-hours per day", "A")
def _(series: list[Series], day: Day) -> None:
    hours = sum((b.end - b.start) / timedelta(hours=1) for b in started_bookings(day))
    assert _today(series, day, "booked") == pytest.approx(hours)


@expect("ruche-bookings", "Booked and occupied desk-hours per day", "B")
def _(series: list[Series], day: Day) -> None:
    hours = sum((b.end - b.start) / timedelta(hours=1) for b in started_bookings(day)
                if b.no_show)  # fmt: skip
    assert hours > 0
    assert _today(series, day, "no-show") == pytest.approx(hours)


@expect("ruche-bookings", "Booked and occupied desk-hours per day", "C")
def _(series: list[Series], day: Day) -> None:
    assert _today(series, day, "occupied") == pytest.approx(occupied_hours(day), rel=0.05)


@expect("ruche-bookings", "No-shows")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "booking_id", "desk", "minutes"]
    assert {r["booking_id"] for r in only.rows} == day.no_show_ids
    planned = {(ms(b.start), b.desk, (b.end - b.start) / timedelta(minutes=1))
               for b in day.plan.bookings if b.no_show}  # fmt: skip
    assert {(r["time"], r["desk"], r["minutes"]) for r in only.rows} == planned


# Doors and alarms


@expect("ruche-doors", "Alarms")
def _(series: list[Series], day: Day) -> None:
    kinds = by_tag(series, "kind")
    assert {k: one([s], ["time", "alarms"])["alarms"] for k, s in kinds.items()} == {
        "held_open": 2,
        "forced": 1,
    }


@expect("ruche-doors", "Offline decisions")
def _(series: list[Series], day: Day) -> None:
    assert one(series, ["time", "decisions"])["decisions"] == 2


def _per_door(series: list[Series], column: str) -> dict[str, int]:
    doors = by_tag(series, "door")
    for s in doors.values():
        assert s.columns == ["time", column]
        times = s.values("time")
        assert min(b - a for a, b in itertools.pairwise(times)) >= 300_000
    return {door: sum(s.values(column)) for door, s in doors.items()}


@expect("ruche-doors", "Taps per door")
def _(series: list[Series], day: Day) -> None:
    taps = plan_events(day, Channel.TAP, day.now - timedelta(hours=24), day.now)
    expected = {d: sum(1 for t in taps if t.topic.device == d) for d in ("front", "back")}
    assert _per_door(series, "taps") == expected
    assert sum(expected.values()) > 0


@expect("ruche-doors", "Openings per door")
def _(series: list[Series], day: Day) -> None:
    events = plan_events(day, Channel.DOOR_EVENT, day.now - timedelta(hours=24), day.now)
    opened = [e for e in events if e.payload.kind == "opened"]
    expected = {d: sum(1 for e in opened if e.topic.device == d) for d in ("front", "back")}
    assert _per_door(series, "openings") == expected
    assert sum(expected.values()) > 0


@expect("ruche-doors", "Alarm log")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "door", "kind", "open_s", "agent", "seq"]
    got = [(r["time"], r["door"], r["kind"], r["open_s"]) for r in only.rows]
    assert got == [
        (ms(day.local(10, 5)), "front", "forced", None),
        (ms(day.local(9, 40)), "back", "held_open", 120.5),
        (ms(day.local(9, 15)), "front", "held_open", 45.0),
    ]


@expect("ruche-doors", "Offline decision log")
def _(series: list[Series], day: Day) -> None:
    [only] = series
    assert only.columns == ["time", "door", "allowed", "reason", "agent", "seq"]
    got = [(r["door"], r["allowed"], r["reason"]) for r in only.rows]
    assert got == [("back", False, "not_on_list"), ("front", True, "allowlist")]


# System health


@expect("ruche-health", "Agents online")
def _(series: list[Series], day: Day) -> None:
    row = one(series, ["time", "online", "agents"])
    assert (row["online"], row["agents"]) == (2, 3)


@expect("ruche-health", "Agents")
def _(series: list[Series], day: Day) -> None:
    agents = by_tag(series, "agent")
    assert {a: one([s], ["time", "online"])["online"] for a, s in agents.items()} == {
        "agent-a": 1,
        "agent-b": 1,
        "agent-c": 0,
    }


def _per_agent(series: list[Series], column: str, day: Day) -> dict[str, list[Any]]:
    """Each agent's values, one a minute to the range's end, each held until the next
    status (none before its first status in the range: left out here)."""
    agents = by_tag(series, "agent")
    values = {}
    for agent, s in agents.items():
        assert s.columns == ["time", column]
        times = s.values("time")
        assert {b - a for a, b in itertools.pairwise(times)} == {60_000}
        assert times[-1] == ms(day.now)
        held = list(itertools.dropwhile(lambda v: v is None, s.values(column)))
        assert None not in held
        values[agent] = held
    return values


@expect("ruche-health", "Outbox depth")
def _(series: list[Series], day: Day) -> None:
    values = _per_agent(series, "outbox", day)
    # agent-a's only status is from before the range: no line.
    assert set(values) == {"agent-b", "agent-c"}
    assert set(values["agent-b"]) == {0}
    assert values["agent-c"][:3] == [0, 0, 0]
    assert values["agent-c"][-30:] == [31] * 30


@expect("ruche-health", "Agent faults")
def _(series: list[Series], day: Day) -> None:
    values = _per_agent(series, "faults", day)
    assert {a: max(v) for a, v in values.items()} == {"agent-b": 0, "agent-c": 1}


def _per_process(series: list[Series], columns: list[str], day: Day) -> dict[str, Series]:
    """Each process's series, less its last point: the interval under way, which holds
    one `server_stats` point of six, so a rate there reads low (as Grafana draws it)."""
    processes = by_tag(series, "process")
    assert set(processes) == {"main", "ingest-1"}
    for s in processes.values():
        assert s.tags["host"] == HOST
        assert s.columns == ["time", *columns]
        assert len(s.rows) >= 100  # two hours at 1-minute points
        assert s.rows[-1]["time"] == ms(day.now)
    return {p: Series(s.tags, s.columns, s.rows[:-1]) for p, s in processes.items()}


def _all_near(values: list[Any], expected: float) -> None:
    assert values
    assert all(v == pytest.approx(expected) for v in values), [
        v for v in values if v != pytest.approx(expected)
    ]


@expect("ruche-health", "Ingest rate")
def _(series: list[Series], day: Day) -> None:
    processes = _per_process(series, ["received", "stored", "duplicates", "bad"], day)
    for process, rate in (("main", 5), ("ingest-1", 3)):
        rows = processes[process].rows
        # Where ingest-1 restarted, its counters fall: a gap, never a rate below zero.
        gaps = [r["time"] for r in rows if r["received"] is None]
        assert gaps == ([ms(day.now - timedelta(hours=1))] if process == "ingest-1" else [])
        rows = [r for r in rows if r["time"] not in gaps]
        _all_near([r["received"] for r in rows], rate)
        _all_near([r["stored"] for r in rows], rate)
        _all_near([r["bad"] for r in rows], 0)
        assert all(0 <= r["duplicates"] <= rate for r in rows)


@expect("ruche-health", "Ingest lag")
def _(series: list[Series], day: Day) -> None:
    for s in _per_process(series, ["p50", "p99"], day).values():
        assert set(s.values("p50")) == {12.0}
        assert set(s.values("p99")) == {80.0}


@expect("ruche-health", "InfluxDB writes", "A")
def _(series: list[Series], day: Day) -> None:
    processes = _per_process(series, ["points"], day)
    _all_near(processes["main"].values("points"), 5)
    _all_near(processes["ingest-1"].values("points"), 3)


@expect("ruche-health", "InfluxDB writes", "B")
def _(series: list[Series], day: Day) -> None:
    processes = _per_process(series, ["spooled"], day)
    assert max(processes["main"].values("spooled")) == 500
    assert sorted(set(processes["main"].values("spooled"))) == [0, 500]


@expect("ruche-health", "InfluxDB write errors")
def _(series: list[Series], day: Day) -> None:
    processes = _per_process(series, ["errors"], day)
    assert sum(processes["main"].values("errors")) == 3
    assert sum(processes["ingest-1"].values("errors")) == 0


@expect("ruche-health", "Door decisions")
def _(series: list[Series], day: Day) -> None:
    for s in _per_process(series, ["decisions"], day).values():
        _all_near(s.values("decisions"), 0.2)


# --- the tests -----------------------------------------------------------------------------------

TARGETS = [
    (dashboard, panel, chr(ord("A") + i), query)
    for dashboard in DASHBOARDS
    for panel in dashboard.panels
    for i, query in enumerate(panel.queries)
]


class TestPanelQueries:
    """Each panel's query, as Grafana sends it, answers with what the plan says."""

    def test_every_query_has_an_expectation(self):
        assert {(d.uid, p.title, ref) for d, p, ref, _ in TARGETS} == set(EXPECT)

    @pytest.mark.parametrize(
        ("dashboard", "panel", "ref", "query"),
        TARGETS,
        ids=[f"{d.uid}:{p.title}:{ref}" for d, p, ref, _ in TARGETS],
    )
    def test_query(self, day, dashboard, panel, ref, query):
        series = run_panel(day, dashboard, panel, query)
        assert series, f"{dashboard.uid} {panel.title!r} {ref} shows nothing"
        EXPECT[(dashboard.uid, panel.title, ref)](series, day)

    def test_chosen_desks_only(self, day):
        """Choosing desks (a zone) narrows the utilisation panels to them."""
        dashboard = next(d for d in DASHBOARDS if d.uid == "ruche-utilisation")
        panel = dashboard.panels[0]
        series = run_panel(day, dashboard, panel, panel.queries[0], desk=["desk-1", "desk-7"])
        assert set(by_tag(series, "desk")) == {"desk-1", "desk-7"}


class TestVariables:
    """The template variables list what the day wrote."""

    def test_site(self, day):
        [series] = influxql(day, 'SHOW TAG VALUES FROM "presence" WITH KEY = "site"')
        assert {"key": "site", "value": day.site} in series.rows

    def test_desks_of_the_site(self, day):
        dashboard = next(d for d in DASHBOARDS if d.uid == "ruche-utilisation")
        [desk] = [v for v in dashboard.variables if v.name == "desk"]
        assert isinstance(desk, Variable)
        query = desk.query.replace("$site", day.site)
        [series] = influxql(day, query)
        assert {r["value"] for r in series.rows} == {f"desk-{i}" for i in range(DESKS)}


class TestBookingPoints:
    """The occupancy refresh charts each started desk booking once, its status current."""

    def test_one_point_per_booking(self, day):
        [series] = influxql(day, f'SELECT * FROM "booking" WHERE "site" = \'{day.site}\'')  # noqa: S608
        assert len(series.rows) == len(day.plan.bookings)
        assert {r["status"] for r in series.rows if r["booking_id"] in day.no_show_ids} == {
            "no_show"
        }
        assert {r["status"] for r in series.rows if r["booking_id"] not in day.no_show_ids} == {
            "booked"
        }

    def test_written_again_only_when_changed(self, day):
        """Each refresh writes what changed since the last: nothing, then the booking
        released early, alone."""
        batches: list[list[Point]] = []

        class Recorder:
            def write(self, points):
                batches.append(list(points))

        engine = make_engine(day.pg_url)
        sessions = make_sessions(engine)
        kept = next(i for i in day.booking_ids if i not in day.no_show_ids)
        try:
            worker = OccupancyWorker(sessions, points=Recorder(), clock=lambda: day.plan.end)
            worker.refresh_all()
            assert [len(b) for b in batches] == [len(day.plan.bookings)]
            worker.refresh_all()
            assert len(batches) == 1
            with sessions.begin() as session:
                session.execute(
                    update(BookingRow)
                    .where(BookingRow.id == kept)
                    .values(status=BookingStatus.RELEASED)
                )
            worker.refresh_all()
            [point] = batches[1]
            assert (point.fields["booking_id"], point.fields["status"]) == (kept, "released")
            assert point.fields["no_show"] == 0
        finally:
            with sessions.begin() as session:
                session.execute(
                    update(BookingRow)
                    .where(BookingRow.id == kept)
                    .values(status=BookingStatus.BOOKED)
                )
            engine.dispose()
