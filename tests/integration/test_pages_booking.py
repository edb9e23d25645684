"""A member's booking pages and desk check-in, over real HTTP (FastAPI's TestClient) on
SQLite and PostgreSQL: booking on the floor plan, the refusals in the reader's language,
cancelling only one's own, checking in by a desk's signed code, the live floor showing
who checked in, and the staff's QR sheet.

Lyon has "Open space" (d1, d2 on a grid, d3 unplaced) and "Quiet room" (q1); Paris has p1.
Ada (French) and Bob (English) are on the booking-only plan `flex` (Lyon only); Cleo has
no plan. Max manages Lyon. The app has a LiveHub, not connected to any broker: it is
redrawn from SQL whenever the pages tell the listener a site changed.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.checkin import desk_reference
from ruche.server.occupancy.live import LiveHub
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.people.signing import load_secret
from ruche.server.registry.listener import SiteChangeFanout
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import BookingStatus, Role
from ruche.server.storage.models import BookingRow, DeskCheckInRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
"""Made once: argon2 is slow on purpose."""
PARIS = ZoneInfo("Europe/Paris")
ADA, BOB, CLEO, MAX = "ada@example.org", "bob@example.org", "cleo@example.org", "max@example.org"


@dataclass
class Floor:
    app: FastAPI
    sessions: sessionmaker[Session]
    ports: RecordingPorts
    ids: dict[str, Any]

    def browser(self, who: str | None = None) -> TestClient:
        """A browser with its CSRF cookie, signed in as `who` if given."""
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")
        if who is not None:
            answer = client.post("/signin", data={"email": who, "password": PASSWORD,
                                                  "csrf_token": self.token(client)})  # fmt: skip
            assert answer.status_code == 303, answer.text
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def book(self, client: TestClient, slug: str, **form: str) -> Any:
        """Post the plan's form for desk `slug` (today at Lyon unless `form` says otherwise)."""
        data = {"site": "lyon", "day": today().isoformat(), "span": "day",
                "desk": str(self.ids[slug]), "csrf_token": self.token(client)} | form  # fmt: skip
        return client.post("/my/book", data=data)

    def bookings(self) -> list[BookingRow]:
        with self.sessions() as session:
            return list(session.scalars(select(BookingRow).order_by(BookingRow.id)))

    def checkins(self) -> list[DeskCheckInRow]:
        with self.sessions() as session:
            return list(session.scalars(select(DeskCheckInRow).order_by(DeskCheckInRow.id)))

    def reference(self, desk: str) -> str:
        return desk_reference(load_secret(self.sessions), self.ids[desk])


def today() -> date:
    return datetime.now(UTC).astimezone(PARIS).date()


def query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


@pytest.fixture
def floor(db_url: str) -> Iterator[Floor]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        lyon = SiteBuilder(session, "lyon", name="Ruche Lyon")
        for n, slug in enumerate(("d1", "d2")):
            lyon.desk(slug, zone="Open space", x=n, y=0)
        lyon.desk("d3", zone="Open space")
        lyon.desk("q1", zone="Quiet room", x=0, y=0)
        paris = SiteBuilder(session, "paris", name="Ruche Paris")
        paris.desk("p1", zone="Hall", x=0, y=0)
        flex = lyon.plan("flex", booking_only=True)
        members = {ADA: lyon.member("Ada Lovelace", ADA, plan=flex),
                   BOB: lyon.member("Bob Marley", BOB, plan=flex),
                   CLEO: lyon.member("Cléo Dupont", CLEO)}  # fmt: skip
        people = [
            accounts.create_person(session, email=ADA, role=Role.MEMBER, member_id=members[ADA],
                                   now=now, locale="fr"),
            accounts.create_person(session, email=BOB, role=Role.MEMBER, member_id=members[BOB],
                                   now=now, locale="en"),
            accounts.create_person(session, email=CLEO, role=Role.MEMBER,
                                   member_id=members[CLEO], now=now, locale="en"),
            accounts.create_person(session, email=MAX, role=Role.MANAGER, site_id=lyon.id,
                                   now=now, locale="en"),
        ]  # fmt: skip
        for person in people:
            person.password_hash = PASSWORD_HASH
        ids = {**lyon.desks, **paris.desks, **members, "lyon": lyon.id, "paris": paris.id}
    ports = RecordingPorts()
    hub = LiveHub(sessions, MqttOptions(host="127.0.0.1", port=1, username="x", password="x"))
    hub.reload()
    app = create_app(sessions=sessions, commands=ports, listener=SiteChangeFanout(ports, hub),
                     live=hub)  # fmt: skip
    yield Floor(app, sessions, ports, ids)
    engine.dispose()


