"""The registry and bookings on real SQLite and PostgreSQL databases, migrated to head."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import badge_token
from ruche.server import registry
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import BadgeStatus, BookingStatus, Role
from ruche.server.storage.models import (
    BadgeRow,
    Base,
    BookingRow,
    DayPassRow,
    DeskRow,
    DoorRow,
    MemberRow,
    PlanRow,
    SiteRow,
)

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
UID = bytes.fromhex("04a224b2c35e80")


@pytest.fixture
def sessions(db_url):
    run_migrations(db_url)
    engine = make_engine(db_url)
    yield make_sessions(engine)
    engine.dispose()


def _world(sessions: sessionmaker[Session], *, plan: bool = False) -> dict[str, int]:
    """A site with a zone, two desks, an agent, a door and two active members; with
    `plan`, both on an open-ended plan at the site from well before T0, so they may book."""
    with transaction(sessions) as s:
        site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
        zone = registry.create_zone(s, site_id=site.id, name="open space")
        agent = registry.create_agent(s, site_id=site.id, slug="pi-1")
        d1 = registry.create_desk(s, zone_id=zone.id, slug="d1", agent_id=agent.id, x=1, y=2)
        d2 = registry.create_desk(s, zone_id=zone.id, slug="d2")
        door = registry.create_door(s, site_id=site.id, slug="front", agent_id=agent.id)
        member = registry.create_member(s, name="Ada", email="Ada@Example.org")
        other = registry.create_member(s, name="Grace", email="grace@example.org")
        if plan:
            everywhere = registry.create_plan(s, name="Resident", site_ids=[site.id],
                                              schedule={"kind": "24/7"})  # fmt: skip
            for who in (member, other):
                registry.create_membership(s, member_id=who.id, plan_id=everywhere.id,
                                           starts_at=T0 - timedelta(days=365))  # fmt: skip
        return {
            "site": site.id,
            "zone": zone.id,
            "agent": agent.id,
            "d1": d1.id,
            "d2": d2.id,
            "door": door.id,
            "member": member.id,
            "other": other.id,
        }


class TestMigrations:
    """Migrating to head gives exactly the models' schema, and again is a no-op."""

    def test_no_autogenerate_diff(self, db_url):
        run_migrations(db_url)
        run_migrations(db_url)
        engine = make_engine(db_url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                assert compare_metadata(context, Base.metadata) == []
        finally:
            engine.dispose()


class TestSites:
    """Sites round-trip, validate their timezone and keep their holidays."""

    def test_round_trip(self, sessions):
        with transaction(sessions) as s:
            site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
            registry.add_holiday(s, site.id, date(2025, 12, 25), "Noël")
            site_id = site.id
        with transaction(sessions) as s:
            site = registry.get_site_by_slug(s, "lyon")
            assert (site.id, site.name, site.timezone) == (site_id, "Lyon", "Europe/Paris")
            assert site.no_show_minutes == 15
            assert [(h.day, h.name) for h in site.holidays] == [(date(2025, 12, 25), "Noël")]
            registry.update_site(s, site_id, name="Lyon Part-Dieu", timezone="America/Montreal")
        with transaction(sessions) as s:
            site = registry.get(s, SiteRow, site_id)
            assert (site.name, site.timezone) == ("Lyon Part-Dieu", "America/Montreal")
            registry.remove_holiday(s, site_id, date(2025, 12, 25))
            assert registry.list_holidays(s, site_id) == []
            registry.delete(s, SiteRow, site_id)
        with transaction(sessions) as s:
            assert registry.list_sites(s) == []

    def test_refusals(self, sessions):
        with transaction(sessions) as s:
            site = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
            with pytest.raises(Conflict):
                registry.create_site(s, slug="lyon", name="again", timezone="UTC")
            with pytest.raises(Invalid, match="timezone"):
                registry.create_site(s, slug="mars", name="Mars", timezone="Mars/Olympus")
            with pytest.raises(Invalid, match="timezone"):
                registry.update_site(s, site.id, timezone="Europe/Nowhere")
            with pytest.raises(Invalid, match="not a valid id"):
                registry.create_site(s, slug="a/b", name="x", timezone="UTC")
            registry.add_holiday(s, site.id, date(2025, 1, 1))
            with pytest.raises(Conflict):
                registry.add_holiday(s, site.id, date(2025, 1, 1))
            with pytest.raises(NotFound):
                registry.get_site_by_slug(s, "paris")
            # The transaction is still usable after the refusals.
            assert [x.slug for x in registry.list_sites(s)] == ["lyon"]

    def test_site_in_use_is_not_deleted(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s, pytest.raises(Conflict, match="still in use"):
            registry.delete(s, SiteRow, ids["site"])


class TestPlacesAndPeople:
    """Zones, agents, desks, doors, members, plans, memberships and day passes round-trip."""

    def test_round_trip(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s:
            desk = registry.get(s, DeskRow, ids["d1"])
            assert (desk.site_id, desk.zone_id, desk.agent_id, desk.x, desk.y) == (
                ids["site"],
                ids["zone"],
                ids["agent"],
                1,
                2,
            )
            assert [d.slug for d in registry.list_desks(s, site_id=ids["site"])] == ["d1", "d2"]
            assert registry.get_door_by_slug(s, ids["site"], "front").agent_id == ids["agent"]
            assert registry.get_agent_by_slug(s, ids["site"], "pi-1").id == ids["agent"]
            assert registry.get(s, MemberRow, ids["member"]).email == "ada@example.org"
            registry.update_desk(s, ids["d1"], x=None, y=None, agent_id=None)
            registry.update_door(s, ids["door"], anti_passback=True, locked_down=True)
            registry.update_member(s, ids["other"], active=False)
            plan = registry.create_plan(
                s,
                name="Weekdays",
                site_ids=[ids["site"]],
                schedule={"kind": "custom", "days": {"fri": ["13:00-19:00", "08:00-12:00"]}},
                booking_only=True,
            )
            registry.create_membership(
                s, member_id=ids["member"], plan_id=plan.id, starts_at=T0.astimezone(PARIS)
            )
            registry.add_day_pass(
                s, member_id=ids["other"], site_id=ids["site"], day=date(2025, 3, 11)
            )
            plan_id = plan.id
        with transaction(sessions) as s:
            desk = registry.get(s, DeskRow, ids["d1"])
            assert (desk.agent_id, desk.x, desk.y) == (None, None, None)
            door = registry.get(s, DoorRow, ids["door"])
            assert door.anti_passback
            assert door.locked_down
            assert [m.name for m in registry.list_members(s, active=True)] == ["Ada"]
            plan = registry.get(s, PlanRow, plan_id)
            assert plan.schedule == {
                "kind": "custom",
                "days": {"fri": ["08:00-12:00", "13:00-19:00"]},
            }
            assert [x.id for x in plan.sites] == [ids["site"]]
            assert plan.booking_only
            (membership,) = registry.list_memberships(s, member_id=ids["member"])
            assert membership.starts_at == T0
            assert membership.starts_at.tzinfo is UTC
            assert membership.ends_at is None
            (day_pass,) = registry.list_day_passes(s, member_id=ids["other"])
            assert day_pass.day == date(2025, 3, 11)
            registry.update_plan(s, plan_id, schedule={"kind": "24/7"}, site_ids=[])
        with transaction(sessions) as s:
            plan = registry.get(s, PlanRow, plan_id)
            assert (plan.schedule, plan.sites) == ({"kind": "24/7"}, [])

    def test_refusals(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s:
            with pytest.raises(Conflict):
                registry.create_desk(s, zone_id=ids["zone"], slug="d1")
            with pytest.raises(Conflict):
                registry.create_member(s, name="Ada twin", email="ADA@example.org")
            with pytest.raises(Invalid):
                registry.create_member(s, name="No mail", email="not-an-email")
            with pytest.raises(NotFound):
                registry.create_zone(s, site_id=9999, name="nowhere")
            other = registry.create_site(s, slug="paris", name="Paris", timezone="Europe/Paris")
            with pytest.raises(Invalid, match="another site"):
                registry.create_door(s, site_id=other.id, slug="x", agent_id=ids["agent"])
            for schedule in (
                {"kind": "weekends"},
                {"kind": "custom", "days": {"mon": ["18:00-08:00"]}},
                {"kind": "custom", "days": {"mon": ["08:00-12:00", "11:00-13:00"]}},
                {"kind": "custom", "days": {"lun": ["08:00-12:00"]}},
                {"kind": "custom", "days": {"mon": ["8h-12h"]}},
            ):
                with pytest.raises(Invalid):
                    registry.create_plan(s, name="bad", site_ids=[], schedule=schedule)
            # The day pass lets Ada book; removed, it leaves the booking alone in use of her.
            day_pass = registry.add_day_pass(
                s, member_id=ids["member"], site_id=ids["site"], day=date(2025, 3, 10)
            )
            registry.book(
                s,
                member_id=ids["member"],
                site_id=ids["site"],
                desk_id=ids["d1"],
                starts_at=T0,
                ends_at=T0 + timedelta(hours=1),
            )
            registry.delete(s, DayPassRow, day_pass.id)
            with pytest.raises(Conflict, match="still in use"):
                registry.delete(s, MemberRow, ids["member"])


class TestBadges:
    """A badge is stored only as the keyed HMAC of its UID, once per key."""

    def test_token_is_the_hmac_never_the_uid(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s:
            key = registry.site_key_of(s, ids["site"])
            badge = registry.enrol_badge(s, ids["member"], key, UID, label="blue fob")
            badge_id, site_key = badge.id, key.key
        with transaction(sessions) as s:
            badge = registry.get_badge_by_token(s, badge_token(site_key, UID))
            assert badge.id == badge_id
            assert badge.status is BadgeStatus.ACTIVE
            assert badge.token != UID.hex()
            assert UID.hex() not in badge.token
            assert UID.hex().upper() not in badge.token.upper()
            # Nothing in the badges table holds the UID, in any column.
            for row in s.execute(text("SELECT * FROM badges")):
                for value in row:
                    assert UID.hex() not in str(value).lower()
                    assert UID not in (value if isinstance(value, bytes) else b"")

    def test_duplicates_and_revocation(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s:
            key = registry.site_key_of(s, ids["site"])
            badge = registry.enrol_badge(s, ids["member"], key, UID)
            with pytest.raises(Conflict, match="already enrolled"):
                registry.enrol_badge(s, ids["other"], key, UID)
            with pytest.raises(Invalid):
                registry.enrol_badge(s, ids["member"], key, b"")
            # Another key makes another token for the same card.
            elsewhere = registry.create_site(s, slug="oslo", name="Oslo", timezone="Europe/Oslo")
            registry.enrol_badge(s, ids["member"], registry.site_key_of(s, elsewhere.id), UID)
            registry.set_badge_status(s, badge.id, BadgeStatus.DISABLED)
            registry.set_badge_status(s, badge.id, BadgeStatus.ACTIVE)
            registry.revoke_badge(s, badge.id)
            badge_id = badge.id
        with transaction(sessions) as s:
            assert registry.get(s, BadgeRow, badge_id).status is BadgeStatus.REVOKED
            with pytest.raises(Conflict, match="revoked"):
                registry.set_badge_status(s, badge_id, BadgeStatus.ACTIVE)
            assert len(registry.list_badges(s, member_id=ids["member"])) == 2


class TestBookings:
    """Active bookings of one desk or room never overlap; touching ones and grace are fine."""

    def _book(self, s, ids, start, hours=1.0, **kwargs):
        kwargs.setdefault("desk_id", ids["d1"])
        return registry.book(
            s,
            member_id=kwargs.pop("member_id", ids["member"]),
            site_id=ids["site"],
            starts_at=start,
            ends_at=start + timedelta(hours=hours),
            **kwargs,
        )

    def test_overlap_refused_adjacent_allowed(self, sessions):
        ids = _world(sessions, plan=True)
        with transaction(sessions) as s:
            first = self._book(s, ids, T0, 2, grace_before=15, grace_after=15)
        with transaction(sessions) as s:
            for start, hours in (
                (T0, 2),
                (T0 + timedelta(hours=1), 2),
                (T0 - timedelta(minutes=30), 1),
                (T0 + timedelta(minutes=30), 0.5),
            ):
                with pytest.raises(Conflict, match="already booked"):
                    self._book(s, ids, start, hours, member_id=ids["other"])
            before = self._book(s, ids, T0 - timedelta(hours=1), 1, grace_after=30)
            after = self._book(s, ids, T0 + timedelta(hours=2), 1, grace_before=30)
            elsewhere = self._book(s, ids, T0, 2, desk_id=ids["d2"])
            assert before.ends_at == first.starts_at
            assert after.starts_at == first.ends_at
            assert elsewhere.status is BookingStatus.BOOKED
        with transaction(sessions) as s:
            registry.cancel_booking(s, first.id)
            again = self._book(s, ids, T0, 2, member_id=ids["other"])
            with pytest.raises(Conflict, match="already cancelled"):
                registry.cancel_booking(s, first.id)
        with transaction(sessions) as s:
            mine = registry.list_bookings(s, member_id=ids["member"], status=BookingStatus.BOOKED)
            assert [b.id for b in mine] == [before.id, elsewhere.id, after.id]
            window = registry.list_bookings(
                s, desk_id=ids["d1"], since=T0, until=T0 + timedelta(hours=1)
            )
            assert [b.id for b in window] == [first.id, again.id]

    def test_rooms(self, sessions):
        ids = _world(sessions, plan=True)
        with transaction(sessions) as s:
            room = registry.create_zone(s, site_id=ids["site"], name="Salle Curie")
            self._book(s, ids, T0, 1, desk_id=None, zone_id=room.id)
            with pytest.raises(Conflict):
                self._book(s, ids, T0, 1, desk_id=None, zone_id=room.id, member_id=ids["other"])

    def test_refusals(self, sessions):
        ids = _world(sessions, plan=True)
        with transaction(sessions) as s:
            with pytest.raises(Invalid, match="either"):
                self._book(s, ids, T0, 1, zone_id=ids["zone"])
            with pytest.raises(Invalid, match="end after"):
                self._book(s, ids, T0, -1)
            with pytest.raises(Invalid, match="timezone"):
                self._book(s, ids, T0.replace(tzinfo=None), 1)
            with pytest.raises(Invalid, match="grace"):
                self._book(s, ids, T0, 1, grace_before=-5)
            with pytest.raises(NotFound):
                self._book(s, ids, T0, 1, desk_id=9999)
            registry.update_member(s, ids["other"], active=False)
            with pytest.raises(Invalid, match="inactive"):
                self._book(s, ids, T0, 1, member_id=ids["other"])
            paris = registry.create_site(s, slug="paris", name="Paris", timezone="Europe/Paris")
            registry.add_day_pass(s, member_id=ids["member"], site_id=paris.id, day=T0.date())
            with pytest.raises(Invalid, match="not at site"):
                registry.book(
                    s,
                    member_id=ids["member"],
                    site_id=paris.id,
                    desk_id=ids["d1"],
                    starts_at=T0,
                    ends_at=T0 + timedelta(hours=1),
                )

    def test_a_zone_and_its_desks_never_overlap(self, sessions):
        ids = _world(sessions, plan=True)
        with transaction(sessions) as s:
            self._book(s, ids, T0, 2)  # desk d1, in the zone
            with pytest.raises(Conflict, match="a desk of zone"):
                self._book(s, ids, T0 + timedelta(hours=1), 2, desk_id=None, zone_id=ids["zone"])
            self._book(s, ids, T0 + timedelta(hours=2), 1, desk_id=None, zone_id=ids["zone"])
            with pytest.raises(Conflict, match="booked whole"):
                self._book(s, ids, T0 + timedelta(hours=2), 1, desk_id=ids["d2"],
                           member_id=ids["other"])  # fmt: skip

    def test_a_desk_and_its_zone_booked_at_once_one_wins(self, sessions):
        ids = _world(sessions, plan=True)
        for n in range(4):
            start = T0 + timedelta(days=n + 1)
            barrier = threading.Barrier(2)
            outcomes: list[str] = []

            def attempt(kind: str, start: datetime = start, barrier=barrier, outcomes=outcomes):
                where = {"desk_id": ids["d1"]} if kind == "desk" else {
                    "desk_id": None, "zone_id": ids["zone"]}  # fmt: skip
                barrier.wait()
                try:
                    with transaction(sessions) as s:
                        self._book(s, ids, start, 1, **where)
                    outcomes.append(kind)
                except Conflict:
                    outcomes.append("conflict")

            workers = [threading.Thread(target=attempt, args=(k,)) for k in ("desk", "zone")]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(30)
            assert sorted(outcomes) in (["conflict", "desk"], ["conflict", "zone"]), outcomes

    def test_concurrent_overlapping_bookings_one_wins(self, sessions):
        ids = _world(sessions, plan=True)
        rounds, threads = 5, 4
        for n in range(rounds):
            outcomes = _race(sessions, ids, T0 + timedelta(days=n + 1), threads)
            assert sorted(outcomes) == ["conflict"] * (threads - 1) + ["won"]
        with transaction(sessions) as s:
            assert len(registry.list_bookings(s, desk_id=ids["d1"])) == rounds


def _race(sessions, ids, start: datetime, threads: int) -> list[str]:
    """`threads` overlapping bookings of one desk, released together; what each got."""
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            with transaction(sessions) as s:
                registry.book(
                    s,
                    member_id=ids["member"],
                    site_id=ids["site"],
                    desk_id=ids["d1"],
                    starts_at=start + timedelta(minutes=i),
                    ends_at=start + timedelta(hours=1),
                )
            result = "won"
        except Conflict:
            result = "conflict"
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return outcomes


class TestTimezones:
    """Aware datetimes come back aware, in UTC, as the same instant; naive ones are refused."""

    def test_round_trip_across_dst(self, sessions):
        ids = _world(sessions, plan=True)
        # 2025-03-30 02:00 Paris: clocks jump to 03:00. Book 01:30 CET to 03:30 CEST (1 h).
        start = datetime(2025, 3, 30, 1, 30, tzinfo=PARIS)
        end = datetime(2025, 3, 30, 3, 30, tzinfo=PARIS)
        with transaction(sessions) as s:
            booking = registry.book(
                s,
                member_id=ids["member"],
                site_id=ids["site"],
                desk_id=ids["d1"],
                starts_at=start,
                ends_at=end,
            )
            booking_id = booking.id
        with transaction(sessions) as s:
            s.expire_all()
            stored = registry.get(s, BookingRow, booking_id)
            assert stored.starts_at == start
            assert stored.ends_at == end
            assert stored.starts_at.tzinfo is UTC
            assert stored.ends_at.tzinfo is UTC
            assert stored.ends_at - stored.starts_at == timedelta(hours=1)
            assert stored.starts_at == datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
            assert stored.created_at.tzinfo is UTC
            # Comparisons happen in SQL too, as instants.
            found = s.scalars(
                select(BookingRow.id).where(
                    BookingRow.starts_at < datetime(2025, 3, 30, 2, 0, tzinfo=UTC)
                )
            ).all()
            assert found == [booking_id]

    def test_naive_refused(self, sessions):
        ids = _world(sessions)
        naive = datetime(2025, 1, 1)  # noqa: DTZ001 - the point of the test
        with transaction(sessions) as s:
            plan = registry.create_plan(s, name="p", site_ids=[], schedule={"kind": "24/7"})
            with pytest.raises(Invalid, match="timezone"):
                registry.create_membership(
                    s, member_id=ids["member"], plan_id=plan.id, starts_at=naive
                )

    def test_model_refuses_naive(self, sessions):
        ids = _world(sessions)
        naive = datetime(2025, 1, 1)  # noqa: DTZ001 - the point of the test
        row = BookingRow(
            member_id=ids["member"],
            site_id=ids["site"],
            desk_id=ids["d1"],
            starts_at=naive,
            ends_at=T0,
            created_at=T0,
        )
        with transaction(sessions) as s:
            s.add(row)
            with pytest.raises(StatementError) as caught:
                s.flush()
            assert isinstance(caught.value.orig, Invalid)
            s.rollback()


class TestApiKeys:
    """API keys are kept as a prefix and a hash; the secret is shown once and checked."""

    def test_create_authenticate_revoke(self, sessions):
        ids = _world(sessions)
        with transaction(sessions) as s:
            admin, admin_secret = registry.create_api_key(s, role=Role.ADMIN, name="root")
            manager, _ = registry.create_api_key(s, role=Role.MANAGER, site_id=ids["site"])
            member, _ = registry.create_api_key(s, role=Role.MEMBER, member_id=ids["member"])
            with pytest.raises(Invalid):
                registry.create_api_key(s, role=Role.MANAGER)
            with pytest.raises(Invalid):
                registry.create_api_key(s, role=Role.ADMIN, member_id=ids["member"])
            assert admin_secret not in (admin.hash, admin.prefix)
        with transaction(sessions) as s:
            found = registry.authenticate_api_key(s, admin_secret)
            assert found is not None
            assert found.id == admin.id
            assert found.role is Role.ADMIN
            assert registry.authenticate_api_key(s, admin_secret + "x") is None
            assert registry.authenticate_api_key(s, "nonsense") is None
            registry.revoke_api_key(s, admin.id)
            assert registry.authenticate_api_key(s, admin_secret) is None
            for value in s.execute(text("SELECT * FROM api_keys")).scalars():
                assert admin_secret not in str(value)
            assert {manager.site_id, member.member_id} == {ids["site"], ids["member"]}
