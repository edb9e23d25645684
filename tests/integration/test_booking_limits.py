"""Booking limits a manager sets per site and per plan (how far ahead, how long, how many
at once), checked on every booking, through the registry and the REST API, on real
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.errors import Invalid
from ruche.server.registry import LimitExceeded, MembershipRequired
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import BookingStatus, Role
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

TOMORROW_9 = (datetime.now(UTC) + timedelta(days=1)).replace(hour=8, minute=0, second=0,
                                                              microsecond=0)  # fmt: skip


@dataclass
class Site:
    sessions: sessionmaker[Session]
    site: int
    other_site: int
    desks: list[int]
    resident: int
    flex: int
    ada: int  # on flex
    bob: int  # on resident
    keys: dict[str, str]


@pytest.fixture
def limited(db_url: str) -> Iterator[Site]:
    run_migrations(db_url)
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    with transaction(sessions) as session:
        site = SiteBuilder(session, "lyon", opening_hours={"kind": "24/7"})
        other = SiteBuilder(session, "nantes")
        desks = [site.desk(f"d{i}") for i in range(6)]
        resident, flex = site.plan("resident"), site.plan("flex", booking_only=True)
        ada = site.member("Ada", "ada@example.org", plan=flex)
        bob = site.member("Bob", "bob@example.org", plan=resident)
        _, manager = registry.create_api_key(session, role=Role.MANAGER, site_id=site.id)
        _, other_manager = registry.create_api_key(session, role=Role.MANAGER, site_id=other.id)
        ids = Site(sessions, site.id, other.id, desks, resident, flex, ada, bob,
                   {"manager": manager, "other": other_manager})  # fmt: skip
    yield ids
    engine.dispose()


def book(s: Site, member: int, desk: int, start: datetime, hours: float = 2) -> int:
    with transaction(s.sessions) as session:
        end = start + timedelta(hours=hours)
        return registry.book(session, member_id=member, site_id=s.site, desk_id=s.desks[desk],
                             starts_at=start, ends_at=end).id  # fmt: skip


def refused(s: Site, member: int, desk: int, start: datetime, hours: float = 2) -> str:
    with pytest.raises(LimitExceeded) as caught:
        book(s, member, desk, start, hours)
    return caught.value.kind


class TestTheSiteRule:
    """One rule for every member of the site."""

    def test_days_ahead(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            registry.set_limits(session, limited.site, plan_id=None, days_ahead=7,
                                max_minutes=None, at_once=None)  # fmt: skip
        book(limited, limited.ada, 0, TOMORROW_9 + timedelta(days=6))
        assert refused(limited, limited.ada, 1, TOMORROW_9 + timedelta(days=8)) == "days_ahead"

    def test_longest_booking(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            registry.set_limits(session, limited.site, plan_id=None, days_ahead=None,
                                max_minutes=240, at_once=None)  # fmt: skip
        book(limited, limited.ada, 0, TOMORROW_9, hours=4)
        assert refused(limited, limited.ada, 1, TOMORROW_9, hours=4.5) == "max_minutes"

    def test_at_once_counts_only_bookings_still_held(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            registry.set_limits(session, limited.site, plan_id=None, days_ahead=None,
                                max_minutes=None, at_once=2)  # fmt: skip
        first = book(limited, limited.ada, 0, TOMORROW_9)
        book(limited, limited.ada, 1, TOMORROW_9 + timedelta(days=1))
        assert refused(limited, limited.ada, 2, TOMORROW_9 + timedelta(days=2)) == "at_once"
        with transaction(limited.sessions) as session:
            registry.set_booking_status(session, first, BookingStatus.CANCELLED)
        book(limited, limited.ada, 2, TOMORROW_9 + timedelta(days=2))

    def test_no_rule_no_limit_and_all_none_removes_it(self, limited: Site) -> None:
        for day in range(3):
            book(limited, limited.ada, day, TOMORROW_9 + timedelta(days=400 + day), hours=30)
        with transaction(limited.sessions) as session:
            registry.set_limits(session, limited.site, plan_id=None, days_ahead=1,
                                max_minutes=None, at_once=None)  # fmt: skip
            assert registry.set_limits(session, limited.site, plan_id=None, days_ahead=None,
                                       max_minutes=None, at_once=None) is None  # fmt: skip
            assert registry.list_limits(session, limited.site) == []


class TestAPlanOverridesTheSite:
    def test_each_member_gets_their_plans_rule(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            registry.set_limits(session, limited.site, plan_id=None, days_ahead=2,
                                max_minutes=None, at_once=None)  # fmt: skip
            registry.set_limits(session, limited.site, plan_id=limited.resident, days_ahead=30,
                                max_minutes=None, at_once=None)  # fmt: skip
        book(limited, limited.bob, 0, TOMORROW_9 + timedelta(days=20))  # resident: 30 days
        assert refused(limited, limited.ada, 1, TOMORROW_9 + timedelta(days=20)) == "days_ahead"

    def test_a_plan_without_the_site_is_refused(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            plan = registry.create_plan(session, name="elsewhere", site_ids=[limited.other_site],
                                        schedule={"kind": "24/7"})  # fmt: skip
            session.flush()
            with pytest.raises(Invalid, match="does not include site"):
                registry.set_limits(session, limited.site, plan_id=plan.id, days_ahead=1,
                                    max_minutes=None, at_once=None)  # fmt: skip


class TestTheApi:
    """Managers set their own site's rules; the answer to a refused booking says why."""

    @pytest.fixture
    def client(self, limited: Site) -> Iterator[TestClient]:
        ports = RecordingPorts()
        app = create_app(sessions=limited.sessions, commands=ports, listener=ports)
        with TestClient(app) as client:
            yield client

    def test_set_list_and_a_refused_booking(self, client: TestClient, limited: Site) -> None:
        auth = {"Authorization": f"Bearer {limited.keys['manager']}"}
        path = f"/sites/{limited.site}/booking-limits"
        done = client.put(path, json={"days_ahead": 3, "at_once": 1}, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json() == {"site_id": limited.site, "plan_id": None, "days_ahead": 3,
                               "max_minutes": None, "at_once": 1}  # fmt: skip
        listed = client.get(path, headers=auth).json()
        assert [row["days_ahead"] for row in listed["data"]] == [3]
        far = TOMORROW_9 + timedelta(days=10)
        body = {
            "member_id": limited.ada,
            "site_id": limited.site,
            "desk_id": limited.desks[0],
            "starts_at": far.isoformat(),
            "ends_at": (far + timedelta(hours=1)).isoformat(),
        }
        answer = client.post("/bookings", headers=auth, json=body)
        assert answer.status_code == 422
        assert "bookings open 3 days ahead" in answer.json()["detail"]

    def test_bad_values_and_other_sites(self, client: TestClient, limited: Site) -> None:
        auth = {"Authorization": f"Bearer {limited.keys['manager']}"}
        path = f"/sites/{limited.site}/booking-limits"
        assert client.put(path, json={"at_once": 0}, headers=auth).status_code == 422
        assert client.put(path, json={"days_ahead": -1}, headers=auth).status_code == 422
        other = {"Authorization": f"Bearer {limited.keys['other']}"}
        assert client.put(path, json={"at_once": 2}, headers=other).status_code == 403


class TestMembershipRequired:
    """Only a member with a plan at the site over part of the booking, or a day pass there
    for the booking's day at the site, may book there."""

    @staticmethod
    def member(s: Site, name: str, *, plan: int | None = None, until: datetime | None = None,
               passes: tuple[date, ...] = ()) -> int:  # fmt: skip
        with transaction(s.sessions) as session:
            member = registry.create_member(session, name=name, email=f"{name}@example.org")
            session.flush()
            if plan is not None:
                registry.create_membership(session, member_id=member.id, plan_id=plan,
                                           starts_at=TOMORROW_9 - timedelta(days=30),
                                           ends_at=until)  # fmt: skip
            for day in passes:
                registry.add_day_pass(session, member_id=member.id, site_id=s.site, day=day)
            return member.id

    @staticmethod
    def refused(s: Site, member: int, start: datetime, hours: float = 2) -> str:
        with pytest.raises(MembershipRequired) as caught:
            book(s, member, 0, start, hours)
        return str(caught.value)

    def test_no_plan_is_refused(self, limited: Site) -> None:
        carol = self.member(limited, "carol")
        assert "no plan at site" in self.refused(limited, carol, TOMORROW_9)

    def test_a_plan_without_the_site_is_refused(self, limited: Site) -> None:
        with transaction(limited.sessions) as session:
            elsewhere = registry.create_plan(session, name="nantes only",
                                             site_ids=[limited.other_site],
                                             schedule={"kind": "24/7"}).id  # fmt: skip
        dan = self.member(limited, "dan", plan=elsewhere)
        self.refused(limited, dan, TOMORROW_9)

    def test_a_plan_ended_before_the_booking_is_refused(self, limited: Site) -> None:
        end = TOMORROW_9 + timedelta(days=1)
        eve = self.member(limited, "eve", plan=limited.resident, until=end)
        self.refused(limited, eve, end)  # the membership's end is not part of it
        self.refused(limited, eve, end + timedelta(days=1))
        book(limited, eve, 1, end - timedelta(hours=1))  # over part of the booking is enough

    def test_a_day_pass_gives_its_day_at_the_site(self, limited: Site) -> None:
        day = TOMORROW_9.date()
        fay = self.member(limited, "fay", passes=(day,))
        book(limited, fay, 0, TOMORROW_9)
        self.refused(limited, fay, TOMORROW_9 + timedelta(days=1))
        # 23:30 UTC is half past midnight the next day in Lyon: that day's pass counts.
        late = TOMORROW_9.replace(hour=23, minute=30)
        self.refused(limited, fay, late, hours=1)
        with transaction(limited.sessions) as session:
            registry.add_day_pass(session, member_id=fay, site_id=limited.site,
                                  day=day + timedelta(days=1))  # fmt: skip
        book(limited, fay, 1, late, hours=1)

    def test_a_day_pass_at_another_site_is_refused(self, limited: Site) -> None:
        gus = self.member(limited, "gus")
        with transaction(limited.sessions) as session:
            registry.add_day_pass(session, member_id=gus, site_id=limited.other_site,
                                  day=TOMORROW_9.date())  # fmt: skip
        self.refused(limited, gus, TOMORROW_9)

    def test_the_api_answers_422_saying_why(self, limited: Site) -> None:
        carol = self.member(limited, "carol")
        with transaction(limited.sessions) as session:
            _, admin = registry.create_api_key(session, role=Role.ADMIN, name="root")
        ports = RecordingPorts()
        body = {
            "member_id": carol,
            "site_id": limited.site,
            "desk_id": limited.desks[0],
            "starts_at": TOMORROW_9.isoformat(),
            "ends_at": (TOMORROW_9 + timedelta(hours=1)).isoformat(),
        }
        app = create_app(sessions=limited.sessions, commands=ports, listener=ports)
        with TestClient(app) as client:
            answer = client.post("/bookings", json=body,
                                 headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
        assert answer.status_code == 422
        assert answer.json()["detail"] == (
            f"member {carol} has no plan at site {limited.site} over that time, nor a day "
            "pass: give them one first"
        )
        assert ports.changed == []