class TestSignedOut:
    """Every page sends a reader who is not signed in to sign in, then back."""

    @pytest.mark.parametrize("path", ["/my/book", "/my/bookings", "/manage/desks/qr"])
    def test_redirects_to_signin(self, floor, path):
        answer = floor.browser().get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=" + urllib.parse.quote(path, safe="")

    def test_a_desk_code_comes_back_after_signing_in(self, floor):
        path = f"/my/checkin/{floor.reference('d1')}"
        client = floor.browser()
        answer = client.get(path)
        assert answer.headers["location"] == "/signin?next=" + urllib.parse.quote(path, safe="")
        signed = client.post("/signin", data={"email": ADA, "password": PASSWORD, "next": path,
                                              "csrf_token": floor.token(client)})  # fmt: skip
        assert signed.headers["location"] == path
        assert "M'enregistrer au poste d1" in client.get(path).text


class TestBookPage:
    """The plan shows each desk with its state in words, a button on each free one."""

    def test_free_desks_are_buttons_in_french(self, floor):
        page = floor.browser(ADA).get("/my/book")
        assert page.status_code == 200
        assert page.headers["content-language"] == "fr"
        html = page.text
        assert "<h1>Réserver un poste</h1>" in html
        for desk in ("d1", "d2", "d3", "q1"):
            assert f'name="desk" value="{floor.ids[desk]}"' in html
        assert "p1" not in html, "only the chosen site's desks"
        assert 'style="grid-column: 2; grid-row: 1"' in html, "d2 at x=1, y=0"
        assert 'name="csrf_token"' in html

    def test_a_member_books_a_free_desk_and_the_doors_are_told(self, floor):
        client = floor.browser(ADA)
        answer = floor.book(client, "d1")
        assert answer.status_code == 303
        assert query(answer.headers["location"])["done"] == "booked"
        [booking] = floor.bookings()
        assert (booking.member_id, booking.desk_id) == (floor.ids[ADA], floor.ids["d1"])
        assert booking.starts_at <= datetime.now(UTC) < booking.ends_at
        assert floor.ports.changed == ["lyon"], "allow-lists republished after commit"
        page = client.get(answer.headers["location"]).text
        assert "Votre poste est réservé." in page
        assert re.search(r'<span class="desk desk-yours">.*?d1</span> <span class="desk-state">'
                         r"À vous</span>", page), "d1 shows as hers"  # fmt: skip
        assert f'value="{floor.ids["d1"]}"' not in page, "no button on a desk taken"

    def test_hours_on_another_day(self, floor):
        client = floor.browser(BOB)
        day = (today() + timedelta(days=3)).isoformat()
        answer = floor.book(client, "q1", day=day, span="hours", start="09:00", end="12:30")
        assert query(answer.headers["location"])["done"] == "booked"
        [booking] = floor.bookings()
        assert booking.starts_at.astimezone(PARIS).strftime("%H:%M") == "09:00"
        assert booking.ends_at.astimezone(PARIS).strftime("%H:%M") == "12:30"
        later = client.get(f"/my/book?day={day}&span=hours&start=12:30&end=14:00").text
        assert f'name="desk" value="{floor.ids["q1"]}"' in later, "touching spans do not clash"

    def test_a_member_with_no_plan_is_told_so(self, floor):
        page = floor.browser(CLEO).get("/my/book")
        assert page.status_code == 200
        assert "Your plan gives you no site to book yet." in page.text

    def test_staff_have_no_member_pages(self, floor):
        page = floor.browser(MAX).get("/my/book")
        assert page.status_code == 403
        assert "You cannot open this page" in page.text


