"""Desk sessions in SQL from events that went through the real broker and ingestion."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ruche.broker import DeskBadge, Presence, PresenceState, Topic, badge_token, encode
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.server import registry
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.checkin import check_in
from ruche.server.occupancy.ingest import IngestWorker
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.models import BookingRow, DeskSessionRow, StoredEventRow

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 23, tzinfo=UTC)
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ADA_UID = b"\x04\xaa\x00\x01"


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def seed(url: str, site: str) -> dict[str, int]:
    run_migrations(url)
    with transaction(make_sessions(make_engine(url))) as session:
        key = registry.create_site_key(session, KEY)
        site_row = registry.create_site(session, slug=site, name="Test", timezone="Europe/Paris",
                                        key_id=key.id)  # fmt: skip
        agent = registry.create_agent(session, site_id=site_row.id, slug="agent-a")
        zone = registry.create_zone(session, site_id=site_row.id, name="Open space")
        session.flush()
        desks = {}
        for slug in ("desk-0", "desk-1", "desk-2"):
            desk = registry.create_desk(session, zone_id=zone.id, slug=slug, agent_id=agent.id)
            session.flush()
            desks[slug] = desk.id
        ada = registry.create_member(session, name="Ada", email="ada@example.org")
        bob = registry.create_member(session, name="Bob", email="bob@example.org")
        session.flush()
        registry.enrol_badge(session, ada.id, key, ADA_UID)
        registry.add_day_pass(session, member_id=bob.id, site_id=site_row.id, day=DAY.date())
        booking = registry.book(session, member_id=bob.id, site_id=site_row.id,
                                desk_id=desks["desk-1"], starts_at=at(10, 30),
                                ends_at=at(13))  # fmt: skip
        session.flush()
        return {"ada": ada.id, "bob": bob.id, "booking": booking.id}


def events(site: str) -> list[tuple[str, object]]:
    """A morning at three desks: Ada badges in at desk-0, Bob has desk-1 booked,
    somebody sits at desk-2 unannounced."""

    def presence(desk: str, when: datetime, state: PresenceState, *, heartbeat: bool = False):
        return (str(Topic.presence(site, "agent-a", desk)),
                lambda seq: Presence(seq=seq, ts=when, mono=1.0, state=state,
                                     heartbeat=heartbeat))  # fmt: skip

    occupied, vacant = PresenceState.OCCUPIED, PresenceState.VACANT
    token = badge_token(KEY, ADA_UID)

    def sat(desk: str, start: datetime, end: datetime) -> list[tuple[str, object]]:
        """Occupied at `start`, a heartbeat every 5 minutes (the agent's), vacant at `end`."""
        beats = [start + timedelta(minutes=m) for m in range(5, int((end - start).seconds / 60), 5)]
        return [
            presence(desk, start, occupied),
            *(presence(desk, beat, occupied, heartbeat=True) for beat in beats),
            presence(desk, end, vacant),
        ]

    return [
        *sat("desk-0", at(9), at(10)),
        (
            str(Topic.desk_badge(site, "agent-a", "desk-0")),
            lambda seq: DeskBadge(seq=seq, ts=at(9, 1), mono=1.0, token=token),
        ),
        *sat("desk-1", at(11), at(12, 30)),
        *sat("desk-2", at(14), at(14, 20)),
    ]


class TestDeskSessions:
    """A morning's events become attributed sessions, the same however often recomputed."""

    def test_sessions_from_ingested_events(self, site, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        ids = seed(url, site.site)
        engine = make_engine(url)
        sessions = make_sessions(engine)
        server = site.broker.server
        worker = IngestWorker(sessions, MqttOptions(
            host=site.broker.host, port=site.broker.port, username=server.username,
            password=server.password.get_secret_value()), site=site.site)  # fmt: skip
        account = site.agents["agent-a"]
        outbox = Outbox(tmp_path / "outbox.db")
        options = LinkOptions(
            site=site.site,
            agent="agent-a",
            host=site.broker.host,
            port=site.broker.port,
            username=account.username,
            password=account.password.get_secret_value(),
        )
        link = AgentLink(options, outbox, on_command=lambda c: None, on_allowlist=lambda a: None)
        worker.start()
        link.start()
        try:
            for topic, make in events(site.site):
                outbox.append(lambda seq, t=topic, m=make: (t, encode(m(seq))))  # type: ignore[misc]
            link.wake()
            deadline = time.monotonic() + 30
            while outbox.depth and time.monotonic() < deadline:
                time.sleep(0.05)
            assert outbox.depth == 0
        finally:
            link.stop()
            outbox.close()
            worker.stop()

        def table() -> list[tuple[object, ...]]:
            with sessions() as session:
                rows = session.scalars(select(DeskSessionRow).order_by(DeskSessionRow.desk))
                return [(r.desk, r.start, r.end, r.member_id, r.attributed_by, r.booking_id,
                         r.suspect) for r in rows]  # fmt: skip

        now = at(18)
        with transaction(sessions) as session:
            assert refresh_site(session, site.site, now=now).sessions == 3
        first = table()
        assert first == [
            ("desk-0", at(9), at(10), ids["ada"], "badge", None, False),
            ("desk-1", at(11), at(12, 30), ids["bob"], "booking", ids["booking"], False),
            ("desk-2", at(14), at(14, 20), None, "none", None, False),
        ]
        with transaction(sessions) as session:
            refresh_site(session, site.site, now=now)
        assert table() == first, "recomputing changes nothing"
        engine.dispose()


class TestNoShows:
    """A booking with no presence by its start plus the site's no-show minutes is released."""

    def test_released_kept_and_not_yet_judged(self, tmp_path):
        url = f"sqlite:///{tmp_path / 'ruche.db'}"
        run_migrations(url)
        sessions = make_sessions(make_engine(url))
        with transaction(sessions) as session:
            key = registry.create_site_key(session, KEY)
            site = registry.create_site(session, slug="lab", name="Lab", timezone="Europe/Paris",
                                        key_id=key.id)  # fmt: skip
            agent = registry.create_agent(session, site_id=site.id, slug="agent-a")
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            desks = [registry.create_desk(session, zone_id=zone.id, slug=f"desk-{i}",
                                          agent_id=agent.id) for i in range(3)]  # fmt: skip
            member = registry.create_member(session, name="Ada", email="ada@example.org")
            session.flush()
            registry.add_day_pass(session, member_id=member.id, site_id=site.id, day=DAY.date())
            came, stayed_away, later = (
                registry.book(session, member_id=member.id, site_id=site.id, desk_id=desk.id,
                              starts_at=start, ends_at=start + timedelta(hours=3))
                for desk, start in ((desks[0], at(9)), (desks[1], at(9)), (desks[2], at(17)))
            )  # fmt: skip
            session.flush()
            ids = (came.id, stayed_away.id, later.id)
            arrival = Presence(seq=1, ts=at(9, 5), mono=1.0, state=PresenceState.OCCUPIED)
            # The row ingestion stores for an agent's event.
            stored = StoredEventRow(
                site="lab",
                agent="agent-a",
                seq=1,
                channel="presence",
                device="desk-0",
                kind="occupied",
                ts=arrival.ts,
                received_at=arrival.ts,
                payload=encode(arrival).decode(),
            )
            session.add(stored)
        with transaction(sessions) as session:
            result = refresh_site(session, "lab", now=at(10))
        assert result.released == (ids[1],)
        with sessions() as session:
            statuses = [session.get(BookingRow, i).status.value for i in ids]  # type: ignore[union-attr]
        assert statuses == ["booked", "no_show", "booked"]


class TestLateArrival:
    """A member released as a no-show who turns up while their desk is still free gets
    the booking back; if someone booked the desk meanwhile, it stays theirs."""

    def _site(self, sessions) -> tuple[int, int, int, int]:
        with transaction(sessions) as session:
            key = registry.create_site_key(session, KEY)
            site = registry.create_site(session, slug="late", name="Late", key_id=key.id,
                                        timezone="Europe/Paris")  # fmt: skip
            agent = registry.create_agent(session, site_id=site.id, slug="agent-a")
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            desk = registry.create_desk(session, zone_id=zone.id, slug="desk-0",
                                        agent_id=agent.id)  # fmt: skip
            ada = registry.create_member(session, name="Ada", email="ada@example.org")
            bob = registry.create_member(session, name="Bob", email="bob@example.org")
            session.flush()
            for who in (ada, bob):
                registry.add_day_pass(session, member_id=who.id, site_id=site.id, day=DAY.date())
            booking = registry.book(session, member_id=ada.id, site_id=site.id, desk_id=desk.id,
                                    starts_at=at(9), ends_at=at(12))  # fmt: skip
            return site.id, desk.id, bob.id, booking.id

    def _arrives(self, sessions, minute: int) -> None:
        with transaction(sessions) as session:
            came = Presence(seq=1, ts=at(10, minute), mono=1.0, state=PresenceState.OCCUPIED)
            row = StoredEventRow(site="late", agent="agent-a", seq=1, channel="presence",
                                 device="desk-0", kind="occupied", ts=came.ts,
                                 received_at=came.ts, payload=encode(came).decode())  # fmt: skip
            session.add(row)

    def _status(self, sessions, booking: int) -> str:
        with sessions() as session:
            return session.get(BookingRow, booking).status.value  # type: ignore[union-attr]

    @pytest.fixture
    def sessions(self, db_url):
        run_migrations(db_url)
        engine = make_engine(db_url)
        yield make_sessions(engine)
        engine.dispose()

    def test_the_desk_is_theirs_again(self, sessions):
        _, _, _, booking = self._site(sessions)
        with transaction(sessions) as session:
            assert refresh_site(session, "late", now=at(9, 30)).released == (booking,)
        self._arrives(sessions, 20)
        with transaction(sessions) as session:
            result = refresh_site(session, "late", now=at(10, 30))
        assert result.reclaimed == (booking,)
        assert self._status(sessions, booking) == "booked"
        with transaction(sessions) as session:  # judged once: not released again
            assert refresh_site(session, "late", now=at(11)).released == ()
        assert self._status(sessions, booking) == "booked"

    def test_a_qr_check_in_is_arrival_too(self, sessions):
        _, desk, _, booking = self._site(sessions)
        with transaction(sessions) as session:
            assert refresh_site(session, "late", now=at(9, 30)).released == (booking,)
        with transaction(sessions) as session:
            check_in(session, member_id=session.get(BookingRow, booking).member_id,  # type: ignore[union-attr]
                     desk_id=desk, now=at(10, 5))  # fmt: skip
        with transaction(sessions) as session:
            assert refresh_site(session, "late", now=at(10, 30)).reclaimed == (booking,)
        assert self._status(sessions, booking) == "booked"

    def test_not_when_someone_booked_the_desk_meanwhile(self, sessions):
        site, desk, bob, booking = self._site(sessions)
        with transaction(sessions) as session:
            assert refresh_site(session, "late", now=at(9, 30)).released == (booking,)
            registry.book(session, member_id=bob, site_id=site, desk_id=desk,
                          starts_at=at(10), ends_at=at(12))  # fmt: skip
        self._arrives(sessions, 20)
        with transaction(sessions) as session:
            assert refresh_site(session, "late", now=at(10, 30)).reclaimed == ()
        assert self._status(sessions, booking) == "no_show"
