"""Incremental occupancy refreshes give exactly what full ones give.

Two databases receive the same random day of events in the same deliveries (some
events hours late, as from an agent that was offline, some delivered twice), stored
the way the ingestion stores them (rows plus the site's dirty mark, in one
transaction), and each delivery is followed by a refresh: incremental in one
database, full in the other. After every refresh the desk sessions, visits and
booking statuses of the two must be identical.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    DeskBadge,
    Message,
    OfflineDecision,
    Presence,
    PresenceState,
    Tap,
    Topic,
    badge_token,
    decode,
    encode,
)
from ruche.server import registry
from ruche.server.occupancy.batch import EventBatch
from ruche.server.occupancy.event_store import store_events
from ruche.server.occupancy.limits import REFRESH_NICENESS
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.models import BookingRow, DeskSessionRow, OccupancyDirtyRow, VisitRow

pytestmark = pytest.mark.integration

SITE = "incr"
AGENTS = ("pi-1", "pi-2")
DESKS = {"pi-1": ("d1", "d2", "d3"), "pi-2": ("d4", "d5")}
MEMBERS = ("ana", "bo", "cy", "dee")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
DAY = datetime(2026, 11, 23, 6, tzinfo=UTC)


def token(name: str) -> str:
    return badge_token(KEY, name.encode())


@dataclass(frozen=True)
class Delivery:
    at: datetime
    messages: tuple[tuple[Message, bytes], ...]


def plan(seed: int) -> list[Delivery]:  # noqa: PLR0912 - one generator, read top to bottom
    """A random day: sittings with heartbeats (some with silences past the stale limit),
    desk badges, entries and exits with offline decisions, delivered late now and then."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(AGENTS, 0)
    events: list[tuple[datetime, str, Topic, Any]] = []

    def add(agent: str, topic: Topic, make: Any, ts: datetime) -> int:
        seqs[agent] += 1
        events.append((ts, agent, topic, make(seqs[agent], ts)))
        return seqs[agent]

    for agent, desks in DESKS.items():
        for desk in desks:
            t = DAY + timedelta(minutes=rng.randint(0, 90))
            while t < DAY + timedelta(hours=12):
                start = t
                who = rng.choice(MEMBERS)
                if rng.random() < 0.5:
                    add(agent, Topic.desk_badge(SITE, agent, desk),
                        lambda q, ts, w=who: DeskBadge(seq=q, ts=ts, mono=1.0, token=token(w)),
                        start - timedelta(minutes=rng.randint(0, 12)))  # fmt: skip
                add(agent, Topic.presence(SITE, agent, desk),
                    lambda q, ts: Presence(seq=q, ts=ts, mono=1.0, state=PresenceState.OCCUPIED),
                    start)  # fmt: skip
                t = start
                for _ in range(rng.randint(0, 30)):
                    t += timedelta(minutes=rng.choice((5, 5, 5, 5, 9, 20)))
                    add(agent, Topic.presence(SITE, agent, desk),
                        lambda q, ts: Presence(seq=q, ts=ts, mono=1.0,
                                               state=PresenceState.OCCUPIED, heartbeat=True),
                        t)  # fmt: skip
                if rng.random() < 0.8:
                    t += timedelta(minutes=rng.randint(1, 6))
                    add(agent, Topic.presence(SITE, agent, desk),
                        lambda q, ts: Presence(seq=q, ts=ts, mono=1.0, state=PresenceState.VACANT),
                        t)  # fmt: skip
                t += timedelta(minutes=rng.randint(3, 80))
    for who in MEMBERS:
        t = DAY + timedelta(minutes=rng.randint(0, 120))
        for _ in range(rng.randint(1, 3)):
            for reader in ("front-in", "front-out"):
                if reader == "front-out" and rng.random() < 0.3:
                    break  # left without badging out
                agent = rng.choice(AGENTS)
                tap_seq = add(agent, Topic.tap(SITE, agent, "front"),
                              lambda q, ts, w=who, r=reader: Tap(seq=q, ts=ts, mono=1.0,
                                                                 token=token(w), reader=r,
                                                                 request_id="r"),
                              t)  # fmt: skip
                add(agent, Topic.door_event(SITE, agent, "front"),
                    lambda q, ts, w=who, s=tap_seq: OfflineDecision(
                        seq=q, ts=ts, mono=1.0, token=token(w), allowed=True,
                        reason="allowed", tap_seq=s),
                    t)  # fmt: skip
                t += timedelta(minutes=rng.randint(2, 240))
    # Deliveries: most events a few seconds late, some agents' hours late (offline).
    late = {a: rng.random() < 0.6 for a in AGENTS}
    outage = (DAY + timedelta(hours=3), DAY + timedelta(hours=6))
    arrivals: list[tuple[datetime, Message, bytes]] = []
    for ts, agent, topic, payload in events:
        arrive = ts + timedelta(seconds=rng.randint(1, 30))
        if late[agent] and outage[0] <= ts < outage[1]:
            arrive = outage[1] + timedelta(minutes=rng.randint(0, 20))
        raw = encode(payload)
        message = decode(str(topic), raw)
        arrivals.append((arrive, message, raw))
        if rng.random() < 0.05:  # an outbox resend after a lost ack
            arrivals.append((arrive + timedelta(minutes=2), message, raw))
    arrivals.sort(key=lambda a: a[0])
    deliveries: list[Delivery] = []
    at, i = DAY, 0
    while at < DAY + timedelta(hours=15):
        at += timedelta(minutes=rng.choice((7, 15, 30)))
        batch = []
        while i < len(arrivals) and arrivals[i][0] <= at:
            batch.append(arrivals[i][1:])
            i += 1
        deliveries.append(Delivery(at, tuple(batch)))
    return deliveries