class TestRefusals:
    """What the rules refuse comes back as a sentence in the reader's language."""

    def test_a_desk_taken_meanwhile(self, floor):
        floor.book(floor.browser(ADA), "d1")
        bob = floor.browser(BOB)
        answer = floor.book(bob, "d1")
        assert query(answer.headers["location"])["error"] == "taken"
        page = bob.get(answer.headers["location"]).text
        assert "Someone has just booked this desk for that time." in page
        assert len(floor.bookings()) == 1

    def test_a_day_in_the_past(self, floor):
        ada = floor.browser(ADA)
        answer = floor.book(ada, "d2", day=(today() - timedelta(days=1)).isoformat())
        assert query(answer.headers["location"])["error"] == "past"
        assert "Ce créneau est passé." in ada.get(answer.headers["location"]).text
        assert floor.bookings() == []

    def test_hours_already_over_today_are_refused_on_the_page_too(self, floor):
        page = floor.browser(BOB).get(f"/my/book?day={(today() - timedelta(days=2)).isoformat()}")
        assert "That time is over." in page.text
        assert 'name="desk"' not in page.text

    def test_a_site_outside_the_plan(self, floor):
        ada = floor.browser(ADA)
        answer = floor.book(ada, "p1", site="paris")
        assert query(answer.headers["location"])["error"] == "outside_plan"
        assert "Votre formule ne comprend pas ce site" in ada.get(answer.headers["location"]).text
        assert floor.bookings() == []

    def test_a_day_pass_opens_its_day_only(self, floor):
        with transaction(floor.sessions) as session:
            registry.add_day_pass(session, member_id=floor.ids[CLEO], site_id=floor.ids["lyon"],
                                  day=today())  # fmt: skip
        cleo = floor.browser(CLEO)
        assert f'name="desk" value="{floor.ids["d1"]}"' in cleo.get("/my/book").text
        assert query(floor.book(cleo, "d1").headers["location"])["done"] == "booked"
        tomorrow = (today() + timedelta(days=1)).isoformat()
        answer = floor.book(cleo, "d2", day=tomorrow)
        assert query(answer.headers["location"])["error"] == "outside_plan"

    def test_the_sites_booking_limits(self, floor):
        with transaction(floor.sessions) as session:
            registry.set_limits(session, floor.ids["lyon"], plan_id=None, days_ahead=None,
                                max_minutes=None, at_once=1)  # fmt: skip
        bob = floor.browser(BOB)
        assert query(floor.book(bob, "d1").headers["location"])["done"] == "booked"
        answer = floor.book(bob, "d2", day=(today() + timedelta(days=1)).isoformat())
        assert query(answer.headers["location"])["error"] == "limit_at_once"
        assert (
            "You already hold as many bookings as this site allows at once."
            in bob.get(answer.headers["location"]).text
        )
        assert len(floor.bookings()) == 1

    def test_too_far_ahead_and_end_before_start(self, floor):
        bob = floor.browser(BOB)
        far = floor.book(bob, "d1", day=(today() + timedelta(days=200)).isoformat())
        assert query(far.headers["location"])["error"] == "too_far"
        backwards = floor.book(bob, "d1", span="hours", start="12:00", end="09:00",
                               day=(today() + timedelta(days=1)).isoformat())  # fmt: skip
        assert query(backwards.headers["location"])["error"] == "order"
        assert floor.bookings() == []

    def test_a_desk_of_another_site_or_none(self, floor):
        bob = floor.browser(BOB)
        elsewhere = floor.book(bob, "d1", desk=str(floor.ids["p1"]))
        assert query(elsewhere.headers["location"])["error"] == "unavailable"
        missing = floor.book(bob, "d1", desk="999999")
        assert query(missing.headers["location"])["error"] == "unavailable"

    @pytest.mark.parametrize(
        "url", ["/my/book?day=yesterday", "/my/book?span=week", "/my/book?day=9999-12-31",
                "/my/book?site=nowhere", "/my/book?start=25:00&span=hours"],
    )  # fmt: skip
    def test_bad_input_is_a_page_never_a_500(self, floor, url):
        page = floor.browser(BOB).get(url)
        assert page.status_code in (200, 404, 422)
        assert "<h1>" in page.text

    def test_an_unreadable_day_or_time_is_said_so(self, floor):
        bob = floor.browser(BOB)
        tomorrow = (today() + timedelta(days=1)).isoformat()
        emptied = bob.get(f"/my/book?day={tomorrow}&span=hours&start=&end=12:00")
        assert "could not be read" not in emptied.text, "an emptied field takes its default"
        assert f'name="desk" value="{floor.ids["d1"]}"' in emptied.text
        for url in ("/my/book?day=yesterday", "/my/book?day=2026-13-45",
                    "/my/book?span=hours&start=25:00&end=26:00"):  # fmt: skip
            page = bob.get(url)
            assert page.status_code == 200
            assert "That day or time could not be read." in page.text
            assert f'name="desk" value="{floor.ids["d1"]}"' in page.text, "today's plan"

    def test_a_form_without_its_csrf_token_is_refused(self, floor):
        bob = floor.browser(BOB)
        data = {"site": "lyon", "day": today().isoformat(), "desk": str(floor.ids["d1"])}
        assert bob.post("/my/book", data=data).status_code == 403
        assert floor.bookings() == []


