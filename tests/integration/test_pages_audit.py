"""The audit log page over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL: a site's
rows newest first, paged, filtered; bad filters said in words; the chain verified.

Lyon (door `front`) has 60 decisions for Ada on 2026-11-23 and an alarm on the 24th;
Paris (door `back`) one decision. Max manages Lyon, Pia Paris; Ada is a member.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ruche.server.access import audit
from ruche.server.api.app import create_app
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.server.storage.models import AuditRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
PARIS_TZ = ZoneInfo("Europe/Paris")
MONDAY = date(2026, 11, 23)
DECISIONS = 60


@dataclass
class Log:
    app: FastAPI
    sessions: sessionmaker[Session]

    def signed_in(self, email: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")
        token = self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])
        form = {"email": email, "password": PASSWORD, "csrf_token": token}
        assert client.post("/signin", data=form).status_code == 303
        return client


def _row(session: Session, site: str, door: str, when: datetime, **fields: object) -> None:
    row = {"kind": AuditKind.DECISION, "source": AuditSource.ONLINE} | fields
    entry = audit.AuditEntry(site=site, door=door, decided_at=when, received_at=when, **row)  # type: ignore[arg-type]
    audit.append(session, entry)


@pytest.fixture
def log(db_url: str) -> Iterator[Log]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = SiteBuilder(s, "lyon", name="Lyon")
        lyon.agent("a1", doors=["front"])
        paris = SiteBuilder(s, "paris", name="Paris")
        paris.agent("p1", doors=["back"])
        ada = lyon.member("Ada Lovelace", "ada@example.org")
        for email, role, site, member in [
            ("max@lyon.example", Role.MANAGER, lyon.id, None),
            ("pia@paris.example", Role.MANAGER, paris.id, None),
            ("ada@example.org", Role.MEMBER, None, ada),
        ]:
            person = accounts.create_person(s, email=email, role=role, site_id=site,
                                            member_id=member, now=now, locale="en")  # fmt: skip
            person.password_hash = PASSWORD_HASH
        start = datetime.combine(MONDAY, time(9), tzinfo=PARIS_TZ)
        for n in range(DECISIONS):
            _row(s, "lyon", "front", start + timedelta(minutes=n), member_id=ada,
                 allowed=n % 2 == 0, reason="plan")  # fmt: skip
        _row(s, "lyon", "front", start + timedelta(days=1), kind=AuditKind.ALARM,
             source=AuditSource.AGENT, reason="forced")  # fmt: skip
        _row(s, "paris", "back", start, allowed=True, reason="paris-only")
    ports = RecordingPorts()
    yield Log(create_app(sessions=sessions, commands=ports, listener=ports), sessions)
    engine.dispose()


def ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-audit="(\d+)"', html)]


class TestWhoMayRead:
    def test_signed_out_goes_to_sign_in(self, log):
        answer = TestClient(log.app, follow_redirects=False).get("/manage/audit")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=")

    def test_a_member_gets_a_403_page(self, log):
        assert log.signed_in("ada@example.org").get("/manage/audit").status_code == 403

    def test_a_manager_reads_only_their_site(self, log):
        pia = log.signed_in("pia@paris.example")
        page = pia.get("/manage/audit")
        assert page.status_code == 200
        assert len(ids(page.text)) == 1
        assert "paris-only" in page.text
        assert pia.get("/manage/audit?site=lyon").status_code == 404


class TestRows:
    """Newest first, a page of 50 at a time, filtered by door, member, kind and date."""

    def test_pages_newest_first(self, log):
        max_ = log.signed_in("max@lyon.example")
        first = max_.get("/manage/audit")
        shown = ids(first.text)
        assert len(shown) == 50
        assert shown == sorted(shown, reverse=True)
        assert "Alarm" in first.text
        assert "Ada Lovelace" in first.text
        older = re.search(r'href="(/manage/audit\?[^"]*cursor=\d+[^"]*)"', first.text)
        assert older is not None
        second = max_.get(older[1].replace("&amp;", "&"))
        rest = ids(second.text)
        assert len(rest) == DECISIONS + 1 - 50
        assert max(rest) < min(shown)
        assert "Newest rows" in second.text

    def test_filters(self, log):
        max_ = log.signed_in("max@lyon.example")
        alarms = max_.get("/manage/audit?kind=alarm")
        assert len(ids(alarms.text)) == 1
        assert 'data-kind="alarm"' in alarms.text
        tuesday = max_.get("/manage/audit?from=2026-11-24&to=2026-11-24")
        assert len(ids(tuesday.text)) == 1
        ada = max_.get("/manage/audit?member=ADA%40example.org&from=2026-11-23&to=2026-11-23")
        assert len(ids(ada.text)) == 50
        assert len(ids(max_.get("/manage/audit?door=front&kind=decision&cursor=999").text)) == 50
        nothing = max_.get("/manage/audit?from=2026-11-25")
        assert "No row matches these filters." in nothing.text

    @pytest.mark.parametrize(
        ("query", "says"),
        [
            ("from=2026-13-01", "The start date is not a date"),
            ("to=yesterday", "The end date is not a date"),
            ("from=2026-11-24&to=2026-11-23", "must not be after the end date"),
            ("from=2020-01-01&to=2026-01-01", "at most a year"),
            ("kind=teleport", "Choose a kind of row"),
            ("door=back", "no such door at this site"),
            ("member=nobody%40example.org", "No member uses this email address."),
            ("cursor=-3", "This page of the log does not exist"),
        ],
    )
    def test_bad_filters_are_said_in_words(self, log, query, says):
        page = log.signed_in("max@lyon.example").get(f"/manage/audit?{query}")
        assert page.status_code == 200
        assert says in page.text
        assert ids(page.text) == []

    def test_bad_filters_in_french(self, log):
        client = log.signed_in("max@lyon.example")
        client.cookies.set("ruche_lang", "fr")
        page = client.get("/manage/audit?from=31/12/2026")
        assert "La date de début n'est pas une date" in page.text


class TestVerify:
    """The button runs the chain's verification, as `ruche audit verify` does."""

    def test_an_intact_chain_then_an_altered_row(self, log):
        max_ = log.signed_in("max@lyon.example")
        assert "The chain verifies" in max_.get("/manage/audit?verify=1").text
        with transaction(log.sessions) as s:
            s.execute(update(AuditRow).where(AuditRow.id == 5).values(reason="edited"))
        page = max_.get("/manage/audit?verify=1")
        assert "The chain is broken" in page.text
        assert "First bad row: 5." in page.text