class Database:
    """One database of the pair, seeded alike."""

    def __init__(self, url: str) -> None:
        run_migrations(url)
        self.engine: Engine = make_engine(url)
        self.sessions: sessionmaker[Session] = make_sessions(self.engine)
        with transaction(self.sessions) as session:
            key = registry.create_site_key(session, KEY)
            session.flush()
            site = registry.create_site(session, slug=SITE, name="Incr", timezone="Europe/Paris",
                                        key_id=key.id)  # fmt: skip
            zone = registry.create_zone(session, site_id=site.id, name="open")
            desk_ids = {}
            for agent_slug, desks in DESKS.items():
                agent = registry.create_agent(session, site_id=site.id, slug=agent_slug)
                session.flush()
                for desk in desks:
                    row = registry.create_desk(session, zone_id=zone.id, slug=desk,
                                               agent_id=agent.id)  # fmt: skip
                    session.flush()
                    desk_ids[desk] = row.id
            for i, name in enumerate(MEMBERS):
                member = registry.create_member(session, name=name, email=f"{name}@x.example")
                session.flush()
                registry.enrol_badge(session, member.id, key, name.encode())
                # Bookings for attribution and no-shows: some used, some not.
                desk = list(desk_ids)[i % len(desk_ids)]
                session.add(
                    BookingRow(member_id=member.id, site_id=site.id, desk_id=desk_ids[desk],
                            starts_at=DAY + timedelta(hours=1 + 2 * i),
                            ends_at=DAY + timedelta(hours=4 + 2 * i),
                            created_at=DAY - timedelta(days=1))
                )  # fmt: skip

    def deliver(self, messages: tuple[tuple[Message, bytes], ...], at: datetime) -> None:
        with transaction(self.sessions) as session:
            store_events(session, EventBatch.of((m, at, raw) for m, raw in messages))

    def refresh(self, at: datetime, *, full: bool) -> None:
        with transaction(self.sessions) as session:
            refresh_site(session, SITE, now=at, full=full)

    def state(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with self.sessions() as session:
            desks = sorted(
                (r.agent, r.desk, r.opened_seq, r.start, r.end, r.closed_by, r.suspect,
                 r.member_id, r.attributed_by, r.booking_id)
                for r in session.scalars(select(DeskSessionRow))
            )  # fmt: skip
            visits = sorted(
                (v.member_id, v.entry_agent, v.entry_seq, v.entries, v.start, v.end, v.closed_by)
                for v in session.scalars(select(VisitRow))
            )
            bookings = sorted((b.id, b.status.value) for b in session.scalars(select(BookingRow)))
        return desks, visits, bookings

    def dirty(self) -> int:
        with self.sessions() as session:
            return len(session.scalars(select(OccupancyDirtyRow)).all())


@pytest.fixture
def pair(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[tuple[Database, Database]]:
    if request.param == "postgres":
        urls = [request.getfixturevalue("pg_url")]
        urls.append(urls[0].rsplit("/", 1)[0] + "/" + _second_pg_database(request, urls[0]))
    else:
        urls = [f"sqlite:///{tmp_path / 'incremental.db'}", f"sqlite:///{tmp_path / 'full.db'}"]
    databases = (Database(urls[0]), Database(urls[1]))
    yield databases
    for database in databases:
        database.engine.dispose()


def _second_pg_database(request: pytest.FixtureRequest, first: str) -> str:
    import psycopg  # noqa: PLC0415 - only the PostgreSQL case needs it

    postgres = request.getfixturevalue("postgres")
    name = first.rsplit("/", 1)[1] + "_full"
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return name


class TestIncrementalRefresh:
    """After every delivery and refresh, incremental rows equal full-refresh rows."""

    @pytest.mark.parametrize("pair", ["sqlite"], indirect=True)
    @pytest.mark.parametrize("seed", range(8))
    def test_same_rows_as_a_full_refresh(self, pair: tuple[Database, Database], seed: int) -> None:
        self._play(pair, seed)

    @pytest.mark.parametrize("pair", ["postgres"], indirect=True)
    def test_same_rows_on_postgres(self, pair: tuple[Database, Database]) -> None:
        self._play(pair, 101)

    def _play(self, pair: tuple[Database, Database], seed: int) -> None:
        incremental, full = pair
        compared = 0
        for delivery in plan(seed):
            for database in pair:
                database.deliver(delivery.messages, delivery.at)
            incremental.refresh(delivery.at, full=False)
            full.refresh(delivery.at, full=True)
            assert incremental.dirty() == 0
            assert incremental.state() == full.state(), f"seed {seed}, at {delivery.at}"
            compared += 1
        desks, visits, bookings = full.state()
        # The day is not trivially empty: the comparison covered real rows of each kind.
        assert compared > 20
        assert len(desks) > 10
        assert visits
        assert {status for _, status in bookings} >= {"booked", "no_show"} or len(bookings) == 4


class TestWorkerApart:
    """The worker's refresh in a process of its own writes what an in-process one does."""

    def test_apart_equals_in_process(self, tmp_path: Any) -> None:
        from ruche.server.occupancy.worker import OccupancyWorker  # noqa: PLC0415

        urls = [f"sqlite:///{tmp_path / 'apart.db'}", f"sqlite:///{tmp_path / 'here.db'}"]
        apart_db, here_db = Database(urls[0]), Database(urls[1])
        deliveries = plan(7)
        end = deliveries[-1].at
        for database in (apart_db, here_db):
            for delivery in deliveries:
                database.deliver(delivery.messages, delivery.at)
        apart = OccupancyWorker(apart_db.sessions, apart=urls[0], clock=lambda: end)
        here = OccupancyWorker(here_db.sessions, clock=lambda: end)
        try:
            apart.refresh_all()
            apart.refresh_all()  # the second round is incremental
            here.refresh_all()
            pid = apart.refresh_pid
            assert pid is not None, "the refresh process runs"
            apart_niceness = os.getpriority(os.PRIO_PROCESS, pid)
            apart_policy = os.sched_getscheduler(pid)
        finally:
            apart.stop()
            here.stop()
        assert apart.failures == here.failures == 0
        assert apart_db.state() == here_db.state()
        # It recomputes at a lower CPU priority than the server's ingestion.
        assert apart_niceness == min(os.getpriority(os.PRIO_PROCESS, 0) + REFRESH_NICENESS, 19)
        assert apart_policy == os.SCHED_IDLE
        assert len(apart_db.state()[0]) > 10
        for database in (apart_db, here_db):
            database.engine.dispose()

    def test_a_killed_refresh_process_is_replaced(self, tmp_path: Any) -> None:
        from ruche.server.occupancy.worker import OccupancyWorker  # noqa: PLC0415

        url = f"sqlite:///{tmp_path / 'killed.db'}"
        database = Database(url)
        deliveries = plan(5)
        for delivery in deliveries:
            database.deliver(delivery.messages, delivery.at)
        worker = OccupancyWorker(database.sessions, apart=url, clock=lambda: deliveries[-1].at)
        try:
            worker.refresh_all()
            first = worker.refresh_pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while worker.refresh_pid == first and time.monotonic() < deadline:
                time.sleep(0.05)
            worker.refresh_all()
            assert worker.refresh_pid not in (None, first), "a new process took over"
        finally:
            worker.stop()
        assert worker.failures == 0
        assert len(database.state()[0]) > 5
        database.engine.dispose()


class TestPlanThenApply:
    """Events stored between a refresh's read and its write are not forgotten."""

    def test_a_batch_during_planning_keeps_the_mark(self, tmp_path: Any) -> None:
        from ruche.server.occupancy.refresh import apply_refresh, plan_refresh  # noqa: PLC0415
        from ruche.server.storage.db import READ_ONLY  # noqa: PLC0415

        urls = [f"sqlite:///{tmp_path / 'two.db'}", f"sqlite:///{tmp_path / 'full.db'}"]
        two, full = Database(urls[0]), Database(urls[1])
        deliveries = [d for d in plan(3) if d.messages]
        first, late = deliveries[: len(deliveries) // 2], deliveries[len(deliveries) // 2 :]
        for database in (two, full):
            for delivery in first:
                database.deliver(delivery.messages, delivery.at)
        at = first[-1].at
        with two.sessions() as session:
            session.connection(execution_options=READ_ONLY)
            planned = plan_refresh(session, SITE, now=at, full=False)
        # A batch commits while the plan is being worked out (on SQLite: no lock held).
        two.deliver(late[0].messages, late[0].at)
        with transaction(two.sessions) as session:
            apply_refresh(session, planned)
        assert two.dirty() == 1  # the new batch's mark survived the write
        full.deliver(late[0].messages, late[0].at)
        two.refresh(late[0].at, full=False)
        full.refresh(late[0].at, full=True)
        assert two.dirty() == 0
        assert two.state() == full.state()
        for database in (two, full):
            database.engine.dispose()


@pytest.fixture
def database(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[Database]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'load.db'}"
    db = Database(url)
    yield db
    db.engine.dispose()


class TestLoadDeskEvents:
    """The refresh reads presence from the events' columns (and the database's own JSON
    reading of `heartbeat`): the same desk events as decoding every stored payload."""

    @pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
    def test_same_events_as_decoding_the_payloads(self, database: Database) -> None:
        from ruche.server.occupancy.loaders import load_desk_events  # noqa: PLC0415
        from ruche.server.occupancy.sessions import DeskEvent  # noqa: PLC0415

        messages = [m for delivery in plan(5) for m in delivery.messages]
        # The wire as other agents may write it: spaces, key order, an explicit false.
        seq = 10_000
        for heartbeat in ("true", "false", None):
            for state in ("occupied", "vacant"):
                seq += 1
                flag = "" if heartbeat is None else f', "heartbeat" :  {heartbeat}'
                raw = (f'{{ "state": "{state}"{flag}, "mono": 1.0, "seq": {seq},'
                       f' "ts": "2026-11-23T09:00:00+00:00" }}').encode()  # fmt: skip
                topic = str(Topic.presence(SITE, "pi-2", "d5"))
                messages.append((decode(topic, raw), raw))
        database.deliver(tuple(messages), DAY)
        expected = set()
        for message, _ in messages:
            payload, topic = message.payload, message.topic
            assert topic.device is not None
            if isinstance(payload, Presence):
                expected.add(DeskEvent.from_presence(SITE, topic.agent, topic.device, payload))
            elif isinstance(payload, DeskBadge):
                expected.add(DeskEvent.from_badge(SITE, topic.agent, topic.device, payload))
        with database.sessions() as session:
            loaded = load_desk_events(session, SITE)
        assert len(loaded) == len(set(loaded))
        assert set(loaded) == expected
        kinds = {event.kind.value for event in loaded}
        assert kinds == {"occupied", "vacant", "heartbeat-occupied", "heartbeat-vacant", "badge"}
