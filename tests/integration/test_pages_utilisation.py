"""The utilisation page over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL: per
zone and hour of the day, booked against used desk-time over a period, numbers written
for the reader; bad dates said in words.

Lyon is open 08:00-19:00 on weekdays (Europe/Paris). On Monday 2026-11-23 and Tuesday
2026-11-24, desk d1 (Open space) is booked 09:00-11:00 by Ada and occupied 09:00-10:30;
desk q1 (Quiet room) is neither. One desk per zone: an hour of both days is 2 desk-hours.
Max manages Lyon, Pia Paris; Ada is a member.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import DeskSessionRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
PARIS_TZ = ZoneInfo("Europe/Paris")
DAYS = (date(2026, 11, 23), date(2026, 11, 24))
PERIOD = "from=2026-11-23&to=2026-11-24"


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=PARIS_TZ).astimezone(UTC)


@dataclass
class Site:
    app: FastAPI

    def signed_in(self, email: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")
        token = self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])
        form = {"email": email, "password": PASSWORD, "csrf_token": token}
        assert client.post("/signin", data=form).status_code == 303
        return client


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = SiteBuilder(s, "lyon", name="Lyon")
        d1 = lyon.desk("d1", agent="a1", zone="Open space")
        lyon.desk("q1", agent="a1", zone="Quiet room")
        paris = SiteBuilder(s, "paris", name="Paris")
        ada = lyon.member(
            "Ada", "ada@example.org", plan=lyon.plan("Resident"), since=local(DAYS[0], 0)
        )
        for n, day in enumerate(DAYS):
            registry.book(s, member_id=ada, site_id=lyon.id, desk_id=d1,
                          starts_at=local(day, 9), ends_at=local(day, 11))  # fmt: skip
            s.add(DeskSessionRow(site="lyon", agent="a1", desk="d1", opened_seq=n + 1,
                                 start=local(day, 9), end=local(day, 10, 30),
                                 closed_by="vacant", suspect=False, member_id=ada,
                                 attributed_by="booking"))  # fmt: skip
        for email, role, site_id, member in [
            ("max@lyon.example", Role.MANAGER, lyon.id, None),
            ("pia@paris.example", Role.MANAGER, paris.id, None),
            ("ada@example.org", Role.MEMBER, None, ada),
        ]:
            person = accounts.create_person(s, email=email, role=role, site_id=site_id,
                                            member_id=member, now=now, locale="en")  # fmt: skip
            person.password_hash = PASSWORD_HASH
    ports = RecordingPorts()
    yield Site(create_app(sessions=sessions, commands=ports, listener=ports))
    engine.dispose()


def hour_row(html: str, zone: str, hour: int) -> str:
    table = html.split(f'data-zone="{zone}"', 1)[1].split("</table>", 1)[0]
    found = re.search(rf'<tr data-hour="{hour}">(.*?)</tr>', table, re.DOTALL)
    assert found is not None, f"no row for {hour}:00 in {zone}"
    return re.sub(r"[ \t\n]+", " ", found[1])


class TestWhoMayRead:
    def test_signed_out_member_and_other_site(self, site):
        answer = TestClient(site.app, follow_redirects=False).get("/manage/utilisation")
        assert answer.status_code == 303
        assert site.signed_in("ada@example.org").get("/manage/utilisation").status_code == 403
        pia = site.signed_in("pia@paris.example")
        assert pia.get("/manage/utilisation?site=lyon").status_code == 404
        own = pia.get("/manage/utilisation")
        assert own.status_code == 200
        assert "This site has no zone with desks yet." in own.text


class TestFigures:
    """Both days added up per hour: 9-10 booked and used 2 h of the 2 desk-hours open."""

    def test_booked_against_used_by_hour(self, site):
        page = site.signed_in("max@lyon.example").get(f"/manage/utilisation?{PERIOD}")
        assert page.status_code == 200
        nine = hour_row(page.text, "Open space", 9)
        assert "09:00\u201310:00" in nine
        assert nine.count("2 h · 100%") == 2, nine
        ten = hour_row(page.text, "Open space", 10)
        assert "2 h · 100%" in ten, "booked all of 10-11 on both days"
        assert "1 h · 50%" in ten, "used half of it"
        assert "0 h · 0%" in hour_row(page.text, "Quiet room", 9)
        assert 'data-hour="7"' not in page.text, "closed before 08:00"

    def test_in_french(self, site):
        client = site.signed_in("max@lyon.example")
        client.cookies.set("ruche_lang", "fr")
        page = client.get(f"/manage/utilisation?{PERIOD}")
        ten = hour_row(page.text, "Open space", 10)
        assert "1\u00a0h · 50\u00a0%" in ten, ten
        assert "Temps réservé" in page.text

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("from=23/11/2026", "The start date is not a date"),
            ("to=2026-02-30", "The end date is not a date"),
            ("from=2026-11-24&to=2026-11-23", "must not be after the end date"),
            ("from=2026-01-01&to=2026-03-01", "at most 31 days"),
        ],
    )
    def test_bad_dates_are_said_in_words(self, site, query, says):
        page = site.signed_in("max@lyon.example").get(f"/manage/utilisation?{query}")
        assert page.status_code == 200
        assert says in page.text
        assert "data-hour" not in page.text