class TestMyBookings:
    """A member sees and cancels their own bookings, never another's."""

    def test_lists_and_cancels_ones_own(self, floor):
        bob = floor.browser(BOB)
        floor.book(bob, "d2")
        [booking] = floor.bookings()
        page = bob.get("/my/bookings").text
        assert "d2" in page
        assert f'action="/my/bookings/{booking.id}/cancel"' in page
        floor.ports.clear()
        answer = bob.post(f"/my/bookings/{booking.id}/cancel",
                          data={"csrf_token": floor.token(bob)})  # fmt: skip
        assert query(answer.headers["location"])["done"] == "cancelled"
        assert floor.bookings()[0].status is BookingStatus.CANCELLED
        assert floor.ports.changed == ["lyon"]
        after = bob.get(answer.headers["location"]).text
        assert "Your booking is cancelled." in after
        assert "Cancelled" in after, "listed among the last 30 days"
        again = bob.post(f"/my/bookings/{booking.id}/cancel",
                         data={"csrf_token": floor.token(bob)})  # fmt: skip
        assert query(again.headers["location"])["error"] == "not_active"

    def test_another_members_booking_is_not_theirs_to_see_or_cancel(self, floor):
        floor.book(floor.browser(ADA), "d1")
        [booking] = floor.bookings()
        bob = floor.browser(BOB)
        assert f"/my/bookings/{booking.id}/cancel" not in bob.get("/my/bookings").text
        answer = bob.post(f"/my/bookings/{booking.id}/cancel",
                          data={"csrf_token": floor.token(bob)})  # fmt: skip
        assert answer.status_code == 403
        assert "You cannot open this page" in answer.text
        missing = bob.post("/my/bookings/999999/cancel", data={"csrf_token": floor.token(bob)})
        assert missing.status_code == 404
        assert floor.bookings()[0].status is BookingStatus.BOOKED

    def test_cancel_needs_the_csrf_token(self, floor):
        ada = floor.browser(ADA)
        floor.book(ada, "d1")
        [booking] = floor.bookings()
        assert ada.post(f"/my/bookings/{booking.id}/cancel").status_code == 403
        assert floor.bookings()[0].status is BookingStatus.BOOKED


