"""A member's data (GDPR right of access) on SQLite and PostgreSQL: what
`people.export.personal_data` gathers, row by row, and `/my/data` serving it to its own
member only, over HTTP (FastAPI's TestClient).

Ada has an account, a membership, a badge, a booking, a day pass, a desk check-in, a
guest she invited, a visit, a desk session, an audit row and an invoice; Bob has some
of the same, none of which may reach Ada's file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import billing, registry
from ruche.server.access import audit
from ruche.server.access.audit import AuditEntry
from ruche.server.api.app import create_app
from ruche.server.billing.pricing import Period
from ruche.server.errors import NotFound
from ruche.server.people import accounts
from ruche.server.people.export import FORMAT, personal_data, personal_data_json
from ruche.server.people.passwords import hash_password
from ruche.server.registry.bookings import book
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import AuditKind, AuditSource, Role
from ruche.server.storage.models import (
    DeskCheckInRow,
    DeskSessionRow,
    GuestInvitationRow,
    SignInSessionRow,
    SiteKeyRow,
    VisitRow,
)
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
NOV = Period(2026, 11)
DAY = datetime(2026, 11, 3, 9, tzinfo=UTC)
UID = bytes.fromhex("04a22b1a5c8e80")


@dataclass
class Data:
    app: FastAPI
    sessions: sessionmaker[Session]
    ids: dict[str, int]

    def signed_in(self, who: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")
        token = self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])
        form = {"email": f"{who}@example.org", "password": PASSWORD, "csrf_token": token}
        answer = client.post("/signin", data=form)
        assert answer.status_code == 303
        return client


def _seed(s: Session) -> dict[str, int]:
    now = datetime(2026, 10, 1, tzinfo=UTC)
    lyon = registry.create_site(s, slug="lyon", name="Ruche Lyon", timezone="Europe/Paris")
    s.flush()
    billing.set_site_billing(s, lyon.id, currency="EUR", rate="0.2")
    zone = registry.create_zone(s, site_id=lyon.id, name="Open space")
    s.flush()
    desk = registry.create_desk(s, zone_id=zone.id, slug="d1")
    plan = registry.create_plan(s, name="Flex", site_ids=[lyon.id], schedule={"kind": "24/7"})
    ada = registry.create_member(s, name="Ada Lovelace", email="ada@example.org")
    bob = registry.create_member(s, name="Bob Martin", email="bob@example.org")
    guest = registry.create_member(s, name="Grace Guest", email="grace@example.org")
    s.flush()
    for member in (ada, bob):
        registry.create_membership(s, member_id=member.id, plan_id=plan.id, starts_at=now)
    billing.add_price_version(s, site_id=lyon.id, plan_id=plan.id, valid_from=date(2026, 10, 1),
                              terms={"kind": "day_pass", "price": "15.00"}, now=now)  # fmt: skip
    site_key = s.get(SiteKeyRow, lyon.key_id)
    assert site_key is not None
    badge = registry.enrol_badge(s, ada.id, site_key, UID, label="blue card")
    booking = book(s, member_id=ada.id, site_id=lyon.id, desk_id=desk.id, starts_at=DAY,
                   ends_at=DAY + timedelta(hours=4))  # fmt: skip
    registry.add_day_pass(s, member_id=ada.id, site_id=lyon.id, day=date(2026, 11, 4))
    s.flush()
    s.add(DeskCheckInRow(desk_id=desk.id, member_id=ada.id, checked_in_at=DAY,
                         booking_id=booking.id))  # fmt: skip
    s.add(GuestInvitationRow(
        site_id=lyon.id, guest_member_id=guest.id, host_member_id=ada.id,
        invited_by="person:1:ada@example.org", day=date(2026, 11, 5),
        valid_until=DAY + timedelta(days=2, hours=10), created_at=now,
    ))  # fmt: skip
    for member, seq in ((ada, 1), (bob, 2)):
        s.add(VisitRow(
            site="lyon", member_id=member.id, entry_agent="pi", entry_seq=seq, entries=1,
            start=DAY, end=DAY + timedelta(hours=8), closed_by="exit",
        ))  # fmt: skip
    s.add(DeskSessionRow(site="lyon", agent="pi", desk="d1", opened_seq=9, start=DAY,
                         end=DAY + timedelta(hours=3), closed_by="vacant", suspect=False,
                         reason=None, member_id=ada.id, attributed_by="badge",
                         booking_id=None))  # fmt: skip
    audit.append(s, AuditEntry(kind=AuditKind.DECISION, source=AuditSource.ONLINE, site="lyon",
                               door="front", token=badge.token, member_id=ada.id, allowed=True,
                               reason="plan", decided_at=DAY, received_at=DAY))  # fmt: skip
    ada_person = accounts.create_person(s, email="ada@example.org", role=Role.MEMBER,
                                        member_id=ada.id, now=now)  # fmt: skip
    bob_person = accounts.create_person(s, email="bob@example.org", role=Role.MEMBER,
                                        member_id=bob.id, now=now, locale="en")  # fmt: skip
    ada_person.password_hash = bob_person.password_hash = PASSWORD_HASH
    billing.close_period(s, NOV, site="lyon", now=datetime(2026, 12, 2, tzinfo=UTC))
    return {"ada": ada.id, "bob": bob.id, "guest": guest.id, "lyon": lyon.id}


@pytest.fixture
def data(db_url: str) -> Iterator[Data]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    with transaction(sessions) as s:
        ids = _seed(s)
    ports = RecordingPorts()
    yield Data(create_app(sessions=sessions, commands=ports, listener=ports), sessions, ids)
    engine.dispose()


def _export(data: Data, who: str) -> dict[str, Any]:
    with data.sessions() as s:
        return personal_data(s, data.ids[who], now=datetime(2026, 12, 8, tzinfo=UTC))


class TestPersonalData:
    """`personal_data` gathers every table's rows about the member, and nobody else's."""

    def test_every_section_holds_the_members_rows(self, data):
        found = _export(data, "ada")
        assert found["format"] == FORMAT
        assert found["member"]["email"] == "ada@example.org"
        assert [p["email"] for p in found["people"]] == ["ada@example.org"]
        assert found["memberships"][0]["plan"] == "Flex"
        assert found["badges"][0]["label"] == "blue card"
        assert len(found["badges"][0]["token"]) == 64
        assert [d["day"] for d in found["day_passes"]] == ["2026-11-04"]
        assert len(found["desk_checkins"]) == 1
        assert [g["guest_member_id"] for g in found["guest_invitations_made"]] == [
            data.ids["guest"]
        ]
        assert [v["entry_seq"] for v in found["visits"]] == [1]
        assert [d["desk"] for d in found["desk_sessions"]] == ["d1"]
        assert [a["reason"] for a in found["audit_log"]] == ["plan"]
        (invoice,) = found["invoices"]
        assert invoice["number"] == "lyon-2026-11-0001"
        assert invoice["document"]["total"] == invoice["total"]
        assert invoice["lines"][0]["description"].startswith("Day pass")

    def test_no_secret_and_nobody_elses(self, data):
        client = data.signed_in("ada")  # a sign-in session to export
        assert client.get("/my/data").status_code == 200
        found = _export(data, "ada")
        text = personal_data_json(found)
        assert "password_hash" not in text
        assert "$argon2" not in text
        assert found["signin_sessions"], "the sessions are listed"
        assert all("hash" not in row for row in found["signin_sessions"])
        with data.sessions() as s:
            for row in s.query(SignInSessionRow):
                assert row.hash not in text
        assert "bob@example.org" not in text
        assert "Bob Martin" not in text

    def test_a_member_the_registry_does_not_have(self, data):
        with data.sessions() as s, pytest.raises(NotFound):
            personal_data(s, 999_999, now=datetime(2026, 12, 8, tzinfo=UTC))

    def test_the_json_is_stable(self, data):
        assert personal_data_json(_export(data, "ada")) == personal_data_json(_export(data, "ada"))


class TestMyDataPage:
    """Each member downloads their own file; nobody else reaches it."""

    def test_the_page_and_the_download(self, data):
        ada = data.signed_in("ada")
        page = ada.get("/my/data")
        assert "Télécharger mes données (JSON)" in page.text
        answer = ada.get("/my/data/export.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert "attachment" in answer.headers["content-disposition"]
        found = json.loads(answer.text)
        assert found["member"]["id"] == data.ids["ada"]
        bob = json.loads(data.signed_in("bob").get("/my/data/export.json?member_id=1").text)
        assert bob["member"]["id"] == data.ids["bob"], "no id to change: one's own only"
        assert bob["invoices"][0]["member_name"] == "Bob Martin"

    def test_signed_out_and_staff(self, data):
        client = TestClient(data.app, follow_redirects=False)
        answer = client.get("/my/data/export.json")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=%2Fmy%2Fdata%2Fexport.json"
        now = datetime.now(UTC)
        with transaction(data.sessions) as s:
            manager = accounts.create_person(s, email="lou@example.org", role=Role.MANAGER,
                                             site_id=data.ids["lyon"], now=now)  # fmt: skip
            manager.password_hash = PASSWORD_HASH
        assert data.signed_in("lou").get("/my/data/export.json").status_code == 403
