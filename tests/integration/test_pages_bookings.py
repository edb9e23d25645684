"""The manager's bookings pages over real HTTP (TestClient) on SQLite and PostgreSQL.

Lyon is open 24/7 (so the tests run at any hour) with zone "Open space" (desks d1, d2)
and room "Board"; Paris keeps business hours. Ada and Bob are on a Lyon plan, Cleo has
none; Eve is on a Paris plan. Lou manages Lyon, Pia Paris, Root is an admin; Ada signs
in as a member too.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.i18n import Formats
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import BookingStatus, Role
from ruche.server.storage.models import BookingRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import ALWAYS, SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
PARIS = ZoneInfo("Europe/Paris")
DAY = datetime.now(PARIS).date() + timedelta(days=7)
"""A day ahead, the same weekday as today."""
WEDNESDAY = DAY + timedelta(days=(2 - DAY.weekday()) % 7)
"""A working day at Paris, whatever today is."""


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS).astimezone(UTC)


@dataclass
class World:
    app: FastAPI
    sessions: sessionmaker[Session]
    ports: RecordingPorts
    ids: dict[str, int]

    def browser(self, who: str | None = None, language: str = "en") -> TestClient:
        client = TestClient(self.app, follow_redirects=False,
                            headers={"Accept-Language": language})  # fmt: skip
        client.get("/healthz")
        if who is not None:
            answer = client.post("/signin", data={"email": who, "password": PASSWORD,
                                                  "csrf_token": self.token(client)})  # fmt: skip
            assert answer.status_code == 303, answer.text
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def post(self, client: TestClient, path: str, **form: Any) -> Any:
        return client.post(path, data={"csrf_token": self.token(client), **form})

    def booking(self, booking_id: int) -> BookingRow:
        with self.sessions() as session:
            row = session.get(BookingRow, booking_id)
            assert row is not None
            session.expunge(row)
            return row

    def bookings(self) -> list[BookingRow]:
        with self.sessions() as session:
            rows = list(session.scalars(select(BookingRow).order_by(BookingRow.id)))
            session.expunge_all()
            return rows


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = SiteBuilder(s, "lyon", name="Lyon", opening_hours=ALWAYS)
        lyon.desk("d1", zone="Open space")
        lyon.desk("d2", zone="Open space")
        lyon.zone("Board")
        resident = lyon.plan("resident")
        ada = lyon.member("Ada", "ada@example.org", plan=resident)
        bob = lyon.member("Bob", "bob@example.org", plan=resident)
        cleo = lyon.member("Cleo", "cleo@example.org")
        paris = SiteBuilder(s, "paris", name="Paris")
        paris.desk("p1", zone="Hall")
        eve = paris.member("Eve", "eve@example.org", plan=paris.plan("paris"))
        taken = registry.book(s, member_id=ada, site_id=lyon.id, desk_id=lyon.desks["d1"],
                              starts_at=at(DAY, 9), ends_at=at(DAY, 12))  # fmt: skip
        elsewhere = registry.book(s, member_id=eve, site_id=paris.id,
                                  desk_id=paris.desks["p1"], starts_at=at(WEDNESDAY, 9),
                                  ends_at=at(WEDNESDAY, 12))  # fmt: skip
        people = [
            accounts.create_person(s, email="lou@example.org", role=Role.MANAGER,
                                   site_id=lyon.id, now=now, locale="en"),
            accounts.create_person(s, email="pia@example.org", role=Role.MANAGER,
                                   site_id=paris.id, now=now, locale="en"),
            accounts.create_person(s, email="root@example.org", role=Role.ADMIN, now=now,
                                   locale="en"),
            accounts.create_person(s, email="ada@example.org", role=Role.MEMBER, member_id=ada,
                                   now=now, locale="en"),
        ]  # fmt: skip
        for person in people:
            person.password_hash = PASSWORD_HASH
        s.flush()
        ids = {
            "lyon": lyon.id, "paris": paris.id, "ada": ada, "bob": bob, "cleo": cleo,
            "d1": lyon.desks["d1"], "d2": lyon.desks["d2"], "open": lyon.zones["Open space"],
            "board": lyon.zones["Board"], "taken": taken.id, "elsewhere": elsewhere.id,
        }  # fmt: skip
    ports = RecordingPorts()
    app = create_app(sessions=sessions, commands=ports, listener=ports)
    yield World(app, sessions, ports, ids)
    engine.dispose()


def book_form(world: World, **changes: str) -> dict[str, str]:
    form = {"site": "lyon", "member_id": str(world.ids["bob"]),
            "target": f"desk:{world.ids['d2']}", "day": DAY.isoformat(), "span": "hours",
            "start": "09:00", "end": "11:00"}  # fmt: skip
    return form | changes


class TestWhoMayOpen:
    """Staff of the site only; the others get a sign-in redirect or a page saying no."""

    def test_signed_out_goes_to_sign_in(self, world):
        answer = world.browser().get("/manage/bookings?site=lyon")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=%2Fmanage%2Fbookings%3Fsite%3Dlyon"

    def test_a_member_cannot_open_manage_pages(self, world):
        client = world.browser("ada@example.org")
        answer = client.get("/manage/bookings")
        assert answer.status_code == 403
        assert "You cannot open this page" in answer.text
        move = client.get(f"/manage/bookings/{world.ids['taken']}/move")
        assert move.status_code == 403
        cancel = world.post(client, f"/manage/bookings/{world.ids['taken']}/cancel")
        assert cancel.status_code == 403
        assert world.booking(world.ids["taken"]).status is BookingStatus.BOOKED

    def test_a_manager_sees_no_other_site(self, world):
        client = world.browser("lou@example.org")
        assert client.get("/manage/bookings?site=paris").status_code == 404
        elsewhere = world.ids["elsewhere"]
        assert client.get(f"/manage/bookings/{elsewhere}/move").status_code == 403
        cancel = world.post(client, f"/manage/bookings/{elsewhere}/cancel")
        assert cancel.status_code == 403
        move = world.post(client, f"/manage/bookings/{elsewhere}/move",
                          target=f"desk:{world.ids['d2']}", day=DAY.isoformat(),
                          start="09:00", end="10:00")  # fmt: skip
        assert move.status_code == 403
        create = world.post(client, "/manage/bookings", **book_form(world, site="paris"))
        assert create.status_code == 404
        assert world.booking(elsewhere).status is BookingStatus.BOOKED
        assert len(world.bookings()) == 2

    def test_forms_without_their_csrf_token_are_refused(self, world):
        client = world.browser("lou@example.org")
        answer = client.post("/manage/bookings", data=book_form(world))
        assert answer.status_code == 403
        cancel = client.post(f"/manage/bookings/{world.ids['taken']}/cancel")
        assert cancel.status_code == 403
        assert len(world.bookings()) == 2


class TestDayView:
    """A zone's desks down, the day's hours across, each booking with its member and time."""

    def test_shows_the_bookings_of_the_zone(self, world):
        client = world.browser("lou@example.org")
        page = client.get(f"/manage/bookings?site=lyon&day={DAY}&zone={world.ids['open']}")
        assert page.status_code == 200
        assert "Ada" in page.text
        assert "09:00\u201312:00" in page.text
        assert "Open all day." in page.text
        assert "d2" in page.text

    def test_in_french(self, world):
        client = world.browser("lou@example.org")
        client.get("/language/fr")
        page = client.get(f"/manage/bookings?site=lyon&day={DAY}")
        assert page.headers["content-language"] == "fr"
        assert "Réserver pour un membre" in page.text
        assert Formats("fr", "Europe/Paris").date(DAY, "full") in page.text

    def test_a_bad_day_is_a_page_not_a_500(self, world):
        client = world.browser("lou@example.org")
        answer = client.get("/manage/bookings?day=31-12")
        assert answer.status_code == 422
        assert "Some of what was sent is not valid" in answer.text

    def test_a_big_zone_comes_in_pages(self, world):
        with transaction(world.sessions) as s:
            hall = SiteBuilder(s, "lyon", existing=True)
            for n in range(45):
                hall.desk(f"h{n:02}", zone="Hall")
            zone = hall.zones["Hall"]
        client = world.browser("lou@example.org")
        first = client.get(f"/manage/bookings?site=lyon&day={DAY}&zone={zone}")
        second = client.get(f"/manage/bookings?site=lyon&day={DAY}&zone={zone}&page=2")
        assert '<th scope="row">h39</th>' in first.text
        assert '<th scope="row">h40</th>' not in first.text
        assert '<th scope="row">h44</th>' in second.text


class TestBooking:
    """Booking for a member goes through the registry; refusals are said, in the reader's
    language, and nothing is stored."""

    def test_books_and_republishes(self, world):
        client = world.browser("lou@example.org")
        answer = world.post(client, "/manage/bookings", **book_form(world))
        assert answer.status_code == 303
        assert "done=created" in answer.headers["location"]
        booking = world.bookings()[-1]
        assert (booking.member_id, booking.desk_id) == (world.ids["bob"], world.ids["d2"])
        assert (booking.starts_at, booking.ends_at) == (at(DAY, 9), at(DAY, 11))
        assert world.ports.changed == ["lyon"]
        page = client.get(answer.headers["location"])
        assert "The booking is made." in page.text

    def test_a_whole_day_and_a_whole_room(self, world):
        client = world.browser("lou@example.org")
        form = book_form(world, target=f"zone:{world.ids['board']}", span="day")
        assert "done=created" in world.post(client, "/manage/bookings", **form).headers["location"]
        booking = world.bookings()[-1]
        assert booking.zone_id == world.ids["board"]
        assert (booking.starts_at, booking.ends_at) == (at(DAY, 0), at(DAY + timedelta(days=1), 0))

    @pytest.mark.parametrize(
        ("changes", "code", "french"),
        [
            ({"target": "desk:{d1}", "start": "11:00", "end": "13:00"}, "taken",
             "Ce poste ou cette salle est déjà réservé"),
            ({"member_id": "{cleo}"}, "no_plan", "Ce membre n'a pas de formule"),
            ({"start": "12:00", "end": "10:00"}, "bad_times", "Une réservation doit finir"),
            ({"target": "nothing", "member_id": "abc", "day": "nope"}, "bad_form",
             "Choisissez un membre"),
            ({"target": "zone:{open}"}, "taken", "Ce poste ou cette salle est déjà réservé"),
        ],
    )  # fmt: skip
    def test_refusals_are_translated(self, world, changes, code, french):
        client = world.browser("lou@example.org")
        client.get("/language/fr")
        form = book_form(world, **{k: v.format(**world.ids) for k, v in changes.items()})
        answer = world.post(client, "/manage/bookings", **form)
        assert answer.status_code == 303
        assert f"error={code}" in answer.headers["location"]
        assert len(world.bookings()) == 2
        assert world.ports.changed == []
        page = client.get(answer.headers["location"])
        assert french in html.unescape(page.text)

    def test_a_day_pass_is_enough_and_limits_are_said(self, world):
        with transaction(world.sessions) as s:
            registry.add_day_pass(s, member_id=world.ids["cleo"], site_id=world.ids["lyon"],
                                  day=DAY)  # fmt: skip
            registry.set_limits(s, world.ids["lyon"], plan_id=None, days_ahead=None,
                                max_minutes=60, at_once=None)  # fmt: skip
        client = world.browser("lou@example.org")
        client.get("/language/fr")
        cleo = str(world.ids["cleo"])
        answer = world.post(client, "/manage/bookings", **book_form(world, member_id=cleo))
        assert "error=limit_max_minutes" in answer.headers["location"]
        page = client.get(answer.headers["location"])
        assert "dépasse la durée permise par ce site" in html.unescape(page.text)
        answer = world.post(client, "/manage/bookings",
                            **book_form(world, member_id=cleo, end="10:00"))  # fmt: skip
        assert "done=created" in answer.headers["location"]

    def test_outside_the_opening_hours(self, world):
        client = world.browser("root@example.org")
        form = {"site": "paris", "member_id": "0", "target": "desk:1", "day": str(WEDNESDAY),
                "span": "hours", "start": "19:30", "end": "21:00"}  # fmt: skip
        with world.sessions() as s:
            eve = registry.list_members(s)[-1]
            desk = registry.list_desks(s, site_id=world.ids["paris"])[0]
        form |= {"member_id": str(eve.id), "target": f"desk:{desk.id}"}
        answer = world.post(client, "/manage/bookings", **form)
        assert "error=outside_opening" in answer.headers["location"]
        sunday = WEDNESDAY + timedelta(days=4)
        answer = world.post(client, "/manage/bookings", **form | {"day": str(sunday)})
        assert "error=closed" in answer.headers["location"]


class TestMoveAndCancel:
    """A move is a cancel and a booking in one transaction; a refused move changes nothing."""

    def test_moves_to_another_desk_and_time(self, world):
        client = world.browser("lou@example.org")
        taken = world.ids["taken"]
        assert client.get(f"/manage/bookings/{taken}/move").status_code == 200
        answer = world.post(client, f"/manage/bookings/{taken}/move",
                            target=f"desk:{world.ids['d2']}", day=str(DAY), span="hours",
                            start="14:00", end="16:00")  # fmt: skip
        assert "done=moved" in answer.headers["location"]
        assert world.booking(taken).status is BookingStatus.CANCELLED
        moved = world.bookings()[-1]
        assert (moved.member_id, moved.desk_id) == (world.ids["ada"], world.ids["d2"])
        assert (moved.starts_at, moved.ends_at) == (at(DAY, 14), at(DAY, 16))
        assert world.ports.changed == ["lyon"]

    def test_a_move_onto_a_taken_desk_keeps_the_booking(self, world):
        client = world.browser("lou@example.org")
        world.post(client, "/manage/bookings", **book_form(world))  # Bob on d2, 9-11
        world.ports.clear()
        taken = world.ids["taken"]
        answer = world.post(client, f"/manage/bookings/{taken}/move",
                            target=f"desk:{world.ids['d2']}", day=str(DAY), span="hours",
                            start="10:00", end="12:00")  # fmt: skip
        assert "error=taken" in answer.headers["location"]
        assert world.booking(taken).status is BookingStatus.BOOKED
        assert len(world.bookings()) == 3
        assert world.ports.changed == []
        assert "already booked" in client.get(answer.headers["location"]).text

    def test_a_move_within_its_own_time_is_no_clash(self, world):
        client = world.browser("lou@example.org")
        taken = world.ids["taken"]
        answer = world.post(client, f"/manage/bookings/{taken}/move",
                            target=f"desk:{world.ids['d1']}", day=str(DAY), span="hours",
                            start="10:00", end="13:00")  # fmt: skip
        assert "done=moved" in answer.headers["location"]

    def test_cancels_once(self, world):
        client = world.browser("lou@example.org")
        taken = world.ids["taken"]
        answer = world.post(client, f"/manage/bookings/{taken}/cancel")
        assert "done=cancelled" in answer.headers["location"]
        assert world.booking(taken).status is BookingStatus.CANCELLED
        assert world.ports.changed == ["lyon"]
        again = world.post(client, f"/manage/bookings/{taken}/cancel")
        assert "error=not_booked" in again.headers["location"]
        assert "This booking is no longer active." in client.get(again.headers["location"]).text

    def test_an_unknown_booking_is_a_404_page(self, world):
        client = world.browser("lou@example.org")
        answer = client.get("/manage/bookings/999999/move")
        assert answer.status_code == 404
        assert "This page does not exist" in answer.text
