"""The invoices and usage pages over HTTP (FastAPI's TestClient) on SQLite and PostgreSQL.

Lyon bills in EUR at 20 % tax; Flex is a monthly plan (300.00 with 2 days, 25.00 a day
beyond). Last month, Ada (French) came on the 3rd, 4th and 5th: on the 3rd she badged
in at the front door at 08:57 and sat at desk d3 from 09:02 to 12:40; desk d7's sensor
stuck occupied on her from the 9th to the 10th. Bob (English) came on the 4th. Lou
manages Lyon, Max manages Paris. Each person signs in with a password, as in a browser;
forms carry the CSRF token the pages put in them.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.server import billing, registry
from ruche.server.api.app import create_app
from ruche.server.billing.pricing import Period
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import (
    DeskSessionRow,
    InvoiceRow,
    PlanRow,
    StoredEventRow,
    VisitRow,
)
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
TODAY = datetime.now(UTC).astimezone(PARIS).date()
MONTH = Period(TODAY.year - (TODAY.month == 1), (TODAY.month - 2) % 12 + 1)
"""Last month at Lyon: ended, so it can be closed."""
FLEX = {"kind": "monthly", "fee": "300.00", "included": "2", "unit": "day", "overage": "25.00"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(MONTH.year, MONTH.month, day, hour, minute, tzinfo=PARIS)


@dataclass
class World:
    app: FastAPI
    sessions: sessionmaker[Session]
    ids: dict[str, int]

    def browser(self) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")  # the browser gets its CSRF cookie, as on a first page
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def signed_in(self, who: str) -> TestClient:
        client = self.browser()
        answer = client.post(
            "/signin",
            data={"email": f"{who}@example.org", "password": PASSWORD,
                  "csrf_token": self.token(client)},
        )  # fmt: skip
        assert answer.status_code == 303, answer.text
        return client

    def close(self, client: TestClient, **form: str) -> Any:
        body = {"site": "lyon", "month": str(MONTH), "confirm": "yes",
                "csrf_token": self.token(client)} | form  # fmt: skip
        return client.post("/manage/invoices/close", data=body)

    def invoice(self, who: str) -> InvoiceRow:
        with self.sessions() as s:
            return s.scalars(select(InvoiceRow).where(InvoiceRow.member_id == self.ids[who])).one()


def seed(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Lyon and Paris, Flex at Lyon, Ada's and Bob's month, and everyone's account."""
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = registry.create_site(s, slug="lyon", name="Ruche Lyon", timezone="Europe/Paris")
        paris = registry.create_site(s, slug="paris", name="Ruche Paris", timezone="Europe/Paris")
        s.flush()
        billing.set_site_billing(s, lyon.id, currency="EUR", rate="0.2")
        registry.create_door(s, site_id=lyon.id, slug="front", name="Front door")
        plan = registry.create_plan(s, name="Flex", site_ids=[lyon.id], schedule={"kind": "24/7"})
        ada = registry.create_member(s, name="Ada Lovelace", email="ada@example.org")
        bob = registry.create_member(s, name="Bob Martin", email="bob@example.org")
        s.flush()
        for member in (ada, bob):
            registry.create_membership(s, member_id=member.id, plan_id=plan.id,
                                       starts_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        billing.add_price_version(s, site_id=lyon.id, plan_id=plan.id,
                                  valid_from=MONTH.first_day.replace(day=1, month=1), terms=FLEX,
                                  now=datetime(2025, 12, 1, tzinfo=UTC))  # fmt: skip
        # Ada's 3rd: the tap at the front door, the visit it opened, the desk she sat at.
        s.add(StoredEventRow(site="lyon", agent="door-pi", seq=1, channel="tap",
                             device="front", kind="tap", ts=at(3, 8, 57),
                             received_at=at(3, 8, 57), payload="{}"))  # fmt: skip
        visits = [(ada, 1, 3, (8, 57)), (ada, 2, 4, (9, 0)), (ada, 3, 5, (9, 0)),
                  (bob, 4, 4, (10, 0))]  # fmt: skip
        for member, seq, day, (hour, minute) in visits:
            s.add(VisitRow(site="lyon", member_id=member.id, entry_agent="door-pi",
                           entry_seq=seq, entries=1, start=at(day, hour, minute),
                           end=at(day, 17, 30), closed_by="exit"))  # fmt: skip
        s.add(DeskSessionRow(site="lyon", agent="desk-pi", desk="d3", opened_seq=7,
                             start=at(3, 9, 2), end=at(3, 12, 40), closed_by="vacant",
                             suspect=False, reason=None, member_id=ada.id,
                             attributed_by="badge", booking_id=None))  # fmt: skip
        # A desk sensor stuck occupied for a night: held back, never billed blindly.
        s.add(DeskSessionRow(site="lyon", agent="desk-pi", desk="d7", opened_seq=8,
                             start=at(9, 8), end=at(10, 9), closed_by="vacant", suspect=True,
                             reason="stuck_occupied", member_id=ada.id,
                             attributed_by="badge", booking_id=None))  # fmt: skip
        people = [
            accounts.create_person(s, email="ada@example.org", role=Role.MEMBER,
                                   member_id=ada.id, now=now, locale="fr"),
            accounts.create_person(s, email="bob@example.org", role=Role.MEMBER,
                                   member_id=bob.id, now=now, locale="en"),
            accounts.create_person(s, email="lou@example.org", role=Role.MANAGER,
                                   site_id=lyon.id, now=now),
            accounts.create_person(s, email="max@example.org", role=Role.MANAGER,
                                   site_id=paris.id, now=now),
            accounts.create_person(s, email="root@example.org", role=Role.ADMIN, now=now),
        ]  # fmt: skip
        for person in people:
            person.password_hash = PASSWORD_HASH
        return {"lyon": lyon.id, "paris": paris.id, "ada": ada.id, "bob": bob.id}


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    ids = seed(sessions)
    ports = RecordingPorts()
    yield World(create_app(sessions=sessions, commands=ports, listener=ports), sessions, ids)
    engine.dispose()


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    """The PDF's text as poppler's pdftotext reads it, spaces collapsed."""
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.fail("pdftotext is missing: apt-get install poppler-utils")
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf)
    out = subprocess.run([tool, "-raw", str(path), "-"], check=True, capture_output=True)
    return re.sub(r"[ \t\r\n\f]+", " ", out.stdout.decode())


