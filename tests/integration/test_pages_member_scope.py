"""No member page lets one member reach another's things by changing an id: every `/my`
route that takes one (in its path or its form) is tried by Bob with Ada's ids, on real
SQLite and PostgreSQL, and answers 403 or 404 with nothing changed. The table of routes
is checked against the app's, so a new member page that takes an id must join it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import billing, registry
from ruche.server.access.invitations import invite_guest
from ruche.server.api import pages
from ruche.server.api.app import create_app
from ruche.server.billing.pricing import Period
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import BadgeStatus, BookingStatus, Role
from ruche.server.storage.models import (
    BadgeRow,
    BookingRow,
    GuestInvitationRow,
    InvoiceRow,
    SiteRow,
)
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.sites import SiteBuilder

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
TODAY = datetime.now(UTC).astimezone(PARIS).date()
LAST_MONTH = Period(TODAY.year - (TODAY.month == 1), (TODAY.month - 2) % 12 + 1)
MONTHLY = {"kind": "monthly", "fee": "300.00", "included": "2", "unit": "day", "overage": "25.00"}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

ROUTES = {
    ("POST", "/my/badge/lost"): "badge",
    ("POST", "/my/bookings/{booking_id}/cancel"): "booking",
    ("GET", "/my/guests/{invitation_id}"): "invitation",
    ("POST", "/my/guests/{invitation_id}/cancel"): "invitation",
    ("GET", "/my/invoices/{invoice_id}"): "invoice",
    ("GET", "/my/invoices/{invoice_id}/pdf"): "invoice",
}
"""Every member route taking another thing's id, and which of Ada's things it names."""
SHARED = {"/my/checkin/{reference}"}
"""Ids that are not anyone's own: a desk's code, which any member may scan."""


@dataclass
class World:
    app: object
    sessions: sessionmaker[Session]
    ada: dict[str, int]

    def signed_in(self, email: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)  # type: ignore[arg-type]
        token = CSRF.search(client.get("/signin").text)
        assert token is not None
        answer = client.post("/signin", data={"email": email, "password": PASSWORD,
                                              "csrf_token": token.group(1)})  # fmt: skip
        assert answer.status_code == 303, answer.text
        return client


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        site = SiteBuilder(s, "lyon", name="Ruche Lyon", opening_hours={"kind": "24/7"},
                           key=bytes(16))  # fmt: skip
        desk = site.desk("d1", zone="Open space")
        plan = site.plan("resident")
        since = datetime(LAST_MONTH.first_day.year, LAST_MONTH.first_day.month, 1, tzinfo=UTC)
        ada = site.member("Ada", "ada@example.org", plan=plan, since=since, badge=b"\x04\x01")
        bob = site.member("Bob", "bob@example.org", plan=plan, since=since, badge=b"\x04\x02")
        billing.set_site_billing(s, site.id, currency="EUR", rate="0.2")
        billing.add_price_version(s, site_id=site.id, plan_id=plan, terms=MONTHLY,
                                  valid_from=LAST_MONTH.first_day, now=since)  # fmt: skip
        start = now + timedelta(days=1)
        booking = registry.book(s, member_id=ada, site_id=site.id, desk_id=desk,
                                starts_at=start, ends_at=start + timedelta(hours=2))  # fmt: skip
        row = s.get(SiteRow, site.id)
        assert row is not None
        invitation = invite_guest(s, site=row, day=TODAY + timedelta(days=2), name="Guest",
                                  email="guest@example.org", host_member_id=ada,
                                  invited_by="person:ada", now=now)  # fmt: skip
        badge = s.scalars(select(BadgeRow).where(BadgeRow.member_id == ada)).one()
        for email, member in (("ada@example.org", ada), ("bob@example.org", bob)):
            person = accounts.create_person(s, email=email, role=Role.MEMBER,
                                            member_id=member, now=now, locale="en")  # fmt: skip
            person.password_hash = PASSWORD_HASH
        s.flush()
        billing.close_period(s, LAST_MONTH, site="lyon", now=now)
        invoice = s.scalars(select(InvoiceRow).where(InvoiceRow.member_id == ada)).one()
        ids = {"badge": badge.id, "booking": booking.id, "invoice": invoice.id,
               "invitation": invitation.row.id}  # fmt: skip
    ports = RecordingPorts()
    yield World(create_app(sessions=sessions, commands=ports, listener=ports), sessions, ids)
    engine.dispose()


def member_routes() -> set[tuple[str, str]]:
    """Every `/my` route that names a thing by id, in its path or in its form."""
    found: set[tuple[str, str]] = set()
    for router in pages.routers():
        for route in router.routes:
            path: str = route.path  # type: ignore[attr-defined]
            if not path.startswith("/my") or path in SHARED:
                continue
            fields = {p.name for p in route.dependant.body_params}  # type: ignore[attr-defined]
            named = "{" in path or any(f.endswith("_id") for f in fields)
            for method in route.methods:  # type: ignore[attr-defined]
                if named:
                    found.add((method, path))
    return found


def test_the_table_holds_every_member_route_that_takes_an_id() -> None:
    assert member_routes() == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES))
def test_bob_cannot_reach_adas(world: World, method: str, path: str) -> None:
    bob = world.signed_in("bob@example.org")
    thing = ROUTES[method, path]
    url = re.sub(r"\{\w+\}", str(world.ada[thing]), path)
    if method == "GET":
        answer = bob.get(url)
    else:
        token = CSRF.search(bob.get("/my/badge").text)
        assert token is not None
        answer = bob.post(url, data={"csrf_token": token.group(1),
                                     "badge_id": str(world.ada["badge"])})  # fmt: skip
    assert answer.status_code in (403, 404), (url, answer.status_code, answer.text[:300])
    assert "Ada" not in answer.text
    assert "ada@example.org" not in answer.text
    with world.sessions() as s:
        assert s.get(BadgeRow, world.ada["badge"]).status is BadgeStatus.ACTIVE  # type: ignore[union-attr]
        assert s.get(BookingRow, world.ada["booking"]).status is BookingStatus.BOOKED  # type: ignore[union-attr]
        invitation = s.get(GuestInvitationRow, world.ada["invitation"])
        assert invitation is not None
        assert invitation.cancelled_at is None
    # The same request as Ada works: the ids are right, only the reader is wrong.
    ada = world.signed_in("ada@example.org")
    if method == "GET":
        assert ada.get(url).status_code == 200