class TestCheckIn:
    """A desk's code opens its check-in page; checking in puts the member on the live floor."""

    def test_checking_in_links_the_booking_and_shows_on_the_live_floor(self, floor):
        ada = floor.browser(ADA)
        floor.book(ada, "d1")
        path = f"/my/checkin/{floor.reference('d1')}"
        page = ada.get(path).text
        assert "Votre réservation de ce poste court jusqu'à" in page
        floor.ports.clear()
        answer = ada.post(path, data={"csrf_token": floor.token(ada)})
        assert answer.status_code == 303
        assert query(answer.headers["location"])["done"] == "checked_in"
        assert "Vous êtes enregistré à ce poste." in ada.get(answer.headers["location"]).text
        [row] = floor.checkins()
        assert (row.member_id, row.desk_id) == (floor.ids[ADA], floor.ids["d1"])
        assert row.booking_id == floor.bookings()[0].id
        assert floor.ports.changed == ["lyon"]
        state = floor.browser(MAX).get("/live/state").json()
        [lyon] = state["sites"]
        desks = {d["desk"]: d for d in lyon["desks"]}
        assert desks["d1"]["member"] == "Ada Lovelace"
        assert desks["d1"]["state"] == "booked"
        assert desks["d2"]["member"] is None

    def test_without_a_booking_and_at_a_desk_someone_else_booked(self, floor):
        floor.book(floor.browser(ADA), "d1")
        bob = floor.browser(BOB)
        free = bob.post(f"/my/checkin/{floor.reference('d2')}",
                        data={"csrf_token": floor.token(bob)})  # fmt: skip
        assert query(free.headers["location"])["done"] == "checked_in"
        taken = bob.post(f"/my/checkin/{floor.reference('d1')}",
                         data={"csrf_token": floor.token(bob)})  # fmt: skip
        assert query(taken.headers["location"])["error"] == "taken"
        assert (
            "Someone else has booked this desk for now." in bob.get(taken.headers["location"]).text
        )
        [row] = floor.checkins()
        assert (row.desk_id, row.booking_id) == (floor.ids["d2"], None)

    def test_open_floor_pages_are_sent_the_desk(self, floor):
        hub = floor.app.state.live
        bob = floor.browser(BOB)
        path = f"/my/checkin/{floor.reference('d2')}"

        async def watch() -> dict[str, Any]:
            queue = hub.subscribe()
            try:
                data = {"csrf_token": floor.token(bob)}
                await asyncio.to_thread(bob.post, path, data=data)
                change = await asyncio.wait_for(queue.get(), timeout=5)
                assert change is not None
                return change
            finally:
                hub.unsubscribe(queue)

        change = asyncio.run(watch())
        assert change["type"] == "desk"
        assert (change["desk"]["desk"], change["desk"]["member"]) == ("d2", "Bob Marley")

    @pytest.mark.parametrize("reference", ["{id}", "{id}-AAAAAAAAAAAAAAAA", "0-x", "{other}"])
    def test_a_guessed_or_mangled_code_is_a_404(self, floor, reference):
        bob = floor.browser(BOB)
        other = floor.reference("d2").split("-", 1)[1]
        path = "/my/checkin/" + reference.format(
            id=floor.ids["d1"], other=f"{floor.ids['d1']}-{other}"
        )
        assert bob.get(path).status_code == 404
        assert bob.post(path, data={"csrf_token": floor.token(bob)}).status_code == 404

    def test_checking_in_needs_the_csrf_token(self, floor):
        bob = floor.browser(BOB)
        answer = bob.post(f"/my/checkin/{floor.reference('d2')}")
        assert answer.status_code == 403


class TestQrSheet:
    """The staff print one card per desk of their site; members may not."""

    def test_a_manager_gets_every_desk_of_their_site(self, floor):
        max_ = floor.browser(MAX)
        page = max_.get("/manage/desks/qr")
        assert page.status_code == 200
        assert page.text.count("<svg") == 4
        for desk in ("d1", "d2", "d3", "q1"):
            assert f'<p class="qr-desk">{desk}</p>' in page.text
            assert f"/my/checkin/{floor.reference(desk)}" in page.text
        assert "p1" not in page.text
        assert max_.get("/manage/desks/qr?site=paris").status_code == 404

    def test_members_may_not(self, floor):
        assert floor.browser(ADA).get("/manage/desks/qr").status_code == 403
