"""A whole simulated coworking day through the real pipeline, checked against its plan.

`ruche.sim.day` plans a day at a site of ten desks and two doors with nine members
(bookings, badge check-ins, walk-ins, a no-show, a revoked badge); `ruche.sim.day_player`
plays it as three agents to the session's Mosquitto, as fast as acks allow; the server's
own workers (`ServerWorkers`: ingestion, door decisions, ...) store it in PostgreSQL and
InfluxDB. Then the stores must hold what the plan says, exactly:

- InfluxDB one point per event, at the event's time, with its tags;
- `desk_sessions` one row per planned sitting, start and end to the millisecond, with
  the member and how they were attributed;
- `visits` one row per trip through the doors; the no-show bookings released.

The day is a week ahead of today, so the server's own 30-second occupancy refresh (real
clock) never judges its bookings before their events are in; the test's refresh runs at
the end of the simulated day.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ruche.broker import Channel, Unlock, encode
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.passwords import generate_password
from ruche.server import registry
from ruche.server.occupancy.refresh import SiteRefresh, refresh_site
from ruche.server.run import ServerWorkers
from ruche.server.settings import ServerInflux, ServerMqtt, ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, BookingStatus, Role
from ruche.server.storage.models import AuditRow, BookingRow, DeskSessionRow, VisitRow
from ruche.sim.day import (
    MEASUREMENTS,
    DayPlan,
    DeskSpot,
    DoorSpot,
    Member,
    PlannedEvent,
    SiteLayout,
    plan_day,
)
from ruche.sim.day_player import DayProgress, DaySummary, play_day
from ruche.sim.receiver import EventReceiver
from ruche.sim.services.mosquitto import MosquittoProcess

pytestmark = pytest.mark.integration

SEED = 2026
KEY = bytes.fromhex("8c1f0e6a2b4d5f7081a3c5e7f9021436")
MEMBERS = [
    *(Member(f"member-{i}@day.example", bytes([0x01, 0x14, 0xB3, i])) for i in range(8)),
    Member("revoked@day.example", bytes([0x01, 0x14, 0xB3, 0xFF]), revoked=True),
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def layout_of(site: str) -> SiteLayout:
    """Two doors on agent-a; desks 0-4 on agent-b and 5-9 on agent-c."""
    return SiteLayout(
        site=site,
        timezone="Europe/Paris",
        site_key=KEY,
        doors=(DoorSpot("agent-a", "front"), DoorSpot("agent-a", "back")),
        desks=tuple(DeskSpot("agent-b" if i < 5 else "agent-c", f"desk-{i}") for i in range(10)),
    )


def a_week_ahead() -> date:
    return (datetime.now(UTC) + timedelta(days=7)).date()


# --- the registry ---------------------------------------------------------------------------


def seed_registry(url: str, layout: SiteLayout, plan: DayPlan) -> tuple[dict[str, int], list[int]]:
    """The site, its agents, doors, desks and members, and the plan's bookings; returns
    member ids by key and booking ids in the plan's order."""
    run_migrations(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            key = registry.create_site_key(session, layout.site_key)
            site = registry.create_site(session, slug=layout.site, name="A day",
                                        timezone=layout.timezone, key_id=key.id)  # fmt: skip
            session.flush()
            agents = {}
            for slug in layout.agents:
                agents[slug] = registry.create_agent(session, site_id=site.id, slug=slug)
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            for door in layout.doors:
                registry.create_door(session, site_id=site.id, slug=door.door,
                                     agent_id=agents[door.agent].id)  # fmt: skip
            desks = {}
            for x, spot in enumerate(layout.desks):
                agent_id = agents[spot.agent].id
                desks[spot.desk] = registry.create_desk(session, zone_id=zone.id, slug=spot.desk,
                                                        agent_id=agent_id, x=x, y=0)  # fmt: skip
            plan_row = registry.create_plan(session, name="Resident", site_ids=[site.id],
                                            schedule={"kind": "24/7"})  # fmt: skip
            session.flush()
            # Doors decide at the server's own clock, which is before the simulated day.
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
            bookings = [
                registry.book(session, member_id=members[b.member], site_id=site.id,
                              desk_id=desks[b.desk].id, starts_at=b.start, ends_at=b.end).id
                for b in plan.bookings
            ]  # fmt: skip
            registry.create_api_key(session, role=Role.ADMIN, name="day")
            return members, bookings
    finally:
        engine.dispose()


# --- InfluxDB -------------------------------------------------------------------------------


def time_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


TAGS = {
    Channel.PRESENCE: ("desk", "sensor"),
    Channel.DESK_BADGE: ("desk",),
    Channel.TAP: ("door", "reader"),
    Channel.DOOR_EVENT: ("door", "kind"),
}
"""The tags (besides site and agent) docs/occupancy.md gives each measurement."""


def planned_point(agent: str, event: PlannedEvent) -> tuple[object, ...]:
    topic, payload = event
    device = topic.device or ""
    tags = tuple(
        (key, device if key in ("desk", "door") else getattr(payload, key))
        for key in TAGS[topic.channel]
    )
    return (MEASUREMENTS[topic.channel], agent, payload.seq, time_ns(payload.ts), tags)


def stored_points(url: str, database: str, site: str) -> list[tuple[object, ...]]:
    """Every point of the site, as `planned_point` shapes them."""
    measurements = ",".join(f'"{m}"' for m in MEASUREMENTS.values())
    query = f"SELECT * FROM {measurements} WHERE \"site\" = '{site}'"  # noqa: S608 - our own ids
    response = httpx.post(f"{url}/query", data={"db": database, "q": query, "epoch": "ns"},
                          timeout=30)  # fmt: skip
    response.raise_for_status()
    out = []
    for series in response.json()["results"][0].get("series", []):
        channel = next(c for c, m in MEASUREMENTS.items() if m == series["name"])
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            tags = tuple((key, row[key]) for key in TAGS[channel])
            out.append((series["name"], row["agent"], row["seq"], row["time"], tags))
    return out


# --- the day --------------------------------------------------------------------------------


def play_through_server(
    site: Any, influx: Any, pg_url: str, tmp_path: Path, plan: DayPlan
) -> tuple[DaySummary, list[DayProgress]]:
    """The server's workers on `pg_url` and `influx`, the day played to them as fast as acks
    allow; returns once InfluxDB holds every point and every tap's decision is audited."""
    accounts = {**site.agents, **site.broker.register(site.site, ["agent-c"])}
    server = site.broker.server
    settings = ServerSettings(
        database_url=pg_url,
        mqtt=ServerMqtt(
            host=site.broker.host,
            port=site.broker.port,
            username=server.username,
            password=server.password,
        ),
        influx=ServerInflux(url=influx.url, database=influx.database, spool_dir=tmp_path / "spool"),
    )
    engine = make_engine(pg_url)
    sessions = make_sessions(engine)
    workers = ServerWorkers.build(settings, sessions)
    progress: list[DayProgress] = []
    try:
        workers.start()
        summary = play_day(
            plan,
            host=site.broker.host,
            port=site.broker.port,
            accounts=accounts.values(),
            on_progress=progress.append,
            progress_every=0.5,
        )
        assert workers.influx is not None
        assert workers.influx.flush(timeout=60), f"the spool drained: {workers.influx.stats()}"
        decisions = select(func.count()).where(
            AuditRow.site == site.site, AuditRow.kind == AuditKind.DECISION
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
    return summary, progress


def stored_sessions(
    url: str, site: str, now: datetime, key_of: dict[int, str]
) -> tuple[SiteRefresh, list[tuple[object, ...]], list[tuple[object, ...]]]:
    """`refresh_site` at `now`, then the site's desk sessions and visits as tuples."""
    engine = make_engine(url)
    try:
        sessions = make_sessions(engine)
        with transaction(sessions) as session:
            refresh = refresh_site(session, site, now=now)
        with sessions() as session:
            rows = session.scalars(select(DeskSessionRow).where(DeskSessionRow.site == site))
            desk_sessions = sorted(
                (r.agent, r.desk, r.opened_seq, r.start, r.end, key_of.get(r.member_id),
                 r.attributed_by, r.booking_id, r.closed_by, r.suspect)
                for r in rows
            )  # fmt: skip
            visits = sorted(
                (key_of[v.member_id], v.start, v.end, v.entry_agent, v.entry_seq, v.entries,
                 v.closed_by)
                for v in session.scalars(select(VisitRow).where(VisitRow.site == site))
            )  # fmt: skip
    finally:
        engine.dispose()
    return refresh, desk_sessions, visits


def booking_statuses(url: str, ids: list[int]) -> dict[int, BookingStatus]:
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as session:
            rows = session.scalars(select(BookingRow).where(BookingRow.id.in_(ids)))
            return {b.id: b.status for b in rows}
    finally:
        engine.dispose()


class TestSimulatedDay:
    """A planned day lands in InfluxDB point for point and in SQL session for session."""

    def test_day_through_the_real_pipeline(self, site, influx, pg_url, tmp_path):
        started = time.monotonic()
        layout = layout_of(site.site)
        plan = plan_day(layout, MEMBERS, a_week_ahead(), seed=SEED)
        context = f"day {plan.day} seed {SEED}"
        members, booking_ids = seed_registry(pg_url, layout, plan)
        summary, progress = play_through_server(site, influx, pg_url, tmp_path, plan)

        # The player: everything acked, every tap answered as the plan says.
        assert summary.acked == summary.total == plan.total
        assert summary.unanswered == (), context
        assert summary.answers == {
            (t.agent, t.seq): "unlock" if t.granted else "deny" for t in plan.taps
        }, context
        assert progress[-1].acked == plan.total
        assert progress[-1].clock == plan.timeline()[-1][1].payload.ts

        # InfluxDB: point for point, nothing doubled.
        points = stored_points(influx.url, influx.database, site.site)
        expected = {planned_point(a, e) for a, events in plan.events.items() for e in events}
        assert len(points) == len(set(points)) == plan.total, context
        assert set(points) == expected, context
        assert {m: sum(1 for p in points if p[0] == m) for m in plan.points} == plan.points

        # SQL: sessions to the millisecond and attributed; visits; no-shows released.
        key_of = {member_id: key for key, member_id in members.items()}
        refresh, got_sessions, got_visits = stored_sessions(pg_url, site.site, plan.end, key_of)
        assert refresh.sessions == len(plan.sessions)
        assert got_sessions == sorted(
            (s.agent, s.desk, s.opened_seq, s.start, s.end, s.member, s.attributed_by,
             None if s.booking is None else booking_ids[s.booking], "vacant", False)
            for s in plan.sessions
        ), context  # fmt: skip
        assert got_visits == sorted(
            (v.member, v.start, v.end, v.entry_agent, v.entry_seq, 1, "exit") for v in plan.visits
        ), context
        no_shows = {booking_ids[i] for i, b in enumerate(plan.bookings) if b.no_show}
        assert set(refresh.released) == no_shows, context
        assert booking_statuses(pg_url, booking_ids) == {
            i: BookingStatus.NO_SHOW if i in no_shows else BookingStatus.BOOKED for i in booking_ids
        }
        assert time.monotonic() - started < 60, "a simulated day stays under a minute"


class TestReconnect:
    """Events wait in the player's outboxes through a broker killed mid-day, and every one
    arrives once, in order."""

    def test_broker_killed_mid_day(self, tmp_path: Path):
        layout = SiteLayout(
            site="lab",
            timezone="Europe/Paris",
            site_key=KEY,
            doors=(DoorSpot("door-pi", "front"),),
            desks=tuple(DeskSpot("desk-pi", f"desk-{i}") for i in range(4)),
        )
        members = [Member(f"m{i}", bytes([2, i])) for i in range(4)]
        plan = plan_day(layout, members, date(2026, 11, 24), seed=SEED, no_shows=1, walk_ins=1)
        agents = tuple(
            AgentAccount(site="lab", id=agent, password=generate_password())
            for agent in layout.agents
        )
        accounts = Accounts(server=ServerAccount(password=generate_password()), agents=agents)
        broker = MosquittoProcess.generate(tmp_path / "broker", accounts)
        broker.start()
        receiver = EventReceiver(
            host=broker.host,
            port=broker.port,
            username=accounts.server.username,
            password=accounts.server.password.get_secret_value(),
            site="lab",
            answer_taps=lambda topic, tap: Unlock(
                door=topic.device or "", ms=3000, request_id=tap.request_id
            ),
        )

        def kill_and_restart() -> None:
            broker.kill()
            time.sleep(1.0)
            broker.start()

        outage = threading.Thread(target=kill_and_restart)

        def on_progress(progress: DayProgress) -> None:
            if progress.released > plan.total // 3 and outage.ident is None:
                outage.start()

        try:
            receiver.start()
            summary = play_day(plan, host=broker.host, port=broker.port, accounts=agents,
                               speed=86_400 / 5, resend_after=1.0, on_progress=on_progress,
                               progress_every=0.1)  # fmt: skip
        finally:
            if outage.ident is not None:
                outage.join()
            receiver.stop()
            broker.stop()
        assert outage.ident is not None, "the broker was killed mid-day"
        assert summary.reconnects >= len(layout.agents)
        assert summary.acked == plan.total
        stored = sorted(
            (e.topic.agent, e.payload.seq, encode(e.payload)) for e in receiver.snapshot()
        )
        played = [
            (agent, e.payload.seq, encode(e.payload))
            for agent, events in plan.events.items()
            for e in events
        ]
        assert stored == played
        assert receiver.stats.stored == plan.total