def text(html: str) -> str:
    """A page's text, tags dropped and spaces collapsed (not the no-break spaces French
    puts before `:` and in amounts), to look for sentences in."""
    bare = re.sub(r"<[^>]+>", " ", html).replace("&#39;", "'")
    return re.sub(r"[ \t\r\n]+", " ", bare).strip()


class TestManagerCloses:
    """A manager previews the month, closes it once, and downloads its PDFs and CSV."""

    def test_preview_bills_each_member_with_vat(self, world):
        lou = world.signed_in("lou")
        page = lou.get(f"/manage/invoices?site=lyon&month={MONTH}")
        assert page.status_code == 200
        shown = text(page.text)
        assert "Ada Lovelace" in shown
        assert "Bob Martin" in shown
        assert "Forfait mensuel (Flex" in shown
        assert "390,00\xa0€" in shown  # Ada: 300 + 25 of overage, and 20 % of VAT
        assert "360,00\xa0€" in shown
        assert "TVA 20\xa0% sur 325,00\xa0€" in shown
        with world.sessions() as s:
            assert s.scalars(select(InvoiceRow)).first() is None, "a preview issues nothing"

    def test_a_big_site_comes_in_pages_of_fifty(self, world):
        with transaction(world.sessions) as s:
            plan = s.scalars(select(PlanRow)).one()
            for n in range(55):
                member = registry.create_member(s, name=f"Zoé {n:02d}", email=f"z{n}@example.org")
                s.flush()
                registry.create_membership(s, member_id=member.id, plan_id=plan.id,
                                           starts_at=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        lou = world.signed_in("lou")
        first = text(lou.get(f"/manage/invoices?site=lyon&month={MONTH}").text)
        assert "Membres 1 à 50 sur 57" in first
        assert "Ada Lovelace" in first
        assert "Zoé 54" not in first
        second = text(lou.get(f"/manage/invoices?site=lyon&month={MONTH}&page=2").text)
        assert "Membres 51 à 57 sur 57" in second
        assert "Zoé 54" in second
        assert "Ada Lovelace" not in second
        world.close(lou)
        closed = text(lou.get(f"/manage/invoices?site=lyon&month={MONTH}&page=2").text)
        assert "57 factures émises" in closed
        assert "Zoé 54" in closed

    def test_closing_asks_for_confirmation_then_issues_once(self, world):
        lou = world.signed_in("lou")
        unconfirmed = world.close(lou, confirm="")
        assert unconfirmed.headers["location"].endswith("error=confirm")
        first = world.close(lou)
        assert first.status_code == 303
        assert first.headers["location"] == f"/manage/invoices?site=lyon&month={MONTH}&done=closed"
        issued = world.invoice("ada")
        again = world.close(lou)
        assert again.headers["location"].endswith("done=already_closed")
        assert world.invoice("ada").key == issued.key
        page = lou.get(again.headers["location"])
        shown = text(page.text)
        assert "Ce mois était déjà clôturé\xa0: rien de nouveau n'a été émis." in shown
        assert issued.number in shown
        assert f"/manage/invoices/{issued.id}/pdf" in page.text

    def test_pdf_in_the_members_language_and_the_month_as_csv(self, world, tmp_path):
        lou = world.signed_in("lou")
        world.close(lou)
        ada, bob = world.invoice("ada"), world.invoice("bob")
        answer = lou.get(f"/manage/invoices/{ada.id}/pdf")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/pdf"
        french = pdf_text(answer.content, tmp_path)
        assert "Facture" in french
        assert f"N° {ada.number}" in french
        assert re.search(r"Total TTC \(EUR\) 390,00\s€", french), french
        assert "Forfait mensuel (Flex" in french
        english = pdf_text(lou.get(f"/manage/invoices/{bob.id}/pdf").content, tmp_path)
        assert "Invoice" in english
        assert "Total (EUR) €360.00" in english
        export = lou.get(f"/manage/invoices/export.csv?site=lyon&month={MONTH}")
        assert export.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert {r["invoice_number"] for r in rows} == {ada.number, bob.number}

    def test_a_bad_month_is_said_not_a_500(self, world):
        lou = world.signed_in("lou")
        for month in ("2026-13", "0001-01", "9998-12", "2026-1", "%00"):
            page = lou.get(f"/manage/invoices?site=lyon&month={month}")
            assert page.status_code == 422, month
            assert "Choisissez un mois" in page.text
        posted = world.close(lou, month="next tuesday")
        assert posted.headers["location"].endswith("error=bad_month")
        assert "Choisissez un mois" in lou.get(posted.headers["location"]).text
        csv_answer = lou.get("/manage/invoices/export.csv?site=lyon&month=13-2026")
        assert csv_answer.status_code == 422
        assert "<html" in csv_answer.text

    def test_a_month_not_ended_cannot_be_closed(self, world):
        lou = world.signed_in("lou")
        this_month = Period.of(TODAY)
        answer = world.close(lou, month=str(this_month))
        assert answer.headers["location"].endswith("error=not_ended")


class TestRoles:
    """Nobody reaches another site's or another member's invoices by changing an id."""

    def test_a_manager_of_another_site_gets_nothing_of_lyon(self, world):
        world.close(world.signed_in("lou"))
        ada = world.invoice("ada")
        max_ = world.signed_in("max")
        assert max_.get(f"/manage/invoices?site=lyon&month={MONTH}").status_code == 404
        assert max_.get(f"/manage/invoices/{ada.id}/pdf").status_code == 403
        export = max_.get(f"/manage/invoices/export.csv?site=lyon&month={MONTH}")
        assert export.status_code == 404
        refused = world.close(max_)
        assert refused.status_code == 404
        own = max_.get("/manage/invoices")
        assert own.status_code == 200
        assert "Ruche Paris" in own.text
        assert "Ada Lovelace" not in own.text

    def test_a_member_sees_only_their_own_invoices(self, world):
        world.close(world.signed_in("lou"))
        ada_invoice, bob_invoice = world.invoice("ada"), world.invoice("bob")
        ada = world.signed_in("ada")
        mine = ada.get("/my/invoices")
        assert ada_invoice.number in mine.text
        assert bob_invoice.number not in mine.text
        assert "390,00\xa0€" in mine.text
        assert ada.get(f"/my/invoices/{ada_invoice.id}/pdf").status_code == 200
        detail = ada.get(f"/my/invoices/{ada_invoice.id}")
        assert detail.status_code == 200
        assert "visit:lyon/door-pi#1" in detail.text
        for path in (f"/my/invoices/{bob_invoice.id}", f"/my/invoices/{bob_invoice.id}/pdf"):
            refused = ada.get(path)
            assert refused.status_code == 403, path
            assert "Vous ne pouvez pas ouvrir cette page" in refused.text
        assert ada.get("/my/invoices/999999").status_code == 404
        assert ada.get("/manage/invoices").status_code == 403

    def test_an_admin_chooses_among_every_site(self, world):
        root = world.signed_in("root")
        page = root.get(f"/manage/invoices?month={MONTH}")
        assert page.status_code == 200
        assert '<option value="paris"' in page.text
        assert "Ada Lovelace" in page.text, "the first site by name, Lyon, by default"
        assert root.get("/manage/invoices?site=paris").status_code == 200
        assert root.get("/manage/invoices?site=nowhere").status_code == 404

    def test_staff_have_no_member_pages(self, world):
        lou = world.signed_in("lou")
        assert lou.get("/my/invoices").status_code == 403
        assert lou.get("/my/usage").status_code == 403

    def test_signed_out_goes_to_sign_in(self, world):
        client = world.browser()
        for path in ("/manage/invoices", "/my/invoices", "/my/usage", "/my/invoices/1/pdf"):
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/signin?next=%2F")

    def test_closing_without_the_csrf_token_is_refused(self, world):
        lou = world.signed_in("lou")
        answer = lou.post("/manage/invoices/close",
                          data={"site": "lyon", "month": str(MONTH), "confirm": "yes"})  # fmt: skip
        assert answer.status_code == 403
        with world.sessions() as s:
            assert s.scalars(select(InvoiceRow)).first() is None


class TestUsage:
    """A member reads each counted day with the taps and desk sessions behind it."""

    def test_each_day_with_its_evidence_in_french(self, world):
        ada = world.signed_in("ada")
        page = ada.get(f"/my/usage?month={MONTH}")
        assert page.status_code == 200
        shown = text(page.text)
        assert "Badge à 08:57 à Front door" in shown
        assert "Bureau d3 occupé 09:02\u201312:40" in shown  # an en dash between times
        assert "3 jours utilisés" in shown
        held = shown.split("Mis de côté, pas encore compté")[1]
        assert "Bureau d7 occupé" in held
        assert "capteur du bureau bloqué sur occupé" in held
        assert "Bob" not in shown

    def test_in_english_for_an_english_reader(self, world):
        bob = world.signed_in("bob")
        shown = text(bob.get(f"/my/usage?month={MONTH}").text)
        assert "1 day used" in shown
        assert "visit until 17:30 (badged out)" in shown
        assert "Front door" not in shown, "Ada's tap is not Bob's evidence"

    def test_no_member_id_to_change(self, world):
        ada = world.signed_in("ada")
        shown = text(ada.get(f"/my/usage?month={MONTH}&member_id={world.ids['bob']}").text)
        assert "3 jours utilisés" in shown

    def test_a_bad_month_is_said(self, world):
        ada = world.signed_in("ada")
        page = ada.get("/my/usage?month=soon")
        assert page.status_code == 422
        assert "Choisissez un mois" in page.text
